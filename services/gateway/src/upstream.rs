//! Upstream pools: the instances of one service, which of them are in rotation, and the
//! round-robin choice among those. Health is kept in atomics so the request path never locks;
//! the active checker ([`crate::health`]) and the proxy's connect failures (passive ejection)
//! are the only writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use http::uri::{Authority, Scheme};

use crate::config::instance_uri;

/// One instance of a service.
#[derive(Debug)]
pub struct Instance {
    /// The base URL as configured, for logs, metrics and `/health/ready`.
    pub url: Arc<str>,
    pub scheme: Scheme,
    pub authority: Authority,
    healthy: AtomicBool,
    /// Consecutive failed checks while healthy, or consecutive passed checks while not.
    streak: AtomicU32,
}

/// What one health observation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    WentDown,
    CameBack,
}

impl Instance {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let uri = instance_uri(url)?;
        let parts = uri.into_parts();
        Ok(Self {
            url: url.trim_end_matches('/').into(),
            scheme: parts.scheme.unwrap_or(Scheme::HTTP),
            authority: parts
                .authority
                .ok_or_else(|| anyhow::anyhow!("{url:?} has no host"))?,
            // Optimistic start: the first check runs at once, and a connect failure ejects the
            // instance immediately, so a dead instance costs at most one retried request.
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records one active check. `unhealthy_after` failures in a row take the instance out,
    /// `healthy_after` passes in a row bring it back.
    pub fn observe(&self, passed: bool, unhealthy_after: u32, healthy_after: u32) -> Transition {
        let healthy = self.is_healthy();
        if passed == healthy {
            self.streak.store(0, Ordering::Relaxed);
            return Transition::Unchanged;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if healthy {
            unhealthy_after
        } else {
            healthy_after
        };
        if streak < needed {
            return Transition::Unchanged;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.healthy.store(passed, Ordering::Relaxed);
        if passed {
            Transition::CameBack
        } else {
            Transition::WentDown
        }
    }

    /// A connection to the instance was refused or timed out: take it out now rather than
    /// after the next checks; the checker brings it back once it answers.
    pub fn eject(&self) -> bool {
        self.streak.store(0, Ordering::Relaxed);
        self.healthy.swap(false, Ordering::Relaxed)
    }
}

/// The instances of one service.
#[derive(Debug)]
pub struct Pool {
    pub service: Arc<str>,
    pub instances: Vec<Instance>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(service: &str, urls: &[String]) -> anyhow::Result<Self> {
        Ok(Self {
            service: service.into(),
            instances: urls
                .iter()
                .map(|url| Instance::new(url))
                .collect::<anyhow::Result<_>>()?,
            next: AtomicUsize::new(0),
        })
    }

    /// The next healthy instance in round-robin order, skipping `exclude` (the instance a
    /// retried request just failed on).
    pub fn pick(&self, exclude: Option<usize>) -> Option<usize> {
        let count = self.instances.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| start.wrapping_add(offset) % count)
            .find(|&index| Some(index) != exclude && self.instances[index].is_healthy())
    }

    pub fn healthy_count(&self) -> usize {
        self.instances.iter().filter(|i| i.is_healthy()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u16) -> anyhow::Result<Pool> {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", 9000 + i))
            .collect();
        Pool::new("svc", &urls)
    }

    #[test]
    fn round_robin_visits_every_healthy_instance_in_turn() -> anyhow::Result<()> {
        let pool = pool(3)?;
        let picks: Vec<_> = (0..6).filter_map(|_| pool.pick(None)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        pool.instances[1].eject();
        let picks: Vec<_> = (0..4).filter_map(|_| pool.pick(None)).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        Ok(())
    }

    #[test]
    fn a_retry_goes_elsewhere_or_nowhere() -> anyhow::Result<()> {
        let pool = pool(2)?;
        for _ in 0..4 {
            assert_eq!(pool.pick(Some(0)), Some(1));
        }
        let single = self::pool(1)?;
        assert_eq!(single.pick(Some(0)), None);
        single.instances[0].eject();
        assert_eq!(single.pick(None), None);
        Ok(())
    }

    #[test]
    fn health_needs_a_streak_to_change() -> anyhow::Result<()> {
        let instance = Instance::new("http://127.0.0.1:9000")?;
        assert_eq!(instance.observe(false, 2, 2), Transition::Unchanged);
        assert_eq!(instance.observe(true, 2, 2), Transition::Unchanged);
        assert_eq!(instance.observe(false, 2, 2), Transition::Unchanged);
        assert_eq!(instance.observe(false, 2, 2), Transition::WentDown);
        assert!(!instance.is_healthy());
        assert_eq!(instance.observe(true, 2, 2), Transition::Unchanged);
        assert_eq!(instance.observe(true, 2, 2), Transition::CameBack);
        assert!(instance.is_healthy());
        Ok(())
    }
}
