//! Trace context in Kafka record headers, so a consumer's span continues the producer's trace.

use std::collections::HashMap;

use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Record headers carrying `values` (e.g. `traceparent`).
pub fn to_record_headers(values: &HashMap<String, String>) -> OwnedHeaders {
    values
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        })
}

/// The UTF-8 headers of a received record (binary ones are skipped).
pub fn from_record_headers<H: Headers>(headers: &H) -> HashMap<String, String> {
    headers
        .iter()
        .filter_map(|header| {
            let value = std::str::from_utf8(header.value?).ok()?;
            Some((header.key.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let values = HashMap::from([(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )]);
        assert_eq!(from_record_headers(&to_record_headers(&values)), values);
    }
}
