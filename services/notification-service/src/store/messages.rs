//! Messages: the durable send queue and the users' history, one row per (event, channel).
//!
//! States: `pending` (due at `next_attempt_at`) -> `sending` (claimed by one sender until
//! `lease_until`) -> `sent` | `failed`, or back to `pending` for a retry. A `sending` row whose
//! lease ran out belongs to a sender that died; it is claimed again like a due one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgPool, Row};
use uuid::Uuid;

/// A message to store, fully rendered.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub event_id: Uuid,
    pub channel: &'a str,
    pub user_id: Uuid,
    pub template: &'a str,
    pub locale: &'a str,
    pub recipient: &'a str,
    pub subject: Option<&'a str>,
    pub body_text: &'a str,
    pub body_html: Option<&'a str>,
    pub topic: &'a str,
    pub event: &'a Value,
    pub trace_headers: &'a Value,
}

/// Stores a message; a second insert for the same (event, channel) does nothing. Returns
/// whether a row was created.
pub async fn insert(conn: &mut PgConnection, message: &NewMessage<'_>) -> sqlx::Result<bool> {
    Ok(store(conn, message, None).await?.is_some())
}

/// What [`insert_claiming`] stored.
#[derive(Debug)]
pub enum Stored {
    /// Stored claimed for a sender of this process (`sending`, first attempt, leased).
    Claimed(Box<Claimed>),
    /// Stored pending: an earlier message of its user on its channel must go first.
    Pending,
    /// Stored before (a redelivery): nothing new.
    Existing,
}

/// Stores a message claimed for a sender of this process (`sending`, first attempt, leased
/// for `lease`) when nothing of its user on its channel is unfinished: the sender it is handed
/// to then needs no claim (an `UPDATE` and a commit of its own, the costliest query of the
/// queue). Otherwise, in the same statement, it is stored pending for the senders to claim in
/// turn, and a message stored before (a redelivery) is left as it is. One statement either
/// way: the claimed insert and the pending one were two when the user had a message in the
/// queue, about one order in two under the benchmark's checkout.
///
/// The caller holds the user's lock ([`crate::store::mark_processed_locking_user`]), which
/// every insert takes, so no earlier message can appear between the check and the insert; a
/// sender finishing one meanwhile only makes the check cautious.
pub async fn insert_claiming(
    conn: &mut PgConnection,
    message: &NewMessage<'_>,
    lease: Duration,
) -> sqlx::Result<Stored> {
    Ok(match store(conn, message, Some(lease)).await? {
        Some((id, true)) => Stored::Claimed(Box::new(Claimed {
            id,
            event_id: message.event_id,
            channel: message.channel.to_owned(),
            user_id: message.user_id,
            template: message.template.to_owned(),
            recipient: message.recipient.to_owned(),
            subject: message.subject.map(str::to_owned),
            body_text: message.body_text.to_owned(),
            body_html: message.body_html.map(str::to_owned),
            attempts: 1,
            topic: message.topic.to_owned(),
            event: message.event.clone(),
            trace_headers: message.trace_headers.clone(),
            resumed: false,
        })),
        Some((_, false)) => Stored::Pending,
        None => Stored::Existing,
    })
}

/// [`insert`] (`claim_for` None: pending) and [`insert_claiming`] in one statement: the id of
/// the row created, if one was, and whether it was stored claimed. Only that comes back: the
/// caller holds the rest, and most rows are pending, for which the bodies need not travel back.
async fn store(
    conn: &mut PgConnection,
    message: &NewMessage<'_>,
    claim_for: Option<Duration>,
) -> sqlx::Result<Option<(i64, bool)>> {
    sqlx::query_as(
        "INSERT INTO messages (event_id, channel, user_id, template, locale, recipient, subject,
                               body_text, body_html, topic, event, trace_headers, status,
                               attempts, lease_until)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                CASE WHEN free.claim THEN 'sending' ELSE 'pending' END,
                CASE WHEN free.claim THEN 1 ELSE 0 END,
                CASE WHEN free.claim THEN now() + make_interval(secs => $13::FLOAT8) END
           FROM (SELECT $13::FLOAT8 IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM messages e
                         WHERE e.user_id = $3 AND e.channel = $2
                           AND e.status IN ('pending', 'sending')) AS claim) AS free
         ON CONFLICT ON CONSTRAINT messages_event_channel DO NOTHING
      RETURNING id, status = 'sending'",
    )
    .bind(message.event_id)
    .bind(message.channel)
    .bind(message.user_id)
    .bind(message.template)
    .bind(message.locale)
    .bind(message.recipient)
    .bind(message.subject)
    .bind(message.body_text)
    .bind(message.body_html)
    .bind(message.topic)
    .bind(message.event)
    .bind(message.trace_headers)
    .bind(claim_for.map(|lease| lease.as_secs_f64()))
    .fetch_optional(conn)
    .await
}

