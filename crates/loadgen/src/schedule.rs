//! Open-loop pacing: when each request of a fixed-rate run is due.
//!
//! A closed-loop client sends the next request only after the previous answer, so a server
//! stall also stalls the client and the requests it would have sent are never measured
//! ("coordinated omission"). In an open-loop run every request has a due time fixed in
//! advance, and its latency is measured from that due time: a stall shows up as the queueing
//! delay of every request that should have gone out meanwhile.
//!
//! With HTTP/1.1 one connection carries one request at a time, so a total rate `R` over `N`
//! connections gives each connection every `N / R` seconds, staggered by `1 / R` so the
//! connections together send evenly spaced requests rather than bursts of `N`.

use std::time::Duration;

/// The due times of one connection's requests, relative to the start of the run, in whole
/// nanoseconds so that due times and counts agree exactly (no floating-point drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// (offset of the first request, interval between requests); None: nothing is ever due.
    pacing: Option<(u64, u64)>,
}

impl Schedule {
    /// Connection `index` (0-based) of `connections` sharing `rate` requests per second.
    /// A rate or connection count of zero yields a schedule with nothing due.
    pub fn for_connection(rate: f64, connections: usize, index: usize) -> Self {
        if !(rate.is_finite() && rate > 0.0) || connections == 0 {
            return Self { pacing: None };
        }
        let per_request = 1e9 / rate;
        let interval = (connections as f64 * per_request).round().max(1.0) as u64;
        let offset = (index as f64 * per_request).round() as u64;
        Self {
            pacing: Some((offset, interval)),
        }
    }

    /// When request `n` (0-based) is due, or None when it never is (empty schedule).
    pub fn due(&self, n: u64) -> Option<Duration> {
        let (offset, interval) = self.pacing?;
        let at = n.checked_mul(interval)?.checked_add(offset)?;
        Some(Duration::from_nanos(at))
    }

    /// How many requests are due strictly before `end`.
    pub fn count_before(&self, end: Duration) -> u64 {
        let Some((offset, interval)) = self.pacing else {
            return 0;
        };
        let end = u64::try_from(end.as_nanos()).unwrap_or(u64::MAX);
        if offset >= end {
            return 0;
        }
        // Requests n = 0, 1, ... with offset + n * interval < end: ceil((end - offset) / interval).
        (end - offset).div_ceil(interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_together_send_evenly_spaced_requests() {
        let (rate, connections) = (1_000.0, 4);
        let mut due: Vec<Duration> = (0..connections)
            .map(|k| Schedule::for_connection(rate, connections, k))
            .flat_map(|s| (0..25).filter_map(move |n| s.due(n)))
            .collect();
        due.sort();
        assert_eq!(due.len(), 100);
        for pair in due.windows(2) {
            let gap = pair[1].as_secs_f64() - pair[0].as_secs_f64();
            assert!((gap - 0.001).abs() < 1e-8, "gap {gap}");
        }
        assert_eq!(due[0], Duration::ZERO);
    }

    #[test]
    fn a_run_sends_rate_times_duration_requests() {
        let (rate, connections, end) = (250.0, 8, Duration::from_secs(3));
        let total: u64 = (0..connections)
            .map(|k| Schedule::for_connection(rate, connections, k).count_before(end))
            .sum();
        assert_eq!(total, 750);
    }

    #[test]
    fn count_before_matches_the_due_times() {
        let s = Schedule::for_connection(7.0, 3, 2);
        let end = Duration::from_millis(2_500);
        let counted = s.count_before(end);
        let listed = (0..100)
            .filter_map(|n| s.due(n))
            .filter(|d| *d < end)
            .count() as u64;
        assert_eq!(counted, listed);
    }

    #[test]
    fn slower_rates_than_connections_still_spread_the_load() {
        // 2 requests per second over 4 connections: each connection every 2 s.
        let s = Schedule::for_connection(2.0, 4, 3);
        assert_eq!(s.due(0), Some(Duration::from_millis(1_500)));
        assert_eq!(s.due(1), Some(Duration::from_millis(3_500)));
    }

    #[test]
    fn a_zero_rate_schedules_nothing() {
        let s = Schedule::for_connection(0.0, 4, 0);
        assert_eq!(s.due(0), None);
        assert_eq!(s.count_before(Duration::from_secs(60)), 0);
        assert_eq!(
            Schedule::for_connection(10.0, 0, 0).count_before(Duration::from_secs(1)),
            0
        );
    }
}
