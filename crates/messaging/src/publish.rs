//! Publishing stored events: what every outbox relay does once it holds a batch.

use std::collections::HashMap;

use futures::future::join_all;
use rdkafka::producer::FutureRecord;
use tracing::Instrument as _;

use crate::headers::to_record_headers;
use crate::producer::Producer;

/// One stored event on its way to the broker.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub payload: &'a [u8],
    /// The W3C trace context of the request that made the change.
    pub trace: &'a HashMap<String, String>,
}

/// Hands every record to the producer before awaiting any, so a batch is pipelined while the
/// idempotent producer keeps records of one partition in the order given; then waits for the
/// broker's acknowledgements. Each record gets a `publish <topic>` producer span, joined to
/// the stored trace, whose context travels in the record headers. Returns, per record, whether
/// it was acknowledged (the error otherwise), in the order given.
pub async fn publish_in_order(
    producer: &Producer,
    records: &[OutgoingRecord<'_>],
) -> Vec<Result<(), String>> {
    let mut deliveries = Vec::with_capacity(records.len());
    for record in records {
        let span = tracing::info_span!(
            "outbox.publish",
            otel.name = %format!("publish {}", record.topic),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.destination = %record.topic,
            messaging.kafka.message_key = %record.key,
        );
        telemetry::adopt_parent(&span, telemetry::context_from_headers(record.trace));
        // Without a tracer (export switched off) the publish span has no context of its own;
        // pass the request's on unchanged so consumers still join its trace.
        let mut context = telemetry::context_headers(&span);
        if context.is_empty() {
            context = record.trace.clone();
        }
        let kafka_record = FutureRecord::to(record.topic)
            .key(record.key)
            .payload(record.payload)
            .headers(to_record_headers(&context));
        let delivery = producer
            .send_result(kafka_record)
            .map_err(|error| error.to_string());
        deliveries.push((span, delivery));
    }
    join_all(deliveries.into_iter().map(|(span, delivery)| {
        let publish_span = span.clone();
        async move {
            let outcome = match delivery {
                Ok(delivery) => delivery.await.map_err(|error| error.to_string()),
                Err(error) => Err(error),
            };
            if let Err(error) = &outcome {
                span.record("otel.status_code", "ERROR");
                tracing::warn!(%error, "record not delivered");
            }
            outcome
        }
        .instrument(publish_span)
    }))
    .await
}
