//! The `users` table.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    /// `None` for an account created by signing in with a provider.
    pub password_hash: Option<String>,
    pub name: String,
    pub phone: Option<String>,
    pub locale: String,
    pub role: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new account.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub password_hash: Option<&'a str>,
    pub name: &'a str,
    pub phone: Option<&'a str>,
    pub locale: &'a str,
    pub role: &'a str,
}

/// Inserts the user; `Ok(None)` when the e-mail is taken (checked by the unique index, so two
/// concurrent registrations cannot both win).
pub async fn insert(conn: &mut PgConnection, user: &NewUser<'_>) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(
        "INSERT INTO users (id, email, password_hash, name, phone, locale, role)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT ((lower(email))) DO NOTHING
         RETURNING *",
    )
    .bind(user.id)
    .bind(user.email)
    .bind(user.password_hash)
    .bind(user.name)
    .bind(user.phone)
    .bind(user.locale)
    .bind(user.role)
    .fetch_optional(conn)
    .await
}

/// Replaces the stored password hash (an upgrade to the current hashing settings). Not a
/// profile change, so the row's `version` and the published snapshot stay as they are.
pub async fn set_password_hash(conn: &mut PgConnection, id: Uuid, hash: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(id)
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn by_email(conn: &mut PgConnection, email: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as("SELECT * FROM users WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_optional(conn)
        .await
}

pub async fn by_id(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as("SELECT * FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Profile fields a user may change about themselves.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub name: Option<String>,
    /// `Some(None)` clears the phone number.
    pub phone: Option<Option<String>>,
    pub locale: Option<String>,
}

pub async fn update_profile(
    conn: &mut PgConnection,
    id: Uuid,
    change: &ProfileChange,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(
        "UPDATE users SET
             name = COALESCE($2, name),
             phone = CASE WHEN $3 THEN $4 ELSE phone END,
             locale = COALESCE($5, locale),
             version = version + 1,
             updated_at = now()
         WHERE id = $1
         RETURNING *",
    )
    .bind(id)
    .bind(change.name.as_deref())
    .bind(change.phone.is_some())
    .bind(change.phone.clone().flatten())
    .bind(change.locale.as_deref())
    .fetch_optional(conn)
    .await
}
