//! The queue's pulse: wakes idle senders when messages were queued, and holds the consumers
//! back while too many messages are unsent (back-pressure).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{messages, waiting};

#[derive(Debug)]
pub struct Queue {
    pool: PgPool,
    wake: Notify,
    /// The last measured number of unsent messages.
    depth: AtomicI64,
    max_depth: i64,
}

impl Queue {
    pub fn new(pool: PgPool, max_depth: i64) -> Self {
        Self {
            pool,
            wake: Notify::new(),
            depth: AtomicI64::new(0),
            max_depth,
        }
    }

    /// Counts `queued` new messages (until the next measurement corrects the figure) and wakes
    /// one idle sender per message. Waking every idle sender for each message made all of them
    /// run a claim (an `UPDATE`, so a commit) that all but one lost: 16 commits per message,
    /// two thirds of the commits an order cost. A sender that finishes a message claims the
    /// next one itself, so a user's later message (claimable only once the earlier one is
    /// done) is not left waiting for the poll.
    pub fn queued(&self, queued: usize) {
        self.depth
            .fetch_add(i64::try_from(queued).unwrap_or(i64::MAX), Ordering::Relaxed);
        for _ in 0..queued {
            self.wake.notify_one();
        }
    }

    /// Resolves at the next [`Queue::wake`].
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Returns once the queue is below its limit (or on shutdown: the record in hand is then
    /// handled anyway rather than left half done).
    pub async fn wait_for_room(&self, shutdown: &CancellationToken) {
        if self.depth.load(Ordering::Relaxed) < self.max_depth {
            return;
        }
        loop {
            match self.measure().await {
                Ok(depth) if depth < self.max_depth => return,
                Ok(_) => metrics::counter!("notification_backpressure_waits_total").increment(1),
                Err(error) => {
                    // Not knowing the depth is no reason to stop consuming.
                    tracing::warn!(%error, "cannot measure the queue; not waiting");
                    return;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    /// Counts unsent messages per channel, exports the gauges and remembers the total.
    pub async fn measure(&self) -> sqlx::Result<i64> {
        let per_channel = messages::queue_depth(&self.pool).await?;
        let mut total = 0;
        for channel in ["email", "sms"] {
            let depth = per_channel
                .iter()
                .find(|(name, _)| name == channel)
                .map_or(0, |(_, depth)| *depth);
            metrics::gauge!("notification_queue_depth", "channel" => channel).set(depth as f64);
            total += depth;
        }
        self.depth.store(total, Ordering::Relaxed);
        let mut conn = self.pool.acquire().await?;
        let parked = waiting::count(&mut conn).await?;
        metrics::gauge!("notification_waiting_for_contact").set(parked as f64);
        Ok(total)
    }

    /// Measures every second until shutdown.
    pub async fn report(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.measure().await {
                tracing::debug!(%error, "queue depth not measured");
            }
        }
    }
}
