//! The customers replica: when each user registered (from `user.registered` on user.events),
//! the risk check's account age. Nothing else about users is kept here.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Records a registration; a replayed or redelivered event keeps the earliest time.
pub async fn record_registration(
    conn: &mut PgConnection,
    user_id: Uuid,
    registered_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO customers (user_id, registered_at) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET registered_at = LEAST(customers.registered_at, EXCLUDED.registered_at)",
    )
    .bind(user_id)
    .bind(registered_at)
    .execute(conn)
    .await
    .map(drop)
}

/// What the risk check reads about a customer, in one round trip: when they registered (if
/// this service has seen it) and how many orders they placed after `since`.
pub async fn risk_history(
    conn: &mut PgConnection,
    user_id: Uuid,
    since: DateTime<Utc>,
) -> sqlx::Result<(Option<DateTime<Utc>>, i64)> {
    sqlx::query_as(
        "SELECT (SELECT registered_at FROM customers WHERE user_id = $1), \
                (SELECT count(*) FROM orders WHERE user_id = $1 AND created_at > $2)",
    )
    .bind(user_id)
    .bind(since)
    .fetch_one(conn)
    .await
}
