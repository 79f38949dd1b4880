//! Events parked until their user's contact arrives.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// An event as this service keeps it: parked here, and copied into each of its messages (for
/// the dead letter and the trace).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub topic: String,
    pub event: Value,
    pub trace_headers: Value,
}

pub async fn park(conn: &mut PgConnection, user_id: Uuid, event: &StoredEvent) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO waiting_events (event_id, user_id, topic, event, trace_headers)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event.event_id)
    .bind(user_id)
    .bind(&event.topic)
    .bind(&event.event)
    .bind(&event.trace_headers)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Removes and returns the user's parked events, oldest first.
pub async fn take_for_user(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(
        "WITH taken AS (
             DELETE FROM waiting_events WHERE user_id = $1
             RETURNING event_id, topic, event, trace_headers, received_at
         )
         SELECT event_id, topic, event, trace_headers FROM taken ORDER BY received_at, event_id",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
}

/// How many events wait for a contact (a metric; a growing number means user events are
/// missing or late).
pub async fn count(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM waiting_events")
        .fetch_one(conn)
        .await
}
