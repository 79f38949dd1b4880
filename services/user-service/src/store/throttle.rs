//! The `login_throttle` table.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// When the key is locked until, if it is locked now.
pub async fn locked_until(
    conn: &mut PgConnection,
    key: &str,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "SELECT locked_until FROM login_throttle WHERE key = $1 AND locked_until > now()",
    )
    .bind(key)
    .fetch_optional(conn)
    .await
    .map(Option::flatten)
}

/// Counts one more failure atomically and returns the new count.
pub async fn record_failure(conn: &mut PgConnection, key: &str) -> sqlx::Result<i32> {
    sqlx::query_scalar(
        "INSERT INTO login_throttle (key, failures) VALUES ($1, 1)
         ON CONFLICT (key) DO UPDATE SET failures = login_throttle.failures + 1, updated_at = now()
         RETURNING failures",
    )
    .bind(key)
    .fetch_one(conn)
    .await
}

pub async fn lock(conn: &mut PgConnection, key: &str, duration: Duration) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE login_throttle SET locked_until = now() + make_interval(secs => $2) WHERE key = $1",
    )
    .bind(key)
    .bind(duration.as_secs_f64())
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn clear(conn: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1")
        .bind(key)
        .execute(conn)
        .await
        .map(|_| ())
}
