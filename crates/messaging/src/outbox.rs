//! The PostgreSQL transactional outbox and its relay.
//!
//! Expected table (each service creates it in its own migrations):
//!
//! ```sql
//! CREATE TABLE outbox (
//!     id         BIGSERIAL PRIMARY KEY,
//!     event_id   UUID NOT NULL UNIQUE,
//!     topic      TEXT NOT NULL,
//!     key        TEXT NOT NULL,
//!     payload    JSONB NOT NULL,
//!     headers    JSONB NOT NULL DEFAULT '{}',
//!     created_at TIMESTAMPTZ NOT NULL DEFAULT now()
//! );
//! ```

use std::collections::HashMap;
use std::time::Duration;

use crate::producer::Producer;
use anyhow::Context as _;
use contracts::topics::Topic;
use contracts::{CloudEvent, EventData};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::publish::{OutgoingRecord, publish_in_order};

/// The channel the relay listens on; `enqueue` notifies it, delivered at commit.
const CHANNEL: &str = "outbox";
/// Advisory lock key held by the relay that is publishing. Only one relay per database
/// publishes at a time, which keeps each aggregate's events in commit order even with several
/// replicas; the others wait as hot standbys.
pub const RELAY_LOCK: i64 = 0x6f75_7462_6f78; // "outbox"

/// Writes `event` to the outbox inside the caller's transaction, with the current span's trace
/// context so the publish (and every consumer) joins the request's trace.
pub async fn enqueue<T: EventData>(
    tx: &mut PgConnection,
    topics: &Topic,
    event: CloudEvent<T>,
) -> anyhow::Result<Uuid> {
    let event = event.into_untyped().context("serialising the event")?;
    let event_id = event.id;
    let key = event.subject.clone();
    let payload = serde_json::to_value(&event).context("serialising the event")?;
    let headers = serde_json::to_value(telemetry::context_headers(&tracing::Span::current()))
        .context("serialising trace headers")?;
    // The row and the relay's wake-up in one statement (one round trip instead of two; the
    // notification is still delivered only if the transaction commits).
    sqlx::query(
        "WITH queued AS ( \
           INSERT INTO outbox (event_id, topic, key, payload, headers) \
           VALUES ($1, $2, $3, $4, $5) RETURNING id) \
         SELECT pg_notify($6, '') FROM queued",
    )
    .bind(event_id)
    .bind(topics.qualified(T::TOPIC))
    .bind(key)
    .bind(payload)
    .bind(headers)
    .bind(CHANNEL)
    .execute(&mut *tx)
    .await
    .context("inserting into the outbox")?;
    Ok(event_id)
}

/// Publishes committed outbox rows to Kafka.
#[derive(Clone)]
pub struct OutboxRelay {
    pool: PgPool,
    producer: Producer,
    batch_size: i64,
    /// Safety net for a lost notification (e.g. the listener reconnecting).
    poll_interval: Duration,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

struct OutboxRow {
    id: i64,
    topic: String,
    key: String,
    payload: serde_json::Value,
    headers: serde_json::Value,
}

/// A row of the relay's claim: whether the relay lock was taken, and an outbox row (none when
/// the lock was not taken or nothing waits).
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    taken: bool,
    id: Option<i64>,
    topic: Option<String>,
    key: Option<String>,
    payload: Option<serde_json::Value>,
    headers: Option<serde_json::Value>,
}

impl ClaimedRow {
    /// The outbox row, if this claim row carries one (every column of an outbox row is set).
    fn row(self) -> Option<OutboxRow> {
        Some(OutboxRow {
            id: self.id?,
            topic: self.topic?,
            key: self.key?,
            payload: self.payload?,
            headers: self.headers?,
        })
    }
}

/// Takes every notification that has already arrived, without waiting. Each committed event
/// notifies once, and one round publishes every row committed before it starts; so the
/// notifications that queued up while the previous round ran are all answered by the next
/// round, not by one round each. Left unread, each of them started a round of its own that
/// found the rows gone: under the checkout, 60% of order-service's relay rounds were such
/// empty transactions (BEGIN, lock, SELECT, ROLLBACK: four statements for nothing). Taken here,
/// before the round reads the table, nothing is lost: a notification is delivered only after
/// its transaction committed, so the round's read sees that row; one that arrives after this
/// drain wakes the next round.
fn drain_notifications(listener: &mut PgListener) {
    use futures::FutureExt as _;
    let mut taken: u64 = 0;
    while let Some(Ok(_)) = listener.recv().now_or_never() {
        taken += 1;
    }
    if taken > 0 {
        metrics::counter!("outbox_wakeups_coalesced_total").increment(taken);
    }
}

impl OutboxRelay {
    pub fn new(pool: PgPool, producer: Producer) -> Self {
        Self {
            pool,
            producer,
            batch_size: 200,
            poll_interval: Duration::from_secs(1),
        }
    }

