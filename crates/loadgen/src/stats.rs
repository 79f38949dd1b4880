//! Latency recording: an HDR histogram per worker, merged at the end, summarised as
//! percentiles. Averages hide the tail that users feel, so no mean is reported.

use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histogram resolves (one hour); slower samples are clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;

/// Latencies in microseconds with three significant digits (0.1% relative error).
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Latencies {
    pub fn new() -> Result<Self> {
        let histogram =
            Histogram::new_with_bounds(1, MAX_MICROS, 3).context("creating a latency histogram")?;
        Ok(Self { histogram })
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        // A sub-microsecond sample is recorded as 1 µs: the histogram's lowest value.
        self.histogram.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Latencies) -> Result<()> {
        self.histogram
            .add(&other.histogram)
            .context("merging latency histograms")
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        let at = |q: f64| ms(self.histogram.value_at_quantile(q));
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.histogram.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(self.histogram.max()),
        }
    }
}

/// Percentiles of one latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Formats milliseconds for humans: microseconds below 1 ms, seconds above 10 s.
pub fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1_000.0)
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_distribution_not_the_mean() -> Result<()> {
        let mut latencies = Latencies::new()?;
        // 990 fast requests and 10 very slow ones: the mean (about 10.9 ms) describes none of
        // them; p50 shows the fast ones and p99.9/max the slow tail.
        for _ in 0..990 {
            latencies.record(Duration::from_millis(1));
        }
        for _ in 0..10 {
            latencies.record(Duration::from_secs(1));
        }
        let s = latencies.summary();
        assert_eq!(s.count, 1_000);
        assert!((s.p50_ms - 1.0).abs() < 0.01, "p50 {}", s.p50_ms);
        assert!((s.p99_ms - 1.0).abs() < 0.01, "p99 {}", s.p99_ms);
        assert!((s.p999_ms - 1_000.0).abs() < 1.0, "p99.9 {}", s.p999_ms);
        assert!((s.max_ms - 1_000.0).abs() < 1.0, "max {}", s.max_ms);
        Ok(())
    }

    #[test]
    fn merging_adds_the_samples_of_every_worker() -> Result<()> {
        let mut a = Latencies::new()?;
        let mut b = Latencies::new()?;
        for i in 1..=100 {
            a.record(Duration::from_micros(i * 10));
            b.record(Duration::from_micros(i * 1_000));
        }
        a.merge(&b)?;
        let s = a.summary();
        assert_eq!(s.count, 200);
        assert!((s.max_ms - 100.0).abs() < 0.1);
        assert!(s.p50_ms <= 1.0, "p50 {}", s.p50_ms);
        Ok(())
    }

    #[test]
    fn extreme_samples_are_clamped_not_lost() -> Result<()> {
        let mut latencies = Latencies::new()?;
        latencies.record(Duration::ZERO);
        latencies.record(Duration::from_secs(10 * 3_600));
        let s = latencies.summary();
        assert_eq!(s.count, 2);
        assert!(s.max_ms >= 3_600_000.0 * 0.999);
        Ok(())
    }

    #[test]
    fn an_empty_histogram_summarises_to_zeroes() -> Result<()> {
        assert_eq!(Latencies::new()?.summary(), LatencySummary::default());
        Ok(())
    }

    #[test]
    fn formats_milliseconds_readably() {
        assert_eq!(format_ms(0.25), "250 µs");
        assert_eq!(format_ms(2.345), "2.35 ms");
        assert_eq!(format_ms(123.4), "123 ms");
        assert_eq!(format_ms(12_345.0), "12.3 s");
    }
}
