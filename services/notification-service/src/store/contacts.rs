//! The contact replica, built from `user.events`, with each account's role (from
//! `user.registered`), so that admins can be found by role.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::notice::{Contact, Preferences};

/// Stores the snapshot unless a newer one (by event time) is already there. Returns whether
/// it was stored. `role` is known from the registration only; a snapshot without one keeps
/// the stored role.
pub async fn upsert(
    conn: &mut PgConnection,
    contact: &Contact,
    role: Option<&str>,
    as_of: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "INSERT INTO contacts (user_id, email, name, phone, locale, as_of, role)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (user_id) DO UPDATE
            SET email = EXCLUDED.email, name = EXCLUDED.name, phone = EXCLUDED.phone,
                locale = EXCLUDED.locale, as_of = EXCLUDED.as_of,
                role = COALESCE(EXCLUDED.role, contacts.role)
          WHERE contacts.as_of <= EXCLUDED.as_of",
    )
    .bind(contact.user_id)
    .bind(&contact.email)
    .bind(&contact.name)
    .bind(&contact.phone)
    .bind(&contact.locale)
    .bind(as_of)
    .bind(role)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The user's contact and the channel preferences that apply now (stored or default), in
/// one round trip: every notice needs both (they were two queries per event).
pub async fn with_preferences(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> sqlx::Result<Option<(Contact, Preferences)>> {
    type Row = (
        Uuid,
        String,
        String,
        Option<String>,
        String,
        Option<bool>,
        Option<bool>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT c.user_id, c.email, c.name, c.phone, c.locale, p.email_enabled, p.sms_enabled
           FROM contacts c LEFT JOIN preferences p ON p.user_id = c.user_id
          WHERE c.user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(
        row.map(|(user_id, email, name, phone, locale, email_on, sms_on)| {
            let preferences = match (email_on, sms_on) {
                (Some(email), Some(sms)) => Preferences { email, sms },
                _ => Preferences::default(),
            };
            (
                Contact {
                    user_id,
                    email,
                    name,
                    phone,
                    locale,
                },
                preferences,
            )
        }),
    )
}

/// Every contact with `role`, in a stable order.
pub async fn with_role(conn: &mut PgConnection, role: &str) -> sqlx::Result<Vec<Contact>> {
    let rows: Vec<(Uuid, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT user_id, email, name, phone, locale FROM contacts
          WHERE role = $1 ORDER BY user_id",
    )
    .bind(role)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, email, name, phone, locale)| Contact {
            user_id,
            email,
            name,
            phone,
            locale,
        })
        .collect())
}
