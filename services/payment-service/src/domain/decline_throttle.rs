//! Slowing down card testing: an account whose payments were declined `max` times within
//! `window` may not try another card until the oldest of those declines leaves the window
//! (429 with `Retry-After`).
//!
//! Card testers run stolen numbers through a shop's payment form to learn which are live; what
//! gives them away is many declines from one account in a short time (OWASP API6). Declines
//! are counted per payment id, so a repeated request with the same `Idempotency-Key` (the same
//! payment answered again) does not count twice. Per client IP the gateway's buckets apply,
//! and registering new accounts is limited per IP by its strict bucket, so cycling accounts
//! does not escape the limit for long.
//!
//! The counts live in the process: with N replicas an account gets at most N times `max`
//! declines per window, which still bounds the rate. A restart forgets them; both are accepted
//! because the limit slows testers down rather than being a ledger. The table holds only
//! accounts with a decline inside the window: it is pruned as it grows.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Declines per account and window before the account must wait (`PAYMENT_MAX_DECLINES`).
pub const DEFAULT_MAX_DECLINES: u32 = 5;
/// The window (`PAYMENT_DECLINE_WINDOW_SECS`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Above this many accounts in the table, every insert first drops the accounts whose
/// declines all left the window.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct DeclineThrottle {
    max: u32,
    window: Duration,
    declines: Mutex<HashMap<Uuid, VecDeque<(Instant, String)>>>,
}

impl DeclineThrottle {
    /// `max` = 0 switches the throttle off.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            declines: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when `user` must wait before trying another payment.
    pub fn wait(&self, user: Uuid, now: Instant) -> Option<Duration> {
        if self.max == 0 {
            return None;
        }
        let mut table = self
            .declines
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let recent = table.get_mut(&user)?;
        forget_old(recent, now, self.window);
        let count = u32::try_from(recent.len()).unwrap_or(u32::MAX);
        if count < self.max {
            return None;
        }
        // The account may try again when enough declines have left the window that one more
        // stays within `max`: the (count - max + 1)-th oldest decline decides.
        let index = usize::try_from(count - self.max).unwrap_or(0);
        let (at, _) = recent.get(index)?;
        Some((*at + self.window).saturating_duration_since(now))
    }

    /// Records that `payment` of `user` was declined (once per payment).
    pub fn declined(&self, user: Uuid, payment: &str, now: Instant) {
        if self.max == 0 {
            return;
        }
        let mut table = self
            .declines
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if table.len() > PRUNE_ABOVE {
            let window = self.window;
            table.retain(|_, recent| {
                forget_old(recent, now, window);
                !recent.is_empty()
            });
        }
        let recent = table.entry(user).or_default();
        forget_old(recent, now, self.window);
        if !recent.iter().any(|(_, seen)| seen == payment) {
            recent.push_back((now, payment.to_owned()));
        }
    }
}

fn forget_old(recent: &mut VecDeque<(Instant, String)>, now: Instant, window: Duration) {
    while recent
        .front()
        .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= window)
    {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(600);

    #[test]
    fn an_account_waits_after_max_declines_until_the_oldest_leaves_the_window() {
        let throttle = DeclineThrottle::new(3, WINDOW);
        let user = Uuid::new_v4();
        let start = Instant::now();
        for second in 0..3 {
            let at = start + Duration::from_secs(second);
            assert_eq!(throttle.wait(user, at), None);
            throttle.declined(user, &Uuid::new_v4().to_string(), at);
        }
        let now = start + Duration::from_secs(10);
        assert_eq!(throttle.wait(user, now), Some(Duration::from_secs(590)));
        // Once the first decline is older than the window, one more try is allowed.
        assert_eq!(throttle.wait(user, start + WINDOW), None);
    }

    #[test]
    fn the_same_payment_answered_twice_counts_once() {
        let throttle = DeclineThrottle::new(2, WINDOW);
        let user = Uuid::new_v4();
        let payment = Uuid::new_v4().to_string();
        let now = Instant::now();
        for _ in 0..5 {
            throttle.declined(user, &payment, now);
        }
        assert_eq!(throttle.wait(user, now), None);
    }

    #[test]
    fn accounts_are_counted_apart_and_zero_switches_it_off() {
        let throttle = DeclineThrottle::new(1, WINDOW);
        let (tester, other) = (Uuid::new_v4(), Uuid::new_v4());
        let now = Instant::now();
        throttle.declined(tester, "p1", now);
        assert!(throttle.wait(tester, now).is_some());
        assert_eq!(throttle.wait(other, now), None);

        let off = DeclineThrottle::new(0, WINDOW);
        for _ in 0..10 {
            off.declined(tester, &Uuid::new_v4().to_string(), now);
        }
        assert_eq!(off.wait(tester, now), None);
    }

    #[test]
    fn accounts_whose_declines_are_old_are_pruned() {
        let throttle = DeclineThrottle::new(1, WINDOW);
        let start = Instant::now();
        for _ in 0..=PRUNE_ABOVE {
            throttle.declined(Uuid::new_v4(), "p", start);
        }
        throttle.declined(Uuid::new_v4(), "p", start + WINDOW);
        let size = throttle
            .declines
            .lock()
            .map(|table| table.len())
            .unwrap_or(0);
        assert_eq!(size, 1);
    }
}
