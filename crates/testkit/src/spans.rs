//! Logs and spans for a test binary: the subscriber and exporter installed once per process
//! (as in production, so trace context really propagates), and a flush for tests that read
//! their spans back from Zipkin.

use std::sync::OnceLock;

use telemetry::{TelemetryConfig, TelemetryGuard};

static GUARD: OnceLock<TelemetryGuard> = OnceLock::new();

/// Installs telemetry for `service_name` once per test process, exporting spans to the
/// stack's Zipkin when `export` is set; later calls return the first guard. Panics if the
/// subscriber cannot be installed: no test of the binary could trust its logs then.
pub fn install(service_name: &str, export: bool) -> &'static TelemetryGuard {
    GUARD.get_or_init(|| {
        telemetry::init(&TelemetryConfig {
            service_name: service_name.into(),
            zipkin_endpoint: export.then(|| format!("{}/api/v2/spans", crate::stack::zipkin_url())),
            default_log_filter: "warn".into(),
        })
        .unwrap_or_else(|error| panic!("telemetry set-up failed: {error:#}"))
    })
}

/// Exports the spans ended so far (the exporter blocks, so off the async workers). Nothing
/// happens before [`install`].
pub async fn flush() {
    if let Some(guard) = GUARD.get().cloned() {
        let _ = tokio::task::spawn_blocking(move || guard.flush()).await;
    }
}
