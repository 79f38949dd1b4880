//! The JSON log layer's record of span fields, kept cheap to update.
//!
//! Every JSON log line carries the fields of its current span, so the `fmt` layer keeps each
//! span's fields as a JSON object string. `tracing-subscriber`'s own `JsonFields` re-parses
//! that string into a map and serialises it again on every `Span::record`, which a profile of
//! the gateway showed as about 8% of its CPU (three records per request: request id, upstream,
//! status). [`AppendingJsonFields`] formats only the recorded fields and splices them into the
//! object. A field recorded twice then appears twice in the stored string; the JSON event
//! formatter parses that string into a map before writing a line, where the later value wins,
//! so log lines read exactly as before.

use std::fmt;

use tracing_subscriber::field::{RecordFields, VisitOutput as _};
use tracing_subscriber::fmt::format::{JsonVisitor, Writer};
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// Span fields as one JSON object; later records are appended, never re-parsed.
#[derive(Debug, Default, Clone, Copy)]
pub struct AppendingJsonFields;

impl<'writer> FormatFields<'writer> for AppendingJsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = JsonVisitor::new(&mut writer);
        fields.record(&mut visitor);
        visitor.finish()
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut added = String::new();
        let mut visitor = JsonVisitor::new(&mut added);
        fields.record(&mut visitor);
        visitor.finish()?;
        splice(&mut current.fields, &added);
        Ok(())
    }
}

/// Merges the JSON object `added` into the JSON object `object` (both as written by
/// `JsonVisitor`: `{}` or `{"k":v,...}`), without parsing either.
fn splice(object: &mut String, added: &str) {
    let Some(members) = added
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|members| !members.is_empty())
    else {
        return;
    };
    if object.is_empty() || object.pop() != Some('}') {
        // Nothing recorded yet (or not an object, which this formatter never writes).
        *object = added.to_owned();
        return;
    }
    if object.len() > 1 {
        object.push(',');
    }
    object.push_str(members);
    object.push('}');
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};

    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn splicing_merges_objects_without_parsing() {
        let mut object = String::from("{\"a\":1}");
        splice(&mut object, "{\"b\":\"x\"}");
        assert_eq!(object, "{\"a\":1,\"b\":\"x\"}");
        splice(&mut object, "{}");
        assert_eq!(object, "{\"a\":1,\"b\":\"x\"}");
        let mut empty = String::from("{}");
        splice(&mut empty, "{\"c\":true}");
        assert_eq!(empty, "{\"c\":true}");
        let mut blank = String::new();
        splice(&mut blank, "{\"c\":true}");
        assert_eq!(blank, "{\"c\":true}");
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_carry_recorded_span_fields_with_the_latest_value() -> anyhow::Result<()> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(AppendingJsonFields)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                route = "/api/products",
                status = tracing::field::Empty,
                upstream = tracing::field::Empty,
            );
            span.record("upstream", "http://127.0.0.1:8082");
            span.record("status", 502);
            span.record("status", 504);
            span.in_scope(|| tracing::warn!("upstream timed out"));
        });
        let bytes = buffer
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let line: Value = serde_json::from_slice(&bytes)?;
        let span = &line["span"];
        assert_eq!(span["name"], "request");
        assert_eq!(span["route"], "/api/products");
        assert_eq!(span["upstream"], "http://127.0.0.1:8082");
        assert_eq!(span["status"], 504, "the later record wins: {line}");
        assert_eq!(line["fields"]["message"], "upstream timed out");
        Ok(())
    }
}
