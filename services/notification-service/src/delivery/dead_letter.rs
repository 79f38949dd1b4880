//! Dead letters for messages that ran out of attempts: the original event goes to
//! `<topic>.dlt` with the reason, the channel and the message id in the record headers, the
//! same shape `messaging`'s consumer uses for poison records.
//!
//! Written straight to Kafka before the message is marked failed: a crash in between writes
//! the dead letter again (at least once), never not at all.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use contracts::topics::dead_letter;
use messaging::headers::to_record_headers;
use messaging::kafka::Producer;
use rdkafka::producer::FutureRecord;

use crate::store::messages::Claimed;

#[derive(Clone)]
pub struct DeadLetters {
    producer: Producer,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters").finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub fn new(producer: Producer) -> Self {
        Self { producer }
    }

    /// Publishes the dead letter of `message` and waits for the broker's acknowledgement.
    pub async fn publish(&self, message: &Claimed, reason: &str) -> anyhow::Result<()> {
        let topic = dead_letter(&message.topic);
        let mut headers: HashMap<String, String> =
            serde_json::from_value(message.trace_headers.clone()).unwrap_or_default();
        headers.extend(telemetry::context_headers(&tracing::Span::current()));
        headers.insert("dlt.reason".into(), reason.to_owned());
        headers.insert("dlt.original.topic".into(), message.topic.clone());
        headers.insert("dlt.channel".into(), message.channel.clone());
        headers.insert("dlt.template".into(), message.template.clone());
        headers.insert("dlt.message_id".into(), message.id.to_string());
        headers.insert("dlt.attempts".into(), message.attempts.to_string());
        let payload = serde_json::to_vec(&message.event).context("encoding the event")?;
        let key = message.event["subject"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&payload)
            .headers(to_record_headers(&headers));
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|error| anyhow::anyhow!("writing to {topic}: {error}"))?;
        metrics::counter!("notification_dead_letters_total", "channel" => message.channel.clone())
            .increment(1);
        Ok(())
    }
}
