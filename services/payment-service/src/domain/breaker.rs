//! A circuit breaker in front of the provider: after `threshold` consecutive failures
//! (timeouts, 5xx, unreachable) calls are refused at once for `open_for`, so a provider outage
//! costs clients a fast 503 instead of a long wait each, and the provider gets room to recover.
//! After that calls may try again (half-open): the first success closes the breaker, a failure
//! opens it again. Half-open lets every caller through rather than exactly one trial, so a
//! caller that checked and then did not call (its order was taken, say) can never leave the
//! breaker stuck. Declines are answers, not failures.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain counters: still consistent after a panic elsewhere.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go out at `now`.
    pub fn allow(&self, now: Instant) -> bool {
        !self.is_open(now)
    }

    /// Whether the breaker refuses calls.
    pub fn is_open(&self, now: Instant) -> bool {
        let state = self.state();
        state
            .opened_at
            .is_some_and(|opened| now.duration_since(opened) < self.open_for)
    }

    pub fn record_success(&self) {
        let mut state = self.state();
        *state = State::default();
    }

    pub fn record_failure(&self, now: Instant) {
        let mut state = self.state();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= self.threshold {
            if state.opened_at.is_none() {
                tracing::warn!(
                    failures = state.consecutive_failures,
                    "provider circuit opened"
                );
            }
            state.opened_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_pause() {
        let breaker = Breaker::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..2 {
            breaker.record_failure(t0);
        }
        assert!(breaker.allow(t0), "two failures: still closed");
        breaker.record_failure(t0);
        assert!(!breaker.allow(t0 + Duration::from_secs(1)), "open");
        assert!(breaker.is_open(t0 + Duration::from_secs(1)));
        let later = t0 + Duration::from_secs(11);
        assert!(breaker.allow(later), "half-open: calls may try");
        breaker.record_failure(later);
        assert!(!breaker.allow(later + Duration::from_secs(1)), "open again");
        let much_later = later + Duration::from_secs(11);
        assert!(breaker.allow(much_later));
        breaker.record_success();
        assert!(
            breaker.allow(much_later) && breaker.allow(much_later),
            "closed"
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new(2, Duration::from_secs(10));
        let now = Instant::now();
        breaker.record_failure(now);
        breaker.record_success();
        breaker.record_failure(now);
        assert!(breaker.allow(now));
    }
}
