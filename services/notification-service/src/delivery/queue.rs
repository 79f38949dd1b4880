//! The queue's pulse: wakes idle senders when messages were queued, hands a message stored
//! as claimed straight to an idle sender, and holds the consumers back while too many messages
//! are unsent (back-pressure).

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::store::messages::Claimed;
use crate::store::{messages, waiting};

/// A message stored as claimed by this process ([`messages::insert_claiming`]) on its way to a
/// sender, with the moment its lease began.
#[derive(Debug)]
pub struct Handoff {
    pub message: Claimed,
    pub leased_at: Instant,
}

/// Room for one [`Handoff`], taken before the message is stored: a message is stored as
/// claimed only when a sender of this process is idle to take it at once.
pub struct HandoffSlot<'a> {
    permit: mpsc::Permit<'a, Handoff>,
    /// The queue's depth, which a handed-off message counts towards like a queued one.
    depth: &'a AtomicI64,
    /// How long the stored claim lasts.
    pub lease: Duration,
}

impl HandoffSlot<'_> {
    /// Gives the stored message to a sender (after its transaction committed).
    /// It counts towards the depth like a queued message, but no sender needs waking for it.
    pub fn send(self, message: Claimed, leased_at: Instant) {
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.permit.send(Handoff { message, leased_at });
        metrics::counter!("notification_handoffs_total").increment(1);
    }
}

/// Where handed-off messages go, once this process's senders run.
#[derive(Debug)]
struct Handoffs {
    sender: mpsc::Sender<Handoff>,
    lease: Duration,
}

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
    /// Set when this process's senders start ([`Queue::accept_handoffs`]).
    handoffs: OnceLock<Handoffs>,
    /// Senders of this process waiting for work.
    idle_senders: AtomicUsize,
    /// Which sender's poll is due: one a poll interval per process, not one per sender.
    polls: PollGate,
}

/// Shares the poll among a process's senders. Each idle sender has a timer, but a claim that
/// found nothing due tells every sender that nothing was, so within one poll interval only the
/// first sender whose timer fires polls; the others wait for the next interval. Before, every
/// sender polled on its own timer: with 16 senders an idle process ran 16 claims a second (an
/// `UPDATE` over the due messages each), 10 ms a second of PostgreSQL's CPU and 8 of this
/// service's on an idle stack. A poll that finds a message wakes another sender (see
/// [`Queue::claimed`]), so a backlog the poll discovers is drained by every sender, not one a
/// second.
#[derive(Debug, Default)]
pub struct PollGate {
    /// The earliest moment the next poll is due; `None` until the first poll or empty claim.
    due: Mutex<Option<Instant>>,
}

impl PollGate {
    /// A sender's poll timer fired at `now`: `None` if this sender is to poll (the next poll
    /// is then due an `interval` later), or the moment the next poll is due if another sender
    /// polled, or a claim found nothing, less than an `interval` ago.
    pub fn take(&self, now: Instant, interval: Duration) -> Option<Instant> {
        let mut due = self
            .due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *due {
            Some(at) if now < at => Some(at),
            _ => {
                *due = Some(now + interval);
                None
            }
        }
    }

    /// A claim found nothing due at `now`: as good as a poll, so none is due before an
    /// `interval` has passed.
    pub fn found_nothing(&self, now: Instant, interval: Duration) {
        let mut due = self
            .due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = now + interval;
        if due.is_none_or(|at| at < next) {
            *due = Some(next);
        }
    }
}

/// Counts a sender as idle while it lives.
pub struct IdleSender<'a>(&'a AtomicUsize);

impl Drop for IdleSender<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Queue {
    pub fn new(pool: PgPool, max_depth: i64) -> Self {
        Self {
            pool,
            wake: Notify::new(),
            depth: AtomicI64::new(0),
            max_depth,
            unclaimed: AtomicI64::new(0),
            handoffs: OnceLock::new(),
            idle_senders: AtomicUsize::new(0),
            polls: PollGate::default(),
        }
    }

    /// Opens the hand-off of messages stored as claimed (leased for `lease`) to this process's
    /// senders; `None` if it was opened before.
    pub fn accept_handoffs(
        &self,
        senders: usize,
        lease: Duration,
    ) -> Option<mpsc::Receiver<Handoff>> {
        let (sender, receiver) = mpsc::channel(senders.max(1));
        self.handoffs.set(Handoffs { sender, lease }).ok()?;
        Some(receiver)
    }

