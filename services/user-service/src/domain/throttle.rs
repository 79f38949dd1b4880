//! Login throttling policy: after `max_failures` consecutive failures an e-mail is locked, for
//! `base` at first and twice as long after every further failure, never more than an hour.

use std::time::Duration;

const MAX_LOCK: Duration = Duration::from_secs(3600);

/// How long to lock after the `failures`-th consecutive failure (`None`: not yet).
pub fn lock_after(failures: i32, max_failures: i32, base: Duration) -> Option<Duration> {
    if failures < max_failures {
        return None;
    }
    let doublings = u32::try_from(failures - max_failures).unwrap_or(0).min(16);
    Some(
        base.saturating_mul(2u32.saturating_pow(doublings))
            .min(MAX_LOCK),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_starts_at_the_limit_and_doubles_up_to_an_hour() {
        let base = Duration::from_secs(30);
        assert_eq!(lock_after(4, 5, base), None);
        assert_eq!(lock_after(5, 5, base), Some(Duration::from_secs(30)));
        assert_eq!(lock_after(6, 5, base), Some(Duration::from_secs(60)));
        assert_eq!(lock_after(7, 5, base), Some(Duration::from_secs(120)));
        assert_eq!(lock_after(40, 5, base), Some(MAX_LOCK));
    }
}
