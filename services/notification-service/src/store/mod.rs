//! PostgreSQL access: the contact replica, preferences, events waiting for a contact, and the
//! messages (queue and history in one table).

pub mod contacts;
pub mod messages;
pub mod preferences;
pub mod waiting;

use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Connects and applies the migrations; this pool serves the API and the consumers.
pub async fn connect(url: &str) -> anyhow::Result<PgPool> {
    let pool = pool(url, 10).await?;
    // sqlx holds an advisory lock while migrating, so replicas starting together apply each
    // migration once.
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .context("applying database migrations")?;
    Ok(pool)
}

/// A pool of its own for the senders (one connection each, plus slack), so a busy sender
/// pool never starves the consumers or the API of connections.
pub async fn senders_pool(url: &str, senders: usize) -> anyhow::Result<PgPool> {
    pool(
        url,
        u32::try_from(senders).unwrap_or(1024).saturating_add(2),
    )
    .await
}

async fn pool(url: &str, size: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(size)
        // Within the 2 s a client may wait: PostgreSQL away answers 503 in time.
        .acquire_timeout(Duration::from_millis(1_500))
        .connect(url)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")
}

/// Records event `event_id` as processed by `consumer` (as `messaging::mark_processed` does)
/// and then takes `user_id`'s lock, in one round trip; `false`, and no lock, if the event was
/// processed before (a redelivery, which the caller drops).
///
/// The lock serialises everything done for one user across this service's consumers: an event
/// that finds no contact parks itself, and a contact that arrives releases what is parked;
/// holding it in both transactions means neither can slip between the other's check and
/// write. Taken after the mark, as the two statements did it before (one less round trip per
/// event, two per order).
pub async fn mark_processed_locking_user(
    conn: &mut sqlx::PgConnection,
    consumer: &str,
    event_id: uuid::Uuid,
    user_id: uuid::Uuid,
) -> sqlx::Result<bool> {
    let marked = sqlx::query(
        "WITH marked AS ( \
           INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) \
           ON CONFLICT DO NOTHING RETURNING event_id) \
         SELECT pg_advisory_xact_lock(hashtextextended($3::text, 7)) FROM marked",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(marked.is_some())
}
