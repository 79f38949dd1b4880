//! The tables of provider sign-in: pending sign-ins (`oidc_signins`), linked identities and
//! one-time sign-in tickets.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// A sign-in sent to a provider and not yet come back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingSignin {
    pub state: String,
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_signin(conn: &mut PgConnection, signin: &PendingSignin) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO oidc_signins (state, provider, nonce, pkce_verifier, return_to, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&signin.state)
    .bind(&signin.provider)
    .bind(&signin.nonce)
    .bind(&signin.pkce_verifier)
    .bind(&signin.return_to)
    .bind(signin.expires_at)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Takes the pending sign-in with this state for this provider, whether expired or not (the
/// caller checks), deleting it: of two callbacks with one state, exactly one gets it.
pub async fn take_signin(
    conn: &mut PgConnection,
    provider: &str,
    state: &str,
) -> sqlx::Result<Option<PendingSignin>> {
    sqlx::query_as(
        "DELETE FROM oidc_signins WHERE state = $1 AND provider = $2
         RETURNING state, provider, nonce, pkce_verifier, return_to, expires_at",
    )
    .bind(state)
    .bind(provider)
    .fetch_optional(conn)
    .await
}

/// Forgets sign-ins and tickets that expired a while ago (abandoned at the provider's page).
pub async fn delete_expired(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM oidc_signins WHERE expires_at < now() - interval '1 hour'")
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM signin_tickets WHERE expires_at < now() - interval '1 hour'")
        .execute(conn)
        .await?;
    Ok(())
}

/// The account linked to the provider's subject, if any.
pub async fn linked_user(
    conn: &mut PgConnection,
    provider: &str,
    subject: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT user_id FROM linked_identities WHERE provider = $1 AND subject = $2")
        .bind(provider)
        .bind(subject)
        .fetch_optional(conn)
        .await
}

/// Links the provider's subject to the account; a link made meanwhile by a concurrent sign-in
/// of the same person wins, and its account is returned.
pub async fn link(
    conn: &mut PgConnection,
    provider: &str,
    subject: &str,
    user_id: Uuid,
    email: &str,
) -> sqlx::Result<Uuid> {
    sqlx::query(
        "INSERT INTO linked_identities (provider, subject, user_id, email) VALUES ($1, $2, $3, $4)
         ON CONFLICT (provider, subject) DO NOTHING",
    )
    .bind(provider)
    .bind(subject)
    .bind(user_id)
    .bind(email)
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar("SELECT user_id FROM linked_identities WHERE provider = $1 AND subject = $2")
        .bind(provider)
        .bind(subject)
        .fetch_one(conn)
        .await
}

pub async fn insert_ticket(
    conn: &mut PgConnection,
    ticket_hash: &[u8],
    user_id: Uuid,
    method: &str,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO signin_tickets (ticket_hash, user_id, method, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(ticket_hash)
    .bind(user_id)
    .bind(method)
    .bind(expires_at)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Redeems a ticket: deletes it and answers its account and method when it was live. Unknown,
/// used and expired tickets all answer `None`.
pub async fn redeem_ticket(
    conn: &mut PgConnection,
    ticket_hash: &[u8],
) -> sqlx::Result<Option<(Uuid, String)>> {
    let row: Option<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "DELETE FROM signin_tickets WHERE ticket_hash = $1 RETURNING user_id, method, expires_at",
    )
    .bind(ticket_hash)
    .fetch_optional(conn)
    .await?;
    Ok(row
        .filter(|(_, _, expires_at)| *expires_at > Utc::now())
        .map(|(user_id, method, _)| (user_id, method)))
}
