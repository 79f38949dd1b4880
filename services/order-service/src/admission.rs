//! Admission control for new orders: when the saga falls behind, `POST /api/orders` answers
//! 503 at once (with `Retry-After`) instead of accepting orders it cannot reserve in time.
//!
//! Why: an order accepted faster than product-service reserves stock waits in a queue that
//! only grows. Past a point every order waits so long that its buyer gives up before paying,
//! and the shop pays none of them. `cargo xtask bench` showed exactly that: offered 50
//! orders/s on a stack that sustains about 15, it accepted all 3,000 and 25 reached `PAID`.
//! Refusing the excess quickly keeps the accepted orders' wait bounded, so the shop sells at
//! its capacity while overloaded, and a refused buyer knows at once to come back.
//!
//! The signal is the queue's own delay, not a rate: the number of orders still `PENDING`
//! (waiting for their reservation) after [`AdmissionSettings::max_wait`]. It needs no notion of
//! the machine's capacity, holds across replicas (every replica reads the same table, so they
//! agree), and falls to zero by itself once the backlog is served. Counting late orders, not
//! asking whether the oldest is late, keeps a single order stuck for its own reasons (its
//! reservation event held by a poison record) from closing the shop: it takes
//! [`AdmissionSettings::max_late`] late orders to shed. A task samples the count every
//! [`AdmissionSettings::check_interval`] with one bounded query over a partial index of the
//! `PENDING` orders; placing an order only reads a flag.
//!
//! Hysteresis ([`Gate`]): shedding starts at `max_late` late orders and stops when fewer than
//! half of that remain, so the shop does not flap open and shut on every sample while the
//! backlog drains, and reopens while some backlog is left, which keeps the pipeline busy.
//!
//! The second signal covers the rest of the saga. With reservations keeping up, the backlog
//! can build further on: `cargo xtask bench` offered 50 orders/s to a fresh stack that
//! sustains about 46, no order stayed `PENDING`, but payment-service's order replica (its
//! consumers of `order.events`) fell 600 records behind, every payment waited for its order to
//! reach the replica until the request's budget ran out (503), and 2,268 of 3,000 orders went
//! unpaid while none was shed. So order-service also watches the consumer groups that take
//! its `order.events` on the saga's path (`ORDER_ADMISSION_WATCH_GROUPS`, by default
//! payment-service's order replica and product-service's reservations), from outside them
//! (`messaging::GroupProbe`: committed offsets against the partitions' ends, once a second).
//! A group's backlog waits `lag / rate` (Little's law), the rate being what the group committed
//! over the last seconds ([`BacklogWait`]); while any watched group's wait is at least
//! [`AdmissionSettings::max_backlog`] (1 s: a payment waits at most `ORDER_WAIT_MS`, 1 s, for
//! its order to reach payment-service's replica), new orders are refused, and taken again
//! below half of it. Groups commit their offsets once a second, so the lag read at a random
//! moment includes up to a second of records already handled; the estimate takes the least
//! lag of the last four readings, 730 ms apart so that one of them falls soon after a commit,
//! which is the backlog that persisted.
//! A group that commits nothing is stopped, not slow (the service is down or restarting): that
//! is an outage, shown by its readiness and `consumer_lag`, and it does not close the shop;
//! orders placed meanwhile are served when it returns, as before.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use messaging::{GroupProbe, GroupProgress};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use web::Problem;

/// Problem type of an order refused because the shop is busy.
pub const BUSY: &str = "https://ferroshop.dev/problems/busy";

/// When the shop sheds new orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// An order still `PENDING` this long after it was placed is late
    /// (`ORDER_ADMISSION_MAX_WAIT_MS`, default 2000).
    pub max_wait: Duration,
    /// New orders are refused while at least this many are late (`ORDER_ADMISSION_MAX_LATE`,
    /// default 16; 0 switches this signal off). The same wait bounds the backlog of the
    /// watched consumer groups.
    pub max_late: u32,
    /// How often the late orders are counted (`ORDER_ADMISSION_CHECK_INTERVAL_MS`, default
    /// 250).
    pub check_interval: Duration,
    /// New orders are refused while a watched consumer group's backlog waits at least this
    /// long (`ORDER_ADMISSION_MAX_BACKLOG_MS`, default 1000).
    pub max_backlog: Duration,
}

