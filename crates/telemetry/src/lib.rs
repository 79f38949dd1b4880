//! Logging and tracing set-up shared by every service, and W3C trace-context propagation.
//!
//! [`init`] installs one global subscriber per process: JSON log lines (with the fields of the
//! current span, so each line carries the request's `trace_id`) and an OpenTelemetry layer
//! whose spans are batched to Zipkin under the service's name. Propagation helpers move the
//! `traceparent` between HTTP headers, Kafka record headers and outbox rows, so one trace spans
//! every hop of a checkout. The JSON log layer keeps span fields with
//! [`fields::AppendingJsonFields`], which makes `Span::record` cheap on hot request paths.
//!
//! Export path: Zipkin's own server (from Maven Central) has no OTLP receiver, and its OTLP
//! module is not published to a registry reachable here. OpenTelemetry's Zipkin exporter is
//! deprecated and, in its current release, no longer sends the service name, so spans go out
//! through [`zipkin::ZipkinV2Exporter`], a small exporter for Zipkin's stable v2 JSON API.
//! Swapping to OTLP is a change to [`span_exporter`] alone.

pub mod fields;
pub mod zipkin;

use std::collections::HashMap;
use std::sync::OnceLock;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Where spans go unless `ZIPKIN_ENDPOINT` says otherwise: the local Zipkin of `cargo xtask up`.
pub const DEFAULT_ZIPKIN_ENDPOINT: &str = "http://127.0.0.1:9411/api/v2/spans";

/// What [`init`] needs to know.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The name spans are reported under in Zipkin, e.g. `user-service`.
    pub service_name: String,
    /// Zipkin's span collector, e.g. `http://127.0.0.1:9411/api/v2/spans`; `None` disables export.
    pub zipkin_endpoint: Option<String>,
    /// Log filter used when `RUST_LOG` is unset.
    pub default_log_filter: String,
}

/// Flushes buffered spans when dropped or shut down.
#[derive(Debug, Clone)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports every finished span now; used before exit and by tests that read Zipkin.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(%error, "flushing spans failed");
        }
    }

    /// Flushes and stops the exporter.
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "shutting the span exporter down failed");
        }
    }
}

static GUARD: OnceLock<TelemetryGuard> = OnceLock::new();

/// Installs the global subscriber and span exporter. The first call in a process wins; later
/// calls (several apps started by one test binary) return the same guard.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    if let Some(guard) = GUARD.get() {
        return Ok(guard.clone());
    }
    global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = match &config.zipkin_endpoint {
        Some(endpoint) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(
                    span_exporter(endpoint)?.with_service_name(&config.service_name),
                )
                .with_resource(
                    Resource::builder()
                        .with_service_name(config.service_name.clone())
                        .build(),
                )
                .build(),
        ),
        None => None,
    };

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.default_log_filter))
        .context("invalid log filter")?;
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .fmt_fields(fields::AppendingJsonFields);
    // Spans are exported at INFO whatever the log level, so quieting the logs (RUST_LOG=warn)
    // never breaks a trace; library internals at DEBUG/TRACE stay out of Zipkin.
    // The layer's per-poll and per-span extras are off: busy/idle timing and activating the
    // OpenTelemetry context run on every enter and exit of every span (each poll of a request's
    // future), and the code location and thread attributes add four attributes to every
    // exported span. Nothing here reads them: parents come from the tracing spans, and outgoing
    // trace context is taken from a span explicitly (`context_headers`, `inject_http`).
    let otel = provider.as_ref().map(|provider| {
        global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(config.service_name.clone()))
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_location(false)
            .with_threads(false)
            .with_filter(LevelFilter::INFO)
            .boxed()
    });
    // Another subscriber may already be installed (a test harness); keep it and carry on.
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .try_init();

    let guard = TelemetryGuard { provider };
    Ok(GUARD.get_or_init(|| guard).clone())
}

/// The exporter spans leave the process through.
fn span_exporter(endpoint: &str) -> anyhow::Result<zipkin::ZipkinV2Exporter> {
    zipkin::ZipkinV2Exporter::new(endpoint)
}

/// The W3C trace-context headers (`traceparent`, `tracestate`) of `span`, for writing into an
/// outgoing request, a Kafka record or an outbox row.
pub fn context_headers(span: &tracing::Span) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
    headers
}

/// The remote parent described by trace-context headers, if any.
pub fn context_from_headers(headers: &HashMap<String, String>) -> Context {
    TraceContextPropagator::new().extract(headers)
}

/// The remote parent carried by an HTTP request's headers (read in place, no copies).
pub fn context_from_http(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HttpHeaders(headers))
}

/// Writes `span`'s trace context into an outgoing request's headers: `traceparent`, and
/// `tracestate` when the trace has one (an empty one removes a stale header). Nothing is
/// written when `span` has no valid context (tracing off). Unlike [`context_headers`] it
/// builds no intermediate map; the gateway does this once per proxied request.
pub fn inject_http(span: &tracing::Span, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HttpHeadersMut(headers));
}

/// An HTTP header map read as a trace-context carrier.
struct HttpHeaders<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// An HTTP header map written as a trace-context carrier.
struct HttpHeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HttpHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(name) = http::HeaderName::from_bytes(key.as_bytes()) else {
            return;
        };
        if value.is_empty() {
            self.0.remove(name);
        } else if let Ok(value) = http::HeaderValue::from_str(&value) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of `parent` when `parent` carries a valid remote span.
pub fn adopt_parent(span: &tracing::Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        // Failure means the span is disabled (filtered out); there is nothing to attach to.
        let _ = span.set_parent(parent);
    }
}

/// The hex trace id of `span` (all zeros when tracing is off).
pub fn trace_id(span: &tracing::Span) -> String {
    span.context().span().span_context().trace_id().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_header_becomes_the_remote_parent() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let parent = context_from_http(&headers);
        let span = parent.span();
        let remote = span.span_context();
        assert!(remote.is_valid());
        assert!(remote.is_remote());
        assert_eq!(
            remote.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn a_span_without_context_writes_no_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("tracestate", http::HeaderValue::from_static("a=b"));
        inject_http(&tracing::Span::none(), &mut headers);
        assert!(headers.get("traceparent").is_none());
        assert_eq!(headers["tracestate"], "a=b");
    }

    #[test]
    fn the_carrier_writes_and_removes_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("tracestate", http::HeaderValue::from_static("a=b"));
        let mut carrier = HttpHeadersMut(&mut headers);
        carrier.set(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        );
        carrier.set("tracestate", String::new());
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert!(headers.get("tracestate").is_none());
    }

    #[test]
    fn missing_or_garbage_headers_give_no_parent() {
        let mut headers = http::HeaderMap::new();
        assert!(!context_from_http(&headers).span().span_context().is_valid());
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static("not-a-traceparent"),
        );
        assert!(!context_from_http(&headers).span().span_context().is_valid());
    }
}
