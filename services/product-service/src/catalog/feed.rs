//! Keeps the read model current from `product.events`.
//!
//! Each replica reads every partition of the topic from the beginning, with partitions assigned
//! by this process rather than by a consumer group, and commits no offsets: the whole catalog
//! is in memory, so a restarted replica must replay the (compacted) topic anyway, and a group
//! per replica would only leave abandoned groups on the broker. At start it notes the end of
//! every partition; once it has read up to those ends the model is loaded and readiness turns
//! green (a replica started late catches up the same way, whatever it missed).
//!
//! Index commits are batched (at most every [`COMMIT_EVERY`] or [`COMMIT_BATCH`] changes), so
//! the initial load of 100,000 products makes a few dozen segments, not one per product.
//!
//! Metrics: `catalog_read_model_lag_seconds` (age of the last snapshot applied, from the
//! record's broker timestamp, or 0 once nothing is waiting), `catalog_read_model_products`,
//! `catalog_read_model_loaded` (0/1) and `catalog_read_model_skipped_total` (undecodable
//! records: logged and skipped, so one bad record cannot stop every replica's catalog).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use contracts::CloudEvent;
use contracts::product::ProductSnapshot;
use contracts::topics::{PRODUCT_EVENTS, Topic};
use messaging::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Catalog;

/// The longest an applied change waits before it becomes searchable on this replica.
pub const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// Changes after which the index is committed even while records keep coming.
pub const COMMIT_BATCH: usize = 5_000;
/// How long the consumer waits for a record before it checks whether it is caught up.
const IDLE: Duration = Duration::from_millis(250);

/// The feed of one replica.
pub struct CatalogFeed {
    consumer: Arc<StreamConsumer>,
    topic: String,
    catalog: Catalog,
}