impl AdmissionSettings {
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(2_000);
    pub const DEFAULT_MAX_LATE: u32 = 16;
    pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(250);
    pub const DEFAULT_MAX_BACKLOG: Duration = Duration::from_millis(1_000);
    /// The consumer groups of `order.events` watched by default (logical names, before the
    /// topic prefix): payment-service's order replica and product-service's reservations.
    pub const DEFAULT_WATCH_GROUPS: [&str; 2] =
        ["payment-service.orders", "product-service.inventory"];
}

/// How often the watched groups' progress is read. The groups commit their offsets once a
/// second; a reading every second would see each commit at the same phase (with a phase just
/// before the commit, a second of handled records looks like backlog on every reading), so
/// the readings come at a period that drifts through the commits' phase: any four consecutive
/// readings include one less than 0.3 s after a commit.
const BACKLOG_INTERVAL: Duration = Duration::from_millis(730);

/// How far back [`BacklogWait`] looks for a group's rate.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The shortest span a rate is measured over: two of the groups' one-second commits.
const MIN_RATE_SPAN: Duration = Duration::from_secs(2);

/// The readings whose least lag is taken as the backlog (see [`BACKLOG_INTERVAL`]).
const LAG_READINGS: usize = 4;

/// How soon a group that keeps up has committed a record: its one-second commit interval plus
/// a little handling. At readings [`BACKLOG_INTERVAL`] apart, the reading this old is the one
/// two before (1.46 s): records at the partitions' end then and still not committed have
/// waited at least about half a second unhandled.
const KEPT_UP_WITHIN: Duration = Duration::from_millis(1_400);

/// A consumer group's backlog at one reading (see [`BacklogWait`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// `lag / rate`: how long the backlog waits.
    pub wait: Duration,
    /// Whether records that were at the partitions' end [`KEPT_UP_WITHIN`] ago are still not
    /// committed: the group is behind, not only between two commits.
    pub behind: bool,
}

/// How long a consumer group's backlog waits, from its progress over the last few seconds:
/// `lag / rate` (Little's law), the lag being the least of the last [`LAG_READINGS`] and the
/// rate the records it committed over up to [`RATE_WINDOW`]; and whether the group is
/// [`Backlog::behind`]. Pure: the samples are given to it.
///
/// Why both: at a shopper's pace the rate is a few records in five seconds, so one handled
/// record waiting for its commit reads as a second's wait. A storefront buyer checking out
/// alone (`web/bench/storefront.mjs` in `cargo xtask bench`) had four readings in a row land
/// before a commit, the estimate reached 2.3 s and her fourth order was refused as "too busy".
/// A group that has committed everything that was there 1.4 s ago is not behind, whatever the
/// estimate; [`WaitGate`] starts refusing only for a group that is.
#[derive(Debug, Default)]
pub struct BacklogWait {
    samples: VecDeque<(Instant, GroupProgress)>,
}

impl BacklogWait {
    /// Takes a sample; returns the backlog, `None` when it cannot be told from a slow group:
    /// not yet [`MIN_RATE_SPAN`] of samples, or a group that committed nothing (or went
    /// back, as a reset group does) over the window.
    pub fn observe(&mut self, at: Instant, progress: GroupProgress) -> Option<Backlog> {
        self.samples.push_back((at, progress));
        while self.samples.len() > 1
            && self
                .samples
                .front()
                .is_some_and(|(first, _)| at.saturating_duration_since(*first) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let lag = self
            .samples
            .iter()
            .rev()
            .take(LAG_READINGS)
            .map(|(_, progress)| progress.lag())
            .min()
            .unwrap_or(0);
        if lag == 0 {
            return Some(Backlog {
                wait: Duration::ZERO,
                behind: false,
            });
        }
        let behind = self
            .samples
            .iter()
            .rev()
            .find(|(then, _)| at.saturating_duration_since(*then) >= KEPT_UP_WITHIN)
            .is_some_and(|(_, then)| progress.committed < then.end);
        let (first_at, first) = self.samples.front()?;
        let span = at.saturating_duration_since(*first_at);
        let committed = progress.committed - first.committed;
        if span < MIN_RATE_SPAN || committed <= 0 {
            return None;
        }
        Some(Backlog {
            wait: span.mul_f64(lag as f64 / committed as f64),
            behind,
        })
    }
}

/// The backlog decision, with the same hysteresis as [`Gate`]: refuse from a wait of `limit`
/// of a group that is [`Backlog::behind`], take orders again once the longest wait is below
/// half of it; no estimate (a stopped group) never refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitGate {
    limit: Duration,
    shedding: bool,
}

