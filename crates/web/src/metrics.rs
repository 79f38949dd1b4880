//! Prometheus metrics: one recorder per process, request rate, errors and latency per route,
//! and the `GET /metrics` endpoint. Other crates record their own series (outbox backlog,
//! consumer lag) through the `metrics` facade, which lands in the same recorder.

use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

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
            Some(handle)
        })
        .as_ref()
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