impl std::fmt::Debug for CatalogFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogFeed")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl CatalogFeed {
    pub fn new(kafka: &KafkaConfig, topics: &Topic, catalog: Catalog) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            // Required by librdkafka; never joined (partitions are assigned) nor committed.
            .set(
                "group.id",
                topics.qualified(&format!("product-service.catalog.{}", Uuid::new_v4())),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // The initial load reads the whole topic as fast as it can apply it; librdkafka's
            // default prefetch (64 MB queued, 50 MB per fetch) would hold a large part of a
            // big catalog in memory twice over for no gain in speed.
            .set("queued.max.messages.kbytes", "4096")
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "1048576")
            .set("fetch.wait.max.ms", kafka.fetch_wait_ms.to_string())
            .create()
            .context("creating the catalog consumer")?;
        Ok(Self {
            consumer: Arc::new(consumer),
            topic: topics.qualified(PRODUCT_EVENTS),
            catalog,
        })
    }

    /// Follows the topic until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let ends = loop {
            match self.assign_from_beginning().await {
                Ok(ends) => break ends,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "catalog feed cannot start; retrying"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut loading = Loading::new(ends);
        let mut uncommitted = 0_usize;
        let mut oldest_uncommitted: Option<Instant> = None;
        loop {
            if uncommitted == 0 && !self.catalog.is_loaded() && loading.done() {
                // One segment before taking traffic: the load committed one every 100 ms.
                self.merge_index().await;
                self.catalog.mark_loaded();
                metrics::gauge!("catalog_read_model_loaded").set(1.0);
                tracing::info!(products = self.catalog.len(), "catalog read model loaded");
            }
            let wait = match oldest_uncommitted {
                Some(since) => COMMIT_EVERY.saturating_sub(since.elapsed()),
                None => IDLE,
            };
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                received = tokio::time::timeout(wait, self.consumer.recv()) => received,
            };
            match received {
                Ok(Ok(message)) => {
                    if self.apply(&message) {
                        uncommitted += 1;
                        oldest_uncommitted.get_or_insert_with(Instant::now);
                    }
                    loading.read(message.partition(), message.offset());
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "catalog feed: Kafka receive error");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(_idle) => {
                    // Compaction can leave a partition's last offsets without records; the
                    // consumer's position still passes them.
                    if !loading.done()
                        && let Ok(positions) = self.consumer.position()
                    {
                        for element in positions.elements() {
                            if let Offset::Offset(next) = element.offset() {
                                loading.read(element.partition(), next - 1);
                            }
                        }
                    }
                    if uncommitted == 0 && loading.done() {
                        metrics::gauge!("catalog_read_model_lag_seconds").set(0.0);
                    }
                }
            }
            let due = oldest_uncommitted.is_some_and(|since| since.elapsed() >= COMMIT_EVERY);
            if uncommitted > 0 && (due || uncommitted >= COMMIT_BATCH) {
                self.commit().await;
                uncommitted = 0;
                oldest_uncommitted = None;
            }
        }
        if uncommitted > 0 {
            self.commit().await;
        }
    }

    /// Assigns every partition from its beginning; returns the end offset of each, as of now.
    async fn assign_from_beginning(&self) -> anyhow::Result<HashMap<i32, i64>> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(5);
            let metadata = consumer
                .fetch_metadata(Some(&topic), timeout)
                .context("reading the topic's partitions")?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            anyhow::ensure!(!partitions.is_empty(), "{topic} has no partitions yet");
            let mut ends = HashMap::new();
            let mut assignment = TopicPartitionList::new();
            for partition in partitions {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, partition, timeout)
                    .context("reading the end of a partition")?;
                ends.insert(partition, high);
                assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
            }
            consumer
                .assign(&assignment)
                .context("assigning partitions")?;
            Ok(ends)
        })
        .await?
    }

    /// Applies one record; whether the index changed.
    fn apply(&self, message: &BorrowedMessage<'_>) -> bool {
        let Some(payload) = message.payload() else {
            return false;
        };
        if let Some(millis) = message.timestamp().to_millis() {
            let age = chrono::Utc::now().timestamp_millis().saturating_sub(millis);
            metrics::gauge!("catalog_read_model_lag_seconds").set(age.max(0) as f64 / 1000.0);
        }
        let snapshot = CloudEvent::from_slice(payload)
            .map_err(anyhow::Error::new)
            .and_then(|event| {
                anyhow::ensure!(
                    event.event_type.starts_with("product."),
                    "unexpected type {}",
                    event.event_type
                );
                serde_json::from_value::<ProductSnapshot>(event.data).context("snapshot")
            });
        let outcome = snapshot.and_then(|snapshot| self.catalog.apply(snapshot));
        match outcome {
            Ok(reindexed) => {
                metrics::gauge!("catalog_read_model_products").set(self.catalog.len() as f64);
                reindexed
            }
            Err(error) => {
                metrics::counter!("catalog_read_model_skipped_total").increment(1);
                tracing::warn!(
                    error = format!("{error:#}"),
                    partition = message.partition(),
                    offset = message.offset(),
                    "catalog feed: skipping a record"
                );
                false
            }
        }
    }

    /// Merges the index into one segment, waiting for background merges that hold some of
    /// its segments a few times; searches are only slower if it gives up (logged).
    async fn merge_index(&self) {
        for _ in 0..MERGE_ATTEMPTS {
            let catalog = self.catalog.clone();
            match tokio::task::spawn_blocking(move || catalog.merge_index()).await {
                Ok(Ok(Some(segments))) => {
                    tracing::info!(segments, "index segments merged into one");
                    return;
                }
                Ok(Ok(None)) => tokio::time::sleep(Duration::from_millis(200)).await,
                Ok(Err(error)) => {
                    tracing::warn!(error = format!("{error:#}"), "index segments not merged");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "index merge task failed");
                    return;
                }
            }
        }
        tracing::warn!("index segments left unmerged: background merges kept holding them");
    }

    async fn commit(&self) {
        let catalog = self.catalog.clone();
        match tokio::task::spawn_blocking(move || catalog.commit()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(error = format!("{error:#}"), "index commit failed"),
            Err(error) => tracing::error!(%error, "index commit task failed"),
        }
    }
}

/// Attempts at merging the index after the initial load.
const MERGE_ATTEMPTS: usize = 10;

/// Progress of the initial load: the offset each partition must reach.
struct Loading {
    remaining: HashMap<i32, i64>,
}

impl Loading {
    fn new(ends: HashMap<i32, i64>) -> Self {
        let mut remaining = ends;
        // An empty partition (end 0) has nothing to load.
        remaining.retain(|_, end| *end > 0);
        Self { remaining }
    }

    fn read(&mut self, partition: i32, offset: i64) {
        if let Some(&end) = self.remaining.get(&partition)
            && offset + 1 >= end
        {
            self.remaining.remove(&partition);
        }
    }

    fn done(&self) -> bool {
        self.remaining.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_ends_when_every_partition_reached_its_end_at_start() {
        let mut loading = Loading::new(HashMap::from([(0, 3), (1, 0), (2, 1)]));
        assert!(!loading.done());
        loading.read(0, 1);
        loading.read(2, 0);
        assert!(!loading.done());
        loading.read(0, 2);
        assert!(loading.done());
    }
}