impl WaitGate {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            shedding: false,
        }
    }

    /// Takes the watched groups' backlogs at one reading (`None` for a group with no
    /// estimate); returns whether new orders are refused.
    pub fn observe(&mut self, backlogs: &[Option<Backlog>]) -> bool {
        let longest = backlogs.iter().flatten().map(|b| b.wait).max();
        let behind_longest = backlogs
            .iter()
            .flatten()
            .filter(|b| b.behind)
            .map(|b| b.wait)
            .max();
        self.shedding = match longest {
            None => false,
            Some(wait) if self.shedding => wait >= self.limit / 2,
            Some(_) => behind_longest.is_some_and(|wait| wait >= self.limit),
        };
        self.shedding
    }
}

/// The decision, from the latest count of late orders, with hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    max_late: u32,
    shedding: bool,
}

impl Gate {
    pub fn new(max_late: u32) -> Self {
        Self {
            max_late,
            shedding: false,
        }
    }

    /// Takes a new count of late orders; returns whether new orders are now refused.
    pub fn observe(&mut self, late: u32) -> bool {
        if self.max_late == 0 {
            self.shedding = false;
        } else if late >= self.max_late {
            self.shedding = true;
        } else if late.saturating_mul(2) < self.max_late {
            self.shedding = false;
        }
        self.shedding
    }

    pub fn shedding(&self) -> bool {
        self.shedding
    }
}

/// Shared between the sampling task and the request handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admission {
    settings: AdmissionSettings,
    shedding: Arc<AtomicBool>,
    /// The last count, for the problem's detail.
    late: Arc<AtomicU32>,
    /// Whether the watched groups' backlog refuses new orders.
    backlog_shedding: Arc<AtomicBool>,
    /// The longest wait of the watched groups' backlogs at the last reading, in milliseconds.
    backlog_wait_ms: Arc<AtomicU64>,
}

