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
    /// Messages this process queued and no sender of it has claimed yet (never below zero): a
    /// hint whether a sender that just finished should claim again at once. Without it every
    /// sender ran one more claim after each message, and with the queue drained that claim
    /// (an `UPDATE` over the due messages) found nothing: half of all claims under the
    /// checkout. Messages queued by another replica, or retried later, are found by the poll
    /// and the wake-ups as before.
    unclaimed: AtomicI64,
}

impl Queue {
    pub fn new(pool: PgPool, max_depth: i64) -> Self {
        Self {
            pool,
            wake: Notify::new(),
            depth: AtomicI64::new(0),
            max_depth,
            unclaimed: AtomicI64::new(0),
        }
    }

    /// Counts `queued` new messages (until the next measurement corrects the figure) and wakes
    /// one idle sender per message. Waking every idle sender for each message made all of them
    /// run a claim (an `UPDATE`, so a commit) that all but one lost: 16 commits per message,
    /// two thirds of the commits an order cost. A sender that finishes a message claims the
    /// next one itself, so a user's later message (claimable only once the earlier one is
    /// done) is not left waiting for the poll.
    pub fn queued(&self, queued: usize) {
        let queued_count = i64::try_from(queued).unwrap_or(i64::MAX);
        self.depth.fetch_add(queued_count, Ordering::Relaxed);
        self.unclaimed.fetch_add(queued_count, Ordering::Relaxed);
        for _ in 0..queued {
            self.wake.notify_one();
        }
    }

    /// A sender claimed a message.
    pub fn claimed(&self) {
        // Saturating at zero: claims of messages queued elsewhere are not counted in.
        let _ = self
            .unclaimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n > 0).then(|| n - 1)
            });
    }

    /// Whether messages this process queued may still wait for a sender: then a sender that
    /// finished one claims the next at once (a user's later message, claimable only once the
    /// earlier one is done, is among them) instead of waiting for a wake-up or the poll.
    pub fn may_have_more(&self) -> bool {
        self.unclaimed.load(Ordering::Relaxed) > 0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn senders_claim_again_only_while_queued_messages_are_unclaimed() -> sqlx::Result<()> {
        // A lazy pool never connects; the hint needs no database.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")?;
        let queue = Queue::new(pool, 100);
        assert!(!queue.may_have_more());
        queue.queued(2);
        assert!(queue.may_have_more());
        queue.claimed();
        assert!(queue.may_have_more());
        queue.claimed();
        assert!(!queue.may_have_more());
        // A claim of a message another replica queued does not go below zero.
        queue.claimed();
        queue.queued(1);
        assert!(queue.may_have_more());
        Ok(())
    }
}
