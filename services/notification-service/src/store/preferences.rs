//! Per-user channel preferences.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::notice::Preferences;

/// The stored preferences and when they were set; `None` means the defaults apply.
pub async fn get(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> sqlx::Result<Option<(Preferences, DateTime<Utc>)>> {
    let row: Option<(bool, bool, DateTime<Utc>)> = sqlx::query_as(
        "SELECT email_enabled, sms_enabled, updated_at FROM preferences WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(email, sms, updated_at)| (Preferences { email, sms }, updated_at)))
}

pub async fn put(
    conn: &mut PgConnection,
    user_id: Uuid,
    preferences: Preferences,
) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar(
        "INSERT INTO preferences (user_id, email_enabled, sms_enabled) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE
            SET email_enabled = EXCLUDED.email_enabled, sms_enabled = EXCLUDED.sms_enabled,
                updated_at = now()
         RETURNING updated_at",
    )
    .bind(user_id)
    .bind(preferences.email)
    .bind(preferences.sms)
    .fetch_one(conn)
    .await
}
