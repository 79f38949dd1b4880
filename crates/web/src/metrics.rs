//! Prometheus metrics: one recorder per process, request rate, errors and latency per route,
//! and the `GET /metrics` endpoint. Other crates record their own series (outbox backlog,
//! consumer lag) through the `metrics` facade, which lands in the same recorder.
//!
//! The recorder keeps every histogram sample it is given until an "upkeep" folds them into
//! the buckets. A scrape of `/metrics` does one, but a service nobody scrapes (local runs, the
//! bench, a cluster without Prometheus) grew by 8 bytes per sample without end: about 15 bytes
//! per request, product-service from 50 to 72 MB over 60 s of reads. So the process runs one
//! itself every [`UPKEEP_INTERVAL`], as the exporter's own `install` would (we build the
//! recorder ourselves to serve `/metrics` from each service's router).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often the recorder's histogram samples are folded into their buckets without a scrape
/// (the exporter's own default). At 25,000 requests/s that holds at most about 1 MB of samples.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Upkeeps run by the background thread since the process started.
static UPKEEPS: AtomicU64 = AtomicU64::new(0);

/// Installs the process-wide recorder on first use and returns its handle (`None` if another
/// recorder was installed first, in which case metrics go there).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            // 15 and 20 ms: targets sit there (the risk check's p99 under 20 ms), and a
            // quantile read from buckets is only as exact as the bucket bounds around it.
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            start_upkeep(handle.clone());
            Some(handle)
        })
        .as_ref()
}

/// Runs the recorder's upkeep every [`UPKEEP_INTERVAL`] on a thread of its own for the life of
/// the process, like the recorder it serves (a task would end with the runtime that spawned
/// it, and the recorder is process-wide).
fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                #[expect(
                    clippy::disallowed_methods,
                    reason = "its own thread, not a runtime's: sleeping is all it does between upkeeps"
                )]
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
                UPKEEPS.fetch_add(1, Ordering::Relaxed);
            }
        });
    if let Err(error) = spawned {
        // Metrics still work; histogram samples then wait for a scrape of `/metrics`.
        tracing::warn!(%error, "the metrics upkeep thread did not start");
    }
}

/// Upkeeps the background thread has run.
#[cfg(test)]
fn upkeeps() -> u64 {
    UPKEEPS.load(Ordering::Relaxed)
}

/// Records one finished HTTP request.
pub fn record_request(method: &str, route: &str, status: StatusCode, seconds: f64) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!(
        "http_request_duration_seconds",
        &[("method", method.to_owned()), ("route", route.to_owned())]
    )
    .record(seconds);
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render() -> impl IntoResponse {
    match handle() {
        Some(handle) => {
            handle.run_upkeep();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            String::from("# metrics recorder not installed\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Without a scrape, only the upkeep thread drains the samples; this fails if it is not
    /// running (the recorder then grows with every request).
    #[tokio::test]
    async fn the_recorder_is_kept_up_without_a_scrape() {
        assert!(handle().is_some(), "the recorder was not installed");
        let before = upkeeps();
        let deadline = Instant::now() + UPKEEP_INTERVAL * 3;
        while upkeeps() == before {
            assert!(
                Instant::now() < deadline,
                "no upkeep ran within {:?}",
                UPKEEP_INTERVAL * 3
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
