//! Live order status: what `GET /api/orders/{id}/events` pushes to a waiting client (the
//! storefront's checkout page, the benchmark's buyers) instead of having it poll.
//!
//! Every status change goes through `saga::advance`, which sends its [`announcement`] with the
//! change's own write: PostgreSQL delivers a `NOTIFY` only when that transaction commits,
//! so a client is never told of a change that did not happen, and every replica hears every
//! change, whichever replica made it. Each process runs one [`StatusFeed`] listener (one
//! connection) that fans the changes out to its open streams through a broadcast channel.
//!
//! What can still be missed, and how a stream recovers: a notification sent while the
//! listener's connection was down, or one a slow stream lost because the channel overflowed.
//! A stream therefore re-reads its order after a lag and at least every
//! [`RESYNC_INTERVAL`], so a missed change arrives late but arrives. Streams end when the
//! order reaches a terminal status, after [`MAX_STREAM`] (a client reconnects, as EventSource
//! does by itself), or when the process shuts down (so a graceful stop is not held open).

use std::convert::Infallible;
use std::time::Duration;

use anyhow::Context as _;
use axum::response::sse::Event;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::status::OrderStatus;
use crate::store::orders;

/// The PostgreSQL channel status changes are announced on.
pub const CHANNEL: &str = "order_status";
/// How often an open stream re-reads its order, whatever it heard.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(5);
/// How long one stream stays open.
pub const MAX_STREAM: Duration = Duration::from_secs(300);
/// Changes buffered per process for streams that fall behind.
const CAPACITY: usize = 4096;

/// One status change, as announced and as pushed (the SSE `status` event's data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusChange {
    pub order_id: Uuid,
    pub status: OrderStatus,
    /// Why it was rejected or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// What announces `change` on [`CHANNEL`]: `saga::advance` sends it with the status change
/// itself (`store::orders::set_status`), and PostgreSQL delivers it to every replica's
/// listener when that transaction commits.
pub fn announcement(change: &StatusChange) -> anyhow::Result<String> {
    serde_json::to_string(change).context("encoding a status change")
}

/// This process's end of the announcements: one listener, many streams.
#[derive(Clone)]
pub struct StatusFeed {
    sender: broadcast::Sender<StatusChange>,
    /// Cancelled when the process starts to shut down: open streams end.
    closing: CancellationToken,
}

impl std::fmt::Debug for StatusFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusFeed")
            .field("streams", &self.sender.receiver_count())
            .finish()
    }
}

impl StatusFeed {
    pub fn new(closing: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        Self { sender, closing }
    }

    /// Listens on [`CHANNEL`] until `stop` is cancelled, reconnecting with backoff when the
    /// connection fails (streams resynchronise by themselves meanwhile).
    pub async fn run(self, pool: PgPool, stop: CancellationToken) {
        let mut pause = Duration::from_millis(200);
        while !stop.is_cancelled() {
            match self.listen(&pool, &stop).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "order status listener failed");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    async fn listen(&self, pool: &PgPool, stop: &CancellationToken) -> anyhow::Result<()> {
        let mut listener = PgListener::connect_with(pool)
            .await
            .context("connecting the status listener")?;
        listener
            .listen(CHANNEL)
            .await
            .context("listening for status changes")?;
        loop {
            let notification = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                received = listener.try_recv() => received.context("receiving a status change")?,
            };
            // `None`: the connection dropped and will be re-established by the next call;
            // what was sent meanwhile is lost, and the streams' resync covers it.
            let Some(notification) = notification else {
                continue;
            };
            match serde_json::from_str::<StatusChange>(notification.payload()) {
                // No stream open is fine: nobody is waiting.
                Ok(change) => {
                    let _ = self.sender.send(change);
                }
                Err(error) => tracing::warn!(%error, "undecodable status change ignored"),
            }
        }
    }

    /// The SSE events of order `current.order_id`, starting with `current` (its status now).
    /// Subscribe before reading `current`, so no change falls between the read and the
    /// subscription: that is what `changes` is for.
    pub fn stream(
        &self,
        pool: PgPool,
        changes: broadcast::Receiver<StatusChange>,
        current: StatusChange,
    ) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        let state = Streaming {
            pool,
            changes,
            closing: self.closing.clone(),
            order_id: current.order_id,
            last: None,
            next: Some(current),
            ends_at: tokio::time::Instant::now() + MAX_STREAM,
        };
        futures::stream::unfold(state, |mut state| async move {
            let change = state.next_change().await?;
            state.last = Some(change.status);
            Some((Ok(event(&change)), state))
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StatusChange> {
        self.sender.subscribe()
    }
}

fn event(change: &StatusChange) -> Event {
    let data = serde_json::to_string(change).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event("status").data(data)
}

struct Streaming {
    pool: PgPool,
    changes: broadcast::Receiver<StatusChange>,
    closing: CancellationToken,
    order_id: Uuid,
    /// The status last pushed.
    last: Option<OrderStatus>,
    /// A change to push before waiting for more.
    next: Option<StatusChange>,
    ends_at: tokio::time::Instant,
}

impl Streaming {
    /// The next change worth pushing, or `None` when the stream should end.
    async fn next_change(&mut self) -> Option<StatusChange> {
        if self.last.is_some_and(OrderStatus::is_terminal) {
            return None;
        }
        loop {
            if let Some(change) = self.next.take()
                && Some(change.status) != self.last
            {
                return Some(change);
            }
            let resync = tokio::time::sleep(RESYNC_INTERVAL);
            tokio::select! {
                () = self.closing.cancelled() => return None,
                () = tokio::time::sleep_until(self.ends_at) => return None,
                received = self.changes.recv() => match received {
                    Ok(change) if change.order_id == self.order_id => self.next = Some(change),
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.next = self.read().await,
                    Err(RecvError::Closed) => return None,
                },
                () = resync => self.next = self.read().await,
            }
        }
    }

    /// The order's status from the database (`None` if it cannot be read now; the next
    /// resync tries again).
    async fn read(&self) -> Option<StatusChange> {
        let mut conn = self.pool.acquire().await.ok()?;
        let order = orders::by_id(&mut conn, self.order_id).await.ok()??;
        current(&order)
    }
}

/// An order's status now, as a change.
pub fn current(order: &orders::OrderRow) -> Option<StatusChange> {
    Some(StatusChange {
        order_id: order.id,
        status: order.status().ok()?,
        status_reason: order.status_reason.clone(),
        at: order.updated_at,
    })
}
