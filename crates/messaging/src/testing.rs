//! Test support (feature `test-support`): read back what is on a topic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use contracts::CloudEvent;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use uuid::Uuid;

use crate::headers::from_record_headers;

/// A record read back from the broker.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    /// The raw payload (dead letters need not be CloudEvents).
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

impl Record {
    /// The payload as a CloudEvent.
    pub fn event(&self) -> anyhow::Result<CloudEvent> {
        CloudEvent::from_slice(&self.payload).context("record is not a CloudEvent")
    }
}

/// Every record currently in `topic`, from the beginning up to each partition's high watermark,
/// so "exactly one" assertions see duplicates too. An absent topic reads as empty.
pub async fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic_blocking(&brokers, &topic)).await?
}

fn read_topic_blocking(brokers: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        if high > low {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
            remaining.insert(partition, high);
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return Ok(records);
    }
    consumer.assign(&assignment)?;
    let started = Instant::now();
    while !remaining.is_empty() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "timed out reading {topic}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        if remaining
            .get(&message.partition())
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            remaining.remove(&message.partition());
        }
        records.push(Record {
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: message
                .headers()
                .map(from_record_headers)
                .unwrap_or_default(),
        });
    }
    Ok(records)
}

/// A record whose payload is a CloudEvent, as services' tests look at their events.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub key: String,
    pub event: CloudEvent,
    pub headers: HashMap<String, String>,
}

/// Every event currently in `topic` (duplicates included); fails on a non-CloudEvent record.
pub async fn read_events(brokers: &str, topic: &str) -> anyhow::Result<Vec<EventRecord>> {
    read_topic(brokers, topic)
        .await?
        .into_iter()
        .map(|record| {
            Ok(EventRecord {
                key: record.key.clone().unwrap_or_default(),
                event: record.event()?,
                headers: record.headers,
            })
        })
        .collect()
}

/// `data` as the service at `source` publishes it about `subject`: the record key (the
/// subject) and the CloudEvent's bytes, ready for [`produce`].
pub fn keyed_event<T: contracts::EventData>(
    source: &str,
    subject: Uuid,
    data: T,
) -> anyhow::Result<(String, Vec<u8>)> {
    let event = CloudEvent::new(source, subject.to_string(), data).into_untyped()?;
    Ok((subject.to_string(), serde_json::to_vec(&event)?))
}

/// Puts `records` (key, payload) on `topic` at once, as another service's producer would, and
/// waits until the broker acknowledged every one. The producer is idempotent, so records with
/// one key (one partition) keep their order.
pub async fn produce(
    brokers: &str,
    topic: &str,
    records: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let producer = crate::KafkaConfig::new(brokers.to_owned()).producer()?;
    let sends = records.iter().map(|(key, payload)| {
        producer.send(
            rdkafka::producer::FutureRecord::to(topic)
                .key(key)
                .payload(payload),
            Duration::from_secs(10),
        )
    });
    for outcome in futures::future::join_all(sends).await {
        outcome.map_err(|error| anyhow::anyhow!("producing to {topic}: {error}"))?;
    }
    Ok(())
}