    /// Room to hand a message to a sender, if one is idle and the senders run; otherwise the
    /// message is queued as pending for a claim.
    pub fn reserve_handoff(&self) -> Option<HandoffSlot<'_>> {
        if self.idle_senders.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let handoffs = self.handoffs.get()?;
        let permit = handoffs.sender.try_reserve().ok()?;
        Some(HandoffSlot {
            permit,
            depth: &self.depth,
            lease: handoffs.lease,
        })
    }

    /// Marks the calling sender idle until the guard is dropped.
    pub fn idle_sender(&self) -> IdleSender<'_> {
        self.idle_senders.fetch_add(1, Ordering::Relaxed);
        IdleSender(&self.idle_senders)
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

    /// A sender claimed a message. Answers whether it was one this process queued; if not
    /// (another replica's, a retry falling due, a lease that ran out), the claim found what the
    /// poll is there for, and more may be waiting: one more sender is woken to claim, and it
    /// wakes the next if it finds one too, so such a backlog goes out as fast as the senders
    /// can send it, although only one sender polls.
    pub fn claimed(&self) -> bool {
        // Saturating at zero: claims of messages queued elsewhere are not counted in.
        let ours = self
            .unclaimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n > 0).then(|| n - 1)
            })
            .is_ok();
        if !ours {
            self.wake.notify_one();
        }
        ours
    }

    /// The poll gate shared by this process's senders.
    pub fn polls(&self) -> &PollGate {
        &self.polls
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
        assert!(queue.claimed());
        assert!(queue.may_have_more());
        assert!(queue.claimed());
        assert!(!queue.may_have_more());
        // A claim of a message another replica queued does not go below zero, and wakes a
        // sender to look for more such messages.
        assert!(!queue.claimed());
        tokio::time::timeout(Duration::from_secs(5), queue.woken())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        queue.queued(1);
        assert!(queue.may_have_more());
        Ok(())
    }

    #[test]
    fn one_sender_polls_per_interval_however_many_timers_fire() {
        let gate = PollGate::default();
        let interval = Duration::from_secs(1);
        let start = Instant::now();
        // The first timer to fire polls; the others, firing within the interval, wait for the
        // moment the next poll is due.
        assert_eq!(gate.take(start, interval), None);
        let next = start + interval;
        for late in [0, 1, 500, 999] {
            assert_eq!(
                gate.take(start + Duration::from_millis(late), interval),
                Some(next)
            );
        }
        // At that moment exactly one of them polls again.
        assert_eq!(gate.take(next, interval), None);
        assert_eq!(gate.take(next, interval), Some(next + interval));
        // A claim that found nothing counts as a poll and puts the next one off...
        let empty_at = next + Duration::from_millis(300);
        gate.found_nothing(empty_at, interval);
        assert_eq!(
            gate.take(next + interval, interval),
            Some(empty_at + interval)
        );
        // ...but never brings it forward.
        gate.found_nothing(next, interval);
        assert_eq!(gate.take(empty_at, interval), Some(empty_at + interval));
        assert_eq!(gate.take(empty_at + interval, interval), None);
    }

    #[tokio::test]
    async fn a_message_is_handed_off_only_to_an_idle_sender_of_a_running_pool() -> sqlx::Result<()>
    {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")?;
        let queue = Queue::new(pool, 100);
        let lease = Duration::from_secs(60);
        // Senders not running: no hand-off, even with a sender counted idle.
        let idle = queue.idle_sender();
        assert!(queue.reserve_handoff().is_none());
        let receiver = queue.accept_handoffs(1, lease);
        assert!(receiver.is_some());
        assert!(queue.accept_handoffs(1, lease).is_none(), "opened once");
        let slot = queue.reserve_handoff();
        assert_eq!(slot.as_ref().map(|slot| slot.lease), Some(lease));
        // The one place is taken until the slot is used or dropped.
        assert!(queue.reserve_handoff().is_none());
        drop(slot);
        assert!(queue.reserve_handoff().is_some());
        // No idle sender: the message is queued for a claim instead.
        drop(idle);
        assert!(queue.reserve_handoff().is_none());
        // Senders stopped: no hand-off either.
        let _idle = queue.idle_sender();
        drop(receiver);
        assert!(queue.reserve_handoff().is_none());
        Ok(())
    }
}