/// A message a sender holds.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub event_id: Uuid,
    pub channel: String,
    pub user_id: Uuid,
    pub template: String,
    pub recipient: String,
    pub subject: Option<String>,
    pub body_text: String,
    pub body_html: Option<String>,
    /// Including this one.
    pub attempts: i32,
    pub topic: String,
    pub event: Value,
    pub trace_headers: Value,
    /// The previous claim ended without an outcome (its sender died mid-send), so the
    /// message may already have been delivered.
    pub resumed: bool,
}

/// Claims the oldest due message whose user has no earlier unfinished message on the same
/// channel, so one user's messages go out in the order their events were handled while
/// different users' go out in parallel. `SKIP LOCKED` lets concurrent senders pass each
/// other's candidates instead of queueing on them.
pub async fn claim(pool: &PgPool, lease: Duration) -> sqlx::Result<Option<Claimed>> {
    sqlx::query_as(
        "UPDATE messages m
            SET status = 'sending', attempts = m.attempts + 1,
                lease_until = now() + make_interval(secs => $1), updated_at = now()
           FROM (
               SELECT c.id, c.status = 'sending' AS resumed
                 FROM messages c
                WHERE c.status IN ('pending', 'sending')
                  AND ((c.status = 'pending' AND c.next_attempt_at <= now())
                       OR (c.status = 'sending' AND c.lease_until < now()))
                  AND NOT EXISTS (
                      SELECT 1 FROM messages e
                       WHERE e.user_id = c.user_id AND e.channel = c.channel AND e.id < c.id
                         AND e.status IN ('pending', 'sending'))
                ORDER BY c.id
                LIMIT 1
                FOR UPDATE SKIP LOCKED
           ) candidate
          WHERE m.id = candidate.id
      RETURNING m.id, m.event_id, m.channel, m.user_id, m.template, m.recipient, m.subject,
                m.body_text, m.body_html, m.attempts, m.topic, m.event, m.trace_headers,
                candidate.resumed",
    )
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// Records the delivery. `attempts` fences the update: a sender whose lease ran out (and
/// whose message someone else claimed since) changes nothing.
pub async fn mark_sent(
    pool: &PgPool,
    id: i64,
    attempts: i32,
    provider_reference: &str,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE messages SET status = 'sent', sent_at = now(), updated_at = now(),
                lease_until = NULL, last_error = NULL, provider_reference = $3
          WHERE id = $1 AND attempts = $2 AND status = 'sending'",
    )
    .bind(id)
    .bind(attempts)
    .bind(provider_reference)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// [`mark_sent`], and in the same statement the claim of the user's next message on the channel
/// if it is due: `(recorded, next)`. One round trip and one commit where two were: the
/// claim is an `UPDATE` of its own (and a commit) otherwise, and a customer who orders often
/// has a message waiting behind each one sent (2.6 claims per order under the benchmark's
/// checkout, where sixteen customers order back to back). The next message is the user's
/// oldest unfinished one on the channel, as [`claim`] would pick it: the statement sees the
/// sent row as it was (`sending`), so it is left out of the check by its id. A message waiting
/// for a retry, or held by a sender whose lease ran out, is left to [`claim`].
pub async fn mark_sent_and_claim_next(
    pool: &PgPool,
    sent: &Claimed,
    provider_reference: &str,
    lease: Duration,
) -> sqlx::Result<(bool, Option<Claimed>)> {
    let row = sqlx::query(
        "WITH done AS (
             UPDATE messages SET status = 'sent', sent_at = now(), updated_at = now(),
                    lease_until = NULL, last_error = NULL, provider_reference = $3
              WHERE id = $1 AND attempts = $2 AND status = 'sending'
          RETURNING id),
         candidate AS (
             SELECT c.id
               FROM messages c
              WHERE c.user_id = $5 AND c.channel = $6 AND c.status = 'pending'
                AND c.next_attempt_at <= now() AND EXISTS (SELECT 1 FROM done)
                AND NOT EXISTS (
                    SELECT 1 FROM messages e
                     WHERE e.user_id = $5 AND e.channel = $6 AND e.id < c.id AND e.id <> $1
                       AND e.status IN ('pending', 'sending'))
              ORDER BY c.id
              LIMIT 1
                FOR UPDATE SKIP LOCKED),
         next AS (
             UPDATE messages m
                SET status = 'sending', attempts = m.attempts + 1,
                    lease_until = now() + make_interval(secs => $4), updated_at = now()
               FROM candidate
              WHERE m.id = candidate.id
          RETURNING m.id, m.event_id, m.channel, m.user_id, m.template, m.recipient, m.subject,
                    m.body_text, m.body_html, m.attempts, m.topic, m.event, m.trace_headers,
                    false AS resumed)
         SELECT (SELECT count(*) FROM done) AS recorded, next.*
           FROM (SELECT 1) AS one LEFT JOIN next ON true",
    )
    .bind(sent.id)
    .bind(sent.attempts)
    .bind(provider_reference)
    .bind(lease.as_secs_f64())
    // The user and channel as parameters, not joined from the update: the planner then reads
    // the user's unfinished messages through `messages_active_user` (joined, it scanned every
    // unfinished message of every user, twice: 0.8 ms a call with a deep queue).
    .bind(sent.user_id)
    .bind(&sent.channel)
    .fetch_one(pool)
    .await?;
    let recorded = row.try_get::<i64, _>("recorded")? == 1;
    let next = match row.try_get::<Option<i64>, _>("id")? {
        Some(_) => Some(Claimed::from_row(&row)?),
        None => None,
    };
    Ok((recorded, next))
}