impl Admission {
    pub fn new(settings: AdmissionSettings) -> Self {
        Self {
            settings,
            shedding: Arc::new(AtomicBool::new(false)),
            late: Arc::new(AtomicU32::new(0)),
            backlog_shedding: Arc::new(AtomicBool::new(false)),
            backlog_wait_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// `Err` with the 503 to answer while new orders are shed.
    pub fn check(&self) -> Result<(), Problem> {
        let late_shedding = self.shedding.load(Ordering::Relaxed);
        if !late_shedding && !self.backlog_shedding.load(Ordering::Relaxed) {
            return Ok(());
        }
        metrics::counter!("order_admission_shed_total").increment(1);
        let detail = if late_shedding {
            let max_wait = self.settings.max_wait.as_millis();
            let late = self.late.load(Ordering::Relaxed);
            format!(
                "orders are arriving faster than their stock is reserved ({late} orders have \
                 waited over {max_wait} ms for their reservation); nothing was placed: retry \
                 after Retry-After seconds"
            )
        } else {
            let wait = self.backlog_wait_ms.load(Ordering::Relaxed);
            let max_wait = self.settings.max_backlog.as_millis();
            format!(
                "orders are arriving faster than the checkout completes (the saga's work on \
                 placed orders is about {wait} ms behind, the limit is {max_wait} ms); nothing \
                 was placed: retry after Retry-After seconds"
            )
        };
        let mut problem = Problem::unavailable(detail);
        problem.problem_type = BUSY.into();
        problem.title = "Too busy to take orders".into();
        problem.retry_after_secs = Some(retry_after_secs(self.settings.max_wait));
        Err(problem)
    }

    /// Runs both signals until `stop`: the late orders (every check interval) and, when
    /// `probes` are given, the watched groups' backlog (every [`BACKLOG_INTERVAL`]).
    pub async fn run(self, pool: PgPool, probes: Vec<GroupProbe>, stop: CancellationToken) {
        tokio::join!(
            self.clone().count_late(pool, stop.clone()),
            self.watch_backlog(probes, stop)
        );
    }

    /// Reads the watched groups' progress every [`BACKLOG_INTERVAL`] until `stop`; a failed reading counts
    /// as no estimate for that group.
    async fn watch_backlog(self, probes: Vec<GroupProbe>, stop: CancellationToken) {
        if probes.is_empty() {
            return;
        }
        let probes = Arc::new(probes);
        let mut waits: Vec<BacklogWait> = probes.iter().map(|_| BacklogWait::default()).collect();
        let mut gate = WaitGate::new(self.settings.max_backlog);
        let mut ticks = tokio::time::interval(BACKLOG_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let reading = probes.clone();
            let progress = tokio::task::spawn_blocking(move || {
                reading
                    .iter()
                    .map(|probe| {
                        probe.progress().map_err(|error| {
                            tracing::debug!(
                                group = probe.group(),
                                error = format!("{error:#}"),
                                "reading a watched group's progress failed"
                            );
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            let now = Instant::now();
            let mut backlogs = Vec::with_capacity(probes.len());
            for ((wait, progress), probe) in waits.iter_mut().zip(progress).zip(probes.iter()) {
                let Ok(progress) = progress else { continue };
                let backlog = wait.observe(now, progress);
                if let Some(backlog) = backlog {
                    metrics::gauge!("order_admission_backlog_wait_seconds", "group" => probe.group().to_owned())
                        .set(backlog.wait.as_secs_f64());
                }
                backlogs.push(backlog);
            }
            let longest = backlogs.iter().flatten().map(|b| b.wait).max();
            let was = self.backlog_shedding.load(Ordering::Relaxed);
            let shedding = gate.observe(&backlogs);
            self.backlog_wait_ms.store(
                longest.map_or(0, |wait| {
                    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
                }),
                Ordering::Relaxed,
            );
            self.backlog_shedding.store(shedding, Ordering::Relaxed);
            metrics::gauge!("order_admission_backlog_shedding").set(f64::from(u8::from(shedding)));
            if shedding != was {
                tracing::warn!(
                    wait_ms = longest.map(|wait| wait.as_millis()),
                    max_backlog_ms = self.settings.max_backlog.as_millis(),
                    shedding,
                    "order admission changed (backlog of the saga's consumers)"
                );
            }
        }
    }

    /// Counts late orders every check interval until `stop`; a failed count keeps the last
    /// decision (PostgreSQL away fails the placement anyway, and the next count corrects it).
    async fn count_late(self, pool: PgPool, stop: CancellationToken) {
        if self.settings.max_late == 0 {
            return;
        }
        let mut gate = Gate::new(self.settings.max_late);
        let mut ticks = tokio::time::interval(self.settings.check_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match late_orders(&pool, self.settings).await {
                Ok(late) => {
                    let was = gate.shedding();
                    let shedding = gate.observe(late);
                    self.late.store(late, Ordering::Relaxed);
                    self.shedding.store(shedding, Ordering::Relaxed);
                    metrics::gauge!("order_admission_late_pending").set(f64::from(late));
                    metrics::gauge!("order_admission_shedding").set(f64::from(u8::from(shedding)));
                    if shedding != was {
                        tracing::warn!(
                            late,
                            max_late = self.settings.max_late,
                            shedding,
                            "order admission changed"
                        );
                    }
                }
                Err(error) => {
                    tracing::debug!(error = format!("{error:#}"), "counting late orders failed");
                }
            }
        }
    }
}

/// Seconds a refused buyer should wait: about the time a late order has already waited,
/// at least one.
fn retry_after_secs(max_wait: Duration) -> u64 {
    max_wait.as_secs_f64().ceil().max(1.0) as u64
}

/// How many orders have been `PENDING` longer than `max_wait`, counted up to `max_late` (the
/// decision needs no more, and the bound keeps the query short however long the backlog).
async fn late_orders(pool: &PgPool, settings: AdmissionSettings) -> anyhow::Result<u32> {
    let late: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM orders \
         WHERE status = 'PENDING' AND created_at < now() - make_interval(secs => $1) \
         LIMIT $2) AS late",
    )
    .bind(settings.max_wait.as_secs_f64())
    .bind(i64::from(settings.max_late))
    .fetch_one(pool)
    .await?;
    Ok(u32::try_from(late).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_from_the_limit_and_reopens_below_half_of_it() {
        let mut gate = Gate::new(16);
        assert!(!gate.observe(0));
        assert!(!gate.observe(15));
        assert!(gate.observe(16));
        // Draining: still shedding down to half the limit.
        assert!(gate.observe(12));
        assert!(gate.observe(8));
        assert!(!gate.observe(7));
        // Open again: rising below the limit does not shed.
        assert!(!gate.observe(10));
        assert!(gate.observe(40));
    }

    #[test]
    fn a_limit_of_one_reopens_only_when_nothing_is_late() {
        let mut gate = Gate::new(1);
        assert!(gate.observe(1));
        assert!(!gate.observe(0));
    }

    #[test]
    fn a_limit_of_zero_never_sheds() {
        let mut gate = Gate::new(0);
        assert!(!gate.observe(0));
        assert!(!gate.observe(u32::MAX));
    }

    fn progress(committed: i64, end: i64) -> GroupProgress {
        GroupProgress { committed, end }
    }

    fn behind(wait: Duration) -> Option<Backlog> {
        Some(Backlog { wait, behind: true })
    }

    #[test]
    fn a_backlog_waits_its_lag_divided_by_the_rate_the_group_commits() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut wait = BacklogWait::default();
        // Too short a span to tell a rate.
        assert_eq!(wait.observe(at(0), progress(0, 150)), None);
        assert_eq!(wait.observe(at(1), progress(50, 200)), None);
        // 100 records in 2 s = 50/s; the least lag of the readings so far is 100: 2 s. And 50
        // of the records at the end at second 0 are still not committed: behind.
        assert_eq!(
            wait.observe(at(2), progress(100, 200)),
            behind(Duration::from_secs(2))
        );
        // The rate is taken over the last 5 s only: from second 1 (50) to 7 (350), 50/s; the
        // lag is the least of seconds 4 to 7 (300, 250, 200, 250): 4 s.
        for (second, committed, end) in [(3, 150, 500), (4, 200, 500), (5, 250, 500), (6, 300, 500)]
        {
            wait.observe(at(second), progress(committed, end));
        }
        assert_eq!(
            wait.observe(at(7), progress(350, 600)),
            behind(Duration::from_secs_f64(200.0 / 50.0))
        );
        // A reading with no commit since the last (lag up, 300): the least of seconds 5 to 8
        // (250, 200, 250, 300) still counts; the rate from second 3 (150) to 8 (350) is 40/s.
        assert_eq!(
            wait.observe(at(8), progress(350, 650)),
            behind(Duration::from_secs_f64(200.0 / 40.0))
        );
    }

    #[test]
    fn a_caught_up_group_waits_nothing_and_a_stopped_one_is_not_called_slow() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut caught_up = BacklogWait::default();
        assert_eq!(
            caught_up.observe(at(0), progress(40, 40)),
            Some(Backlog {
                wait: Duration::ZERO,
                behind: false
            })
        );

        // A group that commits nothing for the whole window: down, not slow.
        let mut stopped = BacklogWait::default();
        for second in 0..=6 {
            assert_eq!(
                stopped.observe(at(second), progress(10, 60 + 50 * second as i64)),
                None
            );
        }
        // A group reset to the start (committed went back) gives no estimate either.
        let mut reset = BacklogWait::default();
        reset.observe(at(0), progress(100, 120));
        assert_eq!(reset.observe(at(3), progress(0, 130)), None);
    }

    #[test]
    fn a_group_that_commits_each_record_within_the_interval_is_not_behind_however_slow_the_rate() {
        let start = Instant::now();
        let reading = |k: u64| start + BACKLOG_INTERVAL * u32::try_from(k).unwrap_or(0);
        let mut quiet = BacklogWait::default();
        // A quiet group, then a shopper's pace: one record arrives just before each of readings
        // 4 to 7, and each is committed by the next reading. Every one of the last four
        // readings sees a lag of 1, and 3 records were committed in 4.4 s: `lag / rate` says
        // 1.46 s, but what was at the end two readings ago is committed.
        for k in 0..=3 {
            quiet.observe(reading(k), progress(10, 10));
        }
        let mut last = None;
        for k in 4..=7 {
            let committed = 10 + (k as i64 - 4);
            last = quiet.observe(reading(k), progress(committed, committed + 1));
        }
        assert!(
            last.is_some_and(|b| !b.behind && b.wait > Duration::from_secs(1)),
            "{last:?}"
        );
        let mut gate = WaitGate::new(Duration::from_secs(1));
        assert!(!gate.observe(&[last]));

        // A group that commits slower than records arrive: at reading 7 the record that was at
        // the end at reading 5 (1.46 s before) is still not committed (lag 2 at 4 records in
        // 4.4 s: 2.2 s).
        let mut slow = BacklogWait::default();
        for (k, committed, end) in [
            (0, 6, 8),
            (1, 7, 9),
            (2, 8, 10),
            (3, 9, 10),
            (4, 9, 11),
            (5, 10, 12),
            (6, 10, 13),
            (7, 11, 14),
        ] {
            last = slow.observe(reading(k), progress(committed, end));
        }
        assert!(
            last.is_some_and(|b| b.behind && b.wait > Duration::from_secs(1)),
            "{last:?}"
        );
        assert!(gate.observe(&[last]));
    }

    #[test]
    fn the_backlog_gate_refuses_from_the_limit_and_reopens_below_half_or_without_estimate() {
        let mut gate = WaitGate::new(Duration::from_secs(2));
        let between_commits = |wait| {
            Some(Backlog {
                wait,
                behind: false,
            })
        };
        assert!(!gate.observe(&[behind(Duration::from_millis(1_999))]));
        // A long estimate of a group that is only between two commits does not close the shop.
        assert!(!gate.observe(&[between_commits(Duration::from_secs(5)), None]));
        assert!(gate.observe(&[behind(Duration::from_secs(2)), None]));
        // Once refusing, any wait of at least half the limit keeps refusing (behind or not),
        // so the gate does not flap with the groups' commits.
        assert!(gate.observe(&[between_commits(Duration::from_millis(1_500))]));
        assert!(gate.observe(&[behind(Duration::from_millis(1_500))]));
        assert!(!gate.observe(&[
            behind(Duration::from_millis(999)),
            between_commits(Duration::ZERO)
        ]));
        assert!(gate.observe(&[
            between_commits(Duration::ZERO),
            behind(Duration::from_secs(10))
        ]));
        assert!(!gate.observe(&[None, None]));
        assert!(!gate.observe(&[]));
    }

    #[test]
    fn refused_buyers_wait_about_the_max_wait() {
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2_000)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2_500)), 3);
    }

    #[test]
    fn refusals_are_503_problems_with_retry_after() {
        let admission = Admission::new(AdmissionSettings {
            max_wait: Duration::from_millis(2_000),
            max_late: 4,
            check_interval: Duration::from_millis(250),
            max_backlog: Duration::from_millis(1_000),
        });
        assert!(admission.check().is_ok());
        admission.backlog_shedding.store(true, Ordering::Relaxed);
        admission.backlog_wait_ms.store(2_500, Ordering::Relaxed);
        let behind = admission.check().err();
        assert_eq!(behind.as_ref().map(|p| p.problem_type.as_str()), Some(BUSY));
        assert!(behind.is_some_and(|p| p.detail.contains("2500 ms behind, the limit is 1000 ms")));
        admission.backlog_shedding.store(false, Ordering::Relaxed);
        admission.shedding.store(true, Ordering::Relaxed);
        admission.late.store(5, Ordering::Relaxed);
        let problem = admission.check().err();
        let problem = problem.as_ref();
        assert_eq!(
            problem.map(Problem::status_code),
            Some(axum::http::StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(problem.map(|p| p.problem_type.as_str()), Some(BUSY));
        assert_eq!(problem.and_then(|p| p.retry_after_secs), Some(2));
    }
}
