//! Keyed rate limits (client IP, user id) with the generic cell rate algorithm: one number per
//! key, the "theoretical arrival time" of the next request, so a check is a hash lookup and an
//! add under a short lock. Keys live in sharded maps so concurrent requests for different
//! clients rarely contend, and a periodic sweep drops keys whose bucket is full again, which
//! bounds memory by the number of clients active in the last few seconds.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::Quota;

const SHARDS: usize = 32;

/// One limit, per key.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    /// Nanoseconds one request "costs" (1 / rate).
    emission: u64,
    /// How far ahead of now the arrival time may run: (burst - 1) requests' worth.
    tolerance: u64,
    shards: Box<[Mutex<HashMap<K, u64>>]>,
    hasher: RandomState,
    epoch: Instant,
}

impl<K: Hash + Eq + Copy> KeyedLimiter<K> {
    /// `None` when the quota is switched off.
    pub fn new(quota: Quota) -> Option<Self> {
        if !quota.is_enabled() {
            return None;
        }
        let emission = (1e9 / quota.per_second).round().max(1.0) as u64;
        Some(Self {
            emission,
            tolerance: emission.saturating_mul(u64::from(quota.burst - 1)),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        })
    }

    /// Takes one request from `key`'s bucket, or says how long until one is available.
    pub fn check(&self, key: K) -> Result<(), Duration> {
        self.check_at(key, self.now())
    }

    fn check_at(&self, key: K, now: u64) -> Result<(), Duration> {
        let mut shard = self.shard(&key);
        let arrival = shard.get(&key).copied().unwrap_or(now).max(now);
        let ahead = arrival - now;
        if ahead > self.tolerance {
            return Err(Duration::from_nanos(ahead - self.tolerance));
        }
        shard.insert(key, arrival + self.emission);
        Ok(())
    }

    /// Forgets keys whose bucket has refilled completely: they behave exactly like new keys.
    pub fn sweep(&self) {
        self.sweep_at(self.now());
    }

    fn sweep_at(&self, now: u64) {
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, arrival| *arrival > now);
        }
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &K) -> std::sync::MutexGuard<'_, HashMap<K, u64>> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        // A panic while holding the lock cannot leave a half-written u64 behind.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn limiter(per_second: f64, burst: u32) -> KeyedLimiter<u32> {
        KeyedLimiter::new(Quota { per_second, burst })
            .unwrap_or_else(|| panic!("quota should be enabled"))
    }

    #[test]
    fn a_burst_passes_then_the_rate_applies_with_the_wait_named() {
        let limit = limiter(1.0, 3);
        for _ in 0..3 {
            assert_eq!(limit.check_at(7, 0), Ok(()));
        }
        assert_eq!(limit.check_at(7, 0), Err(Duration::from_secs(1)));
        assert_eq!(
            limit.check_at(7, SECOND / 2),
            Err(Duration::from_millis(500))
        );
        assert_eq!(limit.check_at(7, SECOND), Ok(()));
        assert!(limit.check_at(7, SECOND).is_err());
    }

    #[test]
    fn keys_have_separate_buckets() {
        let limit = limiter(1.0, 1);
        assert_eq!(limit.check_at(1, 0), Ok(()));
        assert!(limit.check_at(1, 0).is_err());
        assert_eq!(limit.check_at(2, 0), Ok(()));
    }

    #[test]
    fn an_idle_key_refills_to_the_full_burst_not_beyond() {
        let limit = limiter(10.0, 2);
        assert_eq!(limit.check_at(1, 0), Ok(()));
        let later = 100 * SECOND;
        assert_eq!(limit.check_at(1, later), Ok(()));
        assert_eq!(limit.check_at(1, later), Ok(()));
        assert!(limit.check_at(1, later).is_err());
    }

    #[test]
    fn sweeping_forgets_only_refilled_keys() {
        let limit = limiter(1.0, 5);
        assert_eq!(limit.check_at(1, 0), Ok(()));
        assert_eq!(limit.check_at(2, 10 * SECOND), Ok(()));
        limit.sweep_at(5 * SECOND);
        assert_eq!(limit.len(), 1, "key 1 has refilled, key 2 has not");
        limit.sweep_at(11 * SECOND);
        assert!(limit.is_empty());
    }

    #[test]
    fn a_zero_rate_switches_the_limit_off() {
        assert!(
            KeyedLimiter::<u32>::new(Quota {
                per_second: 0.0,
                burst: 10
            })
            .is_none()
        );
    }
}
