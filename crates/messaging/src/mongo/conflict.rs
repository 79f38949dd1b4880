//! The bounded retry of an optimistic write: read the document, decide the change, apply it
//! with one update whose filter holds what was read (a version, a revision). No match means
//! another writer changed the document in between; the writer reads again and decides again on
//! what is there now, which may well be "nothing to do any more".
//!
//! A conflict usually means one other writer got there first, and an immediate re-read sees
//! its result, so the first retries run at once. Only on a document many writers hammer (a
//! hot product during a sale) does a writer lose repeatedly; then short jittered pauses spread
//! the contenders so that each round lets one through. After [`ATTEMPTS`] the caller gives up
//! with an error it can retry later (a consumer redelivers the record, an API answers 503):
//! a document that busy needs back-pressure, not a longer loop.

use std::time::Duration;

/// Reads-decides-updates tried before giving up.
pub const ATTEMPTS: u32 = 50;
/// Conflicts retried without a pause.
const IMMEDIATE: u32 = 3;
/// The pause after the immediate retries, doubled with every further conflict up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// Counts the attempts of one optimistic write and paces its retries.
///
/// ```ignore
/// let mut retry = ConflictRetry::new();
/// loop {
///     let current = read().await?;
///     if guarded_update(&current, decide(&current)).await? {
///         return Ok(());
///     }
///     if !retry.again().await {
///         anyhow::bail!("the document kept changing");
///     }
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConflictRetry {
    conflicts: u32,
}

impl ConflictRetry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Call after a guarded update matched nothing: `false` once [`ATTEMPTS`] are used up;
    /// otherwise waits as the module comment describes and returns `true` (read again).
    pub async fn again(&mut self) -> bool {
        match self.next() {
            Next::GiveUp => {
                metrics::counter!("mongo_write_conflicts_exhausted_total").increment(1);
                false
            }
            Next::Now => true,
            Next::After(pause) => {
                // Up to 100% jitter, so writers that collided do not collide again in
                // lock-step.
                let jitter = pause.mul_f64(rand::random::<f64>());
                tokio::time::sleep(pause + jitter).await;
                true
            }
        }
    }

    /// Conflicts met so far (for logs).
    pub fn conflicts(&self) -> u32 {
        self.conflicts
    }

    fn next(&mut self) -> Next {
        self.conflicts = self.conflicts.saturating_add(1);
        if self.conflicts >= ATTEMPTS {
            return Next::GiveUp;
        }
        match self.conflicts.checked_sub(IMMEDIATE + 1) {
            None => Next::Now,
            Some(paused) => Next::After(
                FIRST_PAUSE
                    .saturating_mul(2u32.saturating_pow(paused.min(16)))
                    .min(MAX_PAUSE),
            ),
        }
    }
}

/// What follows a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    GiveUp,
    Now,
    /// Retry after this pause (before jitter).
    After(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_at_once_then_pause_longer_up_to_a_cap_and_stop_after_the_attempts() {
        let mut retry = ConflictRetry::new();
        let steps: Vec<Next> = std::iter::from_fn(|| Some(retry.next()))
            .take_while(|step| *step != Next::GiveUp)
            .collect();
        // The first attempt plus one retry per step.
        assert_eq!(steps.len() as u32 + 1, ATTEMPTS);
        assert_eq!(retry.conflicts(), ATTEMPTS);
        assert_eq!(steps[..IMMEDIATE as usize], [Next::Now; IMMEDIATE as usize]);
        assert_eq!(steps[IMMEDIATE as usize], Next::After(FIRST_PAUSE));
        assert_eq!(steps[IMMEDIATE as usize + 1], Next::After(FIRST_PAUSE * 2));
        assert_eq!(steps.last(), Some(&Next::After(MAX_PAUSE)));
    }
}
