//! An OpenTelemetry span exporter for Zipkin's v2 JSON API (`POST /api/v2/spans`).
//!
//! It maps each span to Zipkin's model: ids as hex, times in microseconds, the service name in
//! `localEndpoint`, attributes and status as tags, events as annotations. It runs on the SDK's
//! batch thread, so it uses a blocking HTTP client with a timeout; a failed export is reported to
//! the SDK (which drops that batch) and never blocks the service.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Map, Value, json};

const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends spans to a Zipkin collector endpoint such as `http://127.0.0.1:9411/api/v2/spans`.
#[derive(Debug)]
pub struct ZipkinV2Exporter {
    endpoint: String,
    service_name: String,
    client: reqwest::blocking::Client,
}

impl ZipkinV2Exporter {
    /// Builds the exporter. The blocking client owns a runtime of its own that must not be made
    /// on an async worker, so it is built on a plain thread.
    pub fn new(endpoint: &str) -> anyhow::Result<Self> {
        let client = std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
                .context("building the Zipkin HTTP client")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("building the Zipkin HTTP client panicked"))??;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            service_name: "unknown-service".to_owned(),
            client,
        })
    }

    /// The name spans are filed under in Zipkin.
    pub fn with_service_name(mut self, name: &str) -> Self {
        self.service_name = name.to_owned();
        self
    }

    fn post(&self, spans: Vec<Value>) -> OTelSdkResult {
        let response = self
            .client
            .post(&self.endpoint)
            .json(&spans)
            .send()
            .map_err(|error| OTelSdkError::InternalFailure(format!("Zipkin export: {error}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "Zipkin answered {} to an export",
                response.status()
            )))
        }
    }
}

impl SpanExporter for ZipkinV2Exporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let spans = batch
            .iter()
            .map(|span| to_zipkin(span, &self.service_name))
            .collect();
        self.post(spans)
    }
}

fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One span in Zipkin's v2 model.
pub fn to_zipkin(span: &SpanData, service_name: &str) -> Value {
    let start = micros(span.start_time);
    let duration = micros(span.end_time).saturating_sub(start).max(1);
    let mut tags = Map::new();
    for attribute in &span.attributes {
        tags.insert(
            attribute.key.to_string(),
            Value::String(attribute.value.to_string()),
        );
    }
    match &span.status {
        Status::Error { description } => {
            tags.insert("error".into(), Value::String(description.to_string()));
        }
        Status::Ok | Status::Unset => {}
    }
    let annotations: Vec<Value> = span
        .events
        .iter()
        .map(|event| json!({"timestamp": micros(event.timestamp), "value": event.name}))
        .collect();
    let mut zipkin = json!({
        "traceId": span.span_context.trace_id().to_string(),
        "id": span.span_context.span_id().to_string(),
        "name": span.name.to_lowercase(),
        "timestamp": start,
        "duration": duration,
        "localEndpoint": {"serviceName": service_name},
        "tags": tags,
    });
    if span.parent_span_id != SpanId::INVALID {
        zipkin["parentId"] = Value::String(span.parent_span_id.to_string());
    }
    let kind = match span.span_kind {
        SpanKind::Server => Some("SERVER"),
        SpanKind::Client => Some("CLIENT"),
        SpanKind::Producer => Some("PRODUCER"),
        SpanKind::Consumer => Some("CONSUMER"),
        SpanKind::Internal => None,
    };
    if let Some(kind) = kind {
        zipkin["kind"] = Value::String(kind.into());
    }
    if !annotations.is_empty() {
        zipkin["annotations"] = Value::Array(annotations);
    }
    zipkin
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::trace::{SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    fn span(kind: SpanKind, parent: SpanId, status: Status) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_000);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap_or(TraceId::INVALID),
                SpanId::from_hex("00f067aa0ba902b7").unwrap_or(SpanId::INVALID),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: parent,
            parent_span_is_remote: false,
            span_kind: kind,
            name: "POST /api/users/register".into(),
            start_time: start,
            end_time: start + Duration::from_micros(1500),
            attributes: vec![KeyValue::new("http.status_code", 201)],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    #[test]
    fn a_server_span_maps_to_zipkin_v2_with_the_service_name() {
        let parent = SpanId::from_hex("1111111111111111").unwrap_or(SpanId::INVALID);
        let zipkin = to_zipkin(
            &span(SpanKind::Server, parent, Status::Unset),
            "user-service",
        );
        assert_eq!(zipkin["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(zipkin["id"], "00f067aa0ba902b7");
        assert_eq!(zipkin["parentId"], "1111111111111111");
        assert_eq!(zipkin["kind"], "SERVER");
        assert_eq!(zipkin["name"], "post /api/users/register");
        assert_eq!(zipkin["timestamp"], 1_700_000_000_000_000u64);
        assert_eq!(zipkin["duration"], 1500);
        assert_eq!(zipkin["localEndpoint"]["serviceName"], "user-service");
        assert_eq!(zipkin["tags"]["http.status_code"], "201");
    }

    #[test]
    fn root_internal_error_spans_have_no_parent_or_kind_and_an_error_tag() {
        let zipkin = to_zipkin(
            &span(SpanKind::Internal, SpanId::INVALID, Status::error("boom")),
            "user-service",
        );
        assert!(zipkin.get("parentId").is_none());
        assert!(zipkin.get("kind").is_none());
        assert_eq!(zipkin["tags"]["error"], "boom");
    }
}