/// Puts the message back in the queue, due after `delay`.
pub async fn retry_later(
    pool: &PgPool,
    id: i64,
    attempts: i32,
    delay: Duration,
    error: &str,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE messages SET status = 'pending', updated_at = now(), lease_until = NULL,
                next_attempt_at = now() + make_interval(secs => $3), last_error = $4
          WHERE id = $1 AND attempts = $2 AND status = 'sending'",
    )
    .bind(id)
    .bind(attempts)
    .bind(delay.as_secs_f64())
    .bind(error)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Gives up on the message.
pub async fn mark_failed(pool: &PgPool, id: i64, attempts: i32, error: &str) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE messages SET status = 'failed', updated_at = now(), lease_until = NULL,
                last_error = $3
          WHERE id = $1 AND attempts = $2 AND status = 'sending'",
    )
    .bind(id)
    .bind(attempts)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// One entry of a user's history.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryEntry {
    pub id: i64,
    pub event_id: Uuid,
    pub channel: String,
    pub template: String,
    pub locale: String,
    pub recipient: String,
    pub subject: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// The user's messages, newest first; `before` (an id) pages backwards.
pub async fn history(
    pool: &PgPool,
    user_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<HistoryEntry>> {
    sqlx::query_as(
        "SELECT id, event_id, channel, template, locale, recipient, subject, status, attempts,
                last_error, created_at, updated_at, sent_at
           FROM messages
          WHERE user_id = $1 AND ($2::BIGINT IS NULL OR id < $2)
          ORDER BY id DESC
          LIMIT $3",
    )
    .bind(user_id)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Unfinished messages per channel: the queue depth.
pub async fn queue_depth(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT channel, count(*) FROM messages WHERE status IN ('pending', 'sending')
          GROUP BY channel",
    )
    .fetch_all(pool)
    .await
}
