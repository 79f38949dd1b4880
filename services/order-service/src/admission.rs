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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

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
    /// default 16; 0 switches admission control off).
    pub max_late: u32,
    /// How often the late orders are counted (`ORDER_ADMISSION_CHECK_INTERVAL_MS`, default
    /// 250).
    pub check_interval: Duration,
}

impl AdmissionSettings {
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(2_000);
    pub const DEFAULT_MAX_LATE: u32 = 16;
    pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(250);
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
}

impl Admission {
    pub fn new(settings: AdmissionSettings) -> Self {
        Self {
            settings,
            shedding: Arc::new(AtomicBool::new(false)),
            late: Arc::new(AtomicU32::new(0)),
        }
    }

    /// `Err` with the 503 to answer while new orders are shed.
    pub fn check(&self) -> Result<(), Problem> {
        if !self.shedding.load(Ordering::Relaxed) {
            return Ok(());
        }
        metrics::counter!("order_admission_shed_total").increment(1);
        let late = self.late.load(Ordering::Relaxed);
        let mut problem = Problem::unavailable(format!(
            "orders are arriving faster than their stock is reserved ({late} orders have waited \
             over {} ms for their reservation); nothing was placed: retry after Retry-After \
             seconds",
            self.settings.max_wait.as_millis()
        ));
        problem.problem_type = BUSY.into();
        problem.title = "Too busy to take orders".into();
        problem.retry_after_secs = Some(retry_after_secs(self.settings.max_wait));
        Err(problem)
    }

    /// Counts late orders every check interval until `stop`; a failed count keeps the last
    /// decision (PostgreSQL away fails the placement anyway, and the next count corrects it).
    pub async fn run(self, pool: PgPool, stop: CancellationToken) {
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
        });
        assert!(admission.check().is_ok());
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