    /// Publishes at most `batch_size` rows per transaction.
    pub fn with_batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Runs until `shutdown` is cancelled; then the batch in flight is finished and what is
    /// left is drained (for at most 10 s), so a graceful stop neither loses nor repeats events.
    /// Cancel it only after the HTTP server has drained, so the last requests' events go too.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener = match self.listen().await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "outbox LISTEN failed; polling only"
                );
                None
            }
        };
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match self.publish_batch().await {
                // A full batch suggests more are waiting: go again at once.
                Ok(published) if published as i64 >= self.batch_size => {
                    failures = 0;
                    continue;
                }
                Ok(_) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    metrics::counter!("outbox_publish_failures_total").increment(1);
                    tracing::warn!(
                        error = format!("{error:#}"),
                        failures,
                        "outbox publish failed"
                    );
                    let backoff = Duration::from_millis(200 * 2u64.pow(failures.min(6)));
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => continue,
                    }
                }
            }
            let wake = async {
                match listener.as_mut() {
                    Some(listener) => match listener.recv().await {
                        Ok(_) => drain_notifications(listener),
                        Err(error) => {
                            tracing::warn!(%error, "outbox listener lost; it reconnects on next recv");
                            tokio::time::sleep(self.poll_interval).await;
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake => {},
                () = tokio::time::sleep(self.poll_interval) => {},
            }
        }
        self.drain().await;
        tracing::info!("outbox relay stopped");
    }

    /// Publishes what is left, for a bounded time, so events committed by the last requests
    /// before a shutdown leave with this process instead of waiting for the next start.
    async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            match self.publish_batch().await {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "final outbox drain failed");
                    return;
                }
            }
        }
    }

    async fn listen(&self) -> anyhow::Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .context("connecting the outbox listener")?;
        listener.listen(CHANNEL).await.context("LISTEN outbox")?;
        Ok(listener)
    }

    /// Publishes up to one batch; returns how many rows were published.
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("beginning the relay transaction")?;
        // One relay publishes at a time, in id order: the round reads only if it takes the
        // relay lock, in the same statement (one round trip fewer per round than a statement
        // of its own). The lock is tried once (an InitPlan: a relay that does not get it reads
        // no row) and never waited for, so the statement's snapshot, taken before it, misses
        // nothing: a row the previous leader deleted and committed since is not returned by
        // `FOR UPDATE` (it is gone), and a row committed since waits for the next round. The
        // answer has one row even when no row is read, saying whether the lock was taken.
        let claimed: Vec<ClaimedRow> = sqlx::query_as(
            "WITH leader AS MATERIALIZED (SELECT pg_try_advisory_xact_lock($2) AS taken), \
             batch AS ( \
               SELECT id, topic, key, payload, headers FROM outbox \
               WHERE (SELECT taken FROM leader) \
               ORDER BY id LIMIT $1 FOR UPDATE OF outbox SKIP LOCKED) \
             SELECT leader.taken, batch.id, batch.topic, batch.key, batch.payload, batch.headers \
             FROM leader LEFT JOIN batch ON true ORDER BY batch.id",
        )
        .bind(self.batch_size)
        .bind(RELAY_LOCK)
        .fetch_all(&mut *tx)
        .await
        .context("reading the outbox")?;
        if !claimed.first().is_some_and(|row| row.taken) {
            return Ok(0);
        }
        let rows: Vec<OutboxRow> = claimed.into_iter().filter_map(ClaimedRow::row).collect();
        // Rows waiting when this batch started; counted only when the batch is full, so an
        // idle or light relay never scans the table.
        let backlog = if (rows.len() as i64) < self.batch_size {
            rows.len() as i64
        } else {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
                .fetch_one(&mut *tx)
                .await
                .context("counting the outbox")?
        };
        metrics::gauge!("outbox_backlog").set(backlog as f64);
        if rows.is_empty() {
            return Ok(0);
        }

        let traces: Vec<HashMap<String, String>> = rows
            .iter()
            .map(|row| serde_json::from_value(row.headers.clone()).unwrap_or_default())
            .collect();
        let payloads: Vec<Vec<u8>> = rows
            .iter()
            .map(|row| serde_json::to_vec(&row.payload))
            .collect::<Result<_, _>>()
            .context("encoding the payloads")?;
        let records: Vec<OutgoingRecord<'_>> = rows
            .iter()
            .zip(&payloads)
            .zip(&traces)
            .map(|((row, payload), trace)| OutgoingRecord {
                topic: &row.topic,
                key: &row.key,
                payload,
                trace,
            })
            .collect();
        let outcomes: Vec<(i64, Result<(), String>)> = rows
            .iter()
            .map(|row| row.id)
            .zip(publish_in_order(&self.producer, &records).await)
            .collect();

        let delivered: Vec<i64> = outcomes
            .iter()
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|(id, _)| *id)
            .collect();
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(&delivered)
            .execute(&mut *tx)
            .await
            .context("deleting published rows")?;
        tx.commit()
            .await
            .context("committing the relay transaction")?;
        metrics::counter!("outbox_published_total").increment(delivered.len() as u64);
        let failed = outcomes.len() - delivered.len();
        if failed > 0 {
            anyhow::bail!("{failed} of {} records were not delivered", outcomes.len());
        }
        Ok(delivered.len())
    }
}
