//! Producer and topic set-up.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The producer type services hold (re-exported so they need no rdkafka dependency).
pub use crate::producer::Producer;

/// Where the broker is, and the one producer a process uses for it.
///
/// Every clone shares that producer: a service's outbox relays and its consumers' dead
/// letters go out through one librdkafka client (Kafka's advice: a producer is thread-safe and
/// batches better when shared). Each producer costs a delivery thread, librdkafka's own threads
/// and connections: with one rdkafka `FutureProducer` per consumer, an idle
/// notification-service held seven, whose polling threads each spun for the last millisecond
/// of every 100 ms poll (its deadline rounds down to a zero timeout), and used 7% of a core
/// doing nothing (`perf`: the time in `clock_gettime` under `Deadline::elapsed`). The one left
/// spun too, 8-9 ms of CPU a second per service, until [`Producer`] replaced it (see
/// [`crate::producer`]).
#[derive(Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// How long the producer holds a record for others to share its request
    /// (`linger.ms`, `KAFKA_LINGER_MS`): see [`DEFAULT_LINGER_MS`].
    pub linger_ms: u32,
    /// How long a consumer's empty fetch waits at the broker (`fetch.wait.max.ms`,
    /// `KAFKA_FETCH_WAIT_MS`): see [`DEFAULT_FETCH_WAIT_MS`].
    pub fetch_wait_ms: u32,
    producer: Arc<OnceLock<Producer>>,
    offsets_client: Arc<OnceLock<Arc<BaseConsumer>>>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("linger_ms", &self.linger_ms)
            .field("fetch_wait_ms", &self.fetch_wait_ms)
            .finish_non_exhaustive()
    }
}

/// A topic the service needs, created at start if missing.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Log compaction: keep the latest record per key (snapshot topics).
    pub compacted: bool,
}

/// The topic settings of a compacted (snapshot) topic, set when it is created and brought to
/// these values on every start where they are still the broker's defaults.
///
/// Kafka compacts only closed segments, and by default a segment closes after 7 days or 1 GiB.
/// Until then every record stays: on `product.events`, every stock change of every order (two
/// or three snapshots per order line), and a product-service replica, which reads the whole
/// topic at start, replayed all of them: after a few bench runs a restarted replica was at
/// 61 MB once ready, and 40 MB over the same catalog once the topic was compacted
/// (docs/ARCHITECTURE.md); at a steady 60 orders/s a week of snapshots would be tens of
/// millions of records to read before readiness. A segment closed every 10 minutes, and the
/// cleaner starting once a tenth of the log is dirty, keep what a replica replays near one
/// record per key plus the last minutes of changes. Consumers lose nothing: compaction keeps each key's latest snapshot, and a snapshot
/// is the whole product.
pub const COMPACTED_TOPIC_CONFIG: [(&str, &str); 3] = [
    ("cleanup.policy", "compact"),
    ("segment.ms", "600000"),
    ("min.cleanable.dirty.ratio", "0.1"),
];

/// The local broker of `cargo xtask up`.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// The producer's `linger.ms` unless `KAFKA_LINGER_MS` says otherwise. Each record of the
/// checkout waits up to this long in the producer at every hop of the saga, and the records
/// that meet in that time go in one produce request (docs/ARCHITECTURE.md, "How long the
/// producer lingers", has the measurement behind the value).
pub const DEFAULT_LINGER_MS: u32 = 5;

/// The longest `KAFKA_LINGER_MS` taken: beyond a second a record waits longer than any
/// consumer of the saga would accept.
pub const MAX_LINGER_MS: u32 = 1_000;

/// How long a consumer's fetch waits at the broker for records before it is answered empty,
/// unless `KAFKA_FETCH_WAIT_MS` says otherwise (librdkafka's `fetch.wait.max.ms`, 500 by
/// default). A fetch is answered as soon as a record arrives, so this bounds only the idle
/// traffic: every consumer asks again each time its empty fetch comes back. With librdkafka's
/// default, the idle local stack's nineteen consumers sent 38 fetches a second, the largest
/// share of the broker's idle requests (docs/ARCHITECTURE.md, "Idle requests to the broker").
/// Nothing here pauses or seeks partitions, the case where a long fetch in flight would delay
/// the next one.
pub const DEFAULT_FETCH_WAIT_MS: u32 = 2_000;

/// The range of `KAFKA_FETCH_WAIT_MS` taken: at least 1 ms (0 would spin), and well below
/// librdkafka's socket timeout (60 s), which an unanswered fetch must never reach.
pub const FETCH_WAIT_MS_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;

impl KafkaConfig {
    /// The brokers at `brokers` (bootstrap servers, comma-separated).
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            linger_ms: DEFAULT_LINGER_MS,
            fetch_wait_ms: DEFAULT_FETCH_WAIT_MS,
            producer: Arc::default(),
            offsets_client: Arc::default(),
        }
    }

    /// `KAFKA_BROKERS` (default: the local broker), `KAFKA_LINGER_MS` (default
    /// [`DEFAULT_LINGER_MS`], at most [`MAX_LINGER_MS`]) and `KAFKA_FETCH_WAIT_MS` (default
    /// [`DEFAULT_FETCH_WAIT_MS`], within [`FETCH_WAIT_MS_RANGE`]).
    pub fn from_env(env: &settings::Env) -> anyhow::Result<Self> {
        let mut config = Self::new(env.string_or("KAFKA_BROKERS", DEFAULT_BROKERS));
        config.linger_ms =
            env.number_in("KAFKA_LINGER_MS", DEFAULT_LINGER_MS, 0..=MAX_LINGER_MS)?;
        config.fetch_wait_ms = env.number_in(
            "KAFKA_FETCH_WAIT_MS",
            DEFAULT_FETCH_WAIT_MS,
            FETCH_WAIT_MS_RANGE,
        )?;
        Ok(config)
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }

    /// The shared idempotent producer (made at the first call; see [`KafkaConfig`]), which
    /// waits for every in-sync replica: no duplicates from its own retries, no acknowledged
    /// record lost to a leader change.
    pub fn producer(&self) -> anyhow::Result<Producer> {
        if let Some(producer) = self.producer.get() {
            return Ok(producer.clone());
        }
        let made = self.new_producer()?;
        // Two first calls at once make two; one is kept and the other dropped.
        Ok(self.producer.get_or_init(|| made).clone())
    }

    /// The process's client for reading partitions' offsets (made at the first call, shared
    /// by every clone like the producer). It never fetches: a consumer's own connection can
    /// hold a fetch at the broker for up to `fetch.wait.max.ms`, and the broker answers a
    /// connection's requests in order, so a question asked there waits behind the fetch.
    pub fn offsets_client(&self) -> anyhow::Result<Arc<BaseConsumer>> {
        if let Some(client) = self.offsets_client.get() {
            return Ok(client.clone());
        }
        let made: BaseConsumer = self
            .client_config()
            .create()
            .context("cannot create the Kafka offsets client")?;
        // Two first calls at once make two; one is kept and the other dropped.
        Ok(self.offsets_client.get_or_init(|| Arc::new(made)).clone())
    }

    fn new_producer(&self) -> anyhow::Result<Producer> {
        let config = self
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.to_string())
            .set("message.timeout.ms", "30000")
            .set("compression.type", "lz4")
            .clone();
        Producer::from_config(&config).context("cannot create the Kafka producer")
    }

    /// A [`GroupProbe`] of consumer group `group` on `topic`.
    pub fn group_probe(&self, group: &str, topic: &str) -> anyhow::Result<GroupProbe> {
        let consumer = self
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("cannot create the Kafka client of a group probe")?;
        Ok(GroupProbe {
            consumer,
            group: group.to_owned(),
            topic: topic.to_owned(),
            partitions: std::sync::Mutex::new(None),
        })
    }

    /// The [`CatchUpGate`] of a replica's consumers: their group, on each of their topics.
    pub fn catch_up_gate(
        &self,
        settings: &crate::consumer::ConsumerSettings,
    ) -> anyhow::Result<CatchUpGate> {
        let probes = settings
            .topics
            .iter()
            .map(|topic| self.group_probe(&settings.group_id, topic))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(CatchUpGate::new(settings.group_id.clone(), probes))
    }

    /// Creates the topics that do not exist yet, compacted ones with
    /// [`COMPACTED_TOPIC_CONFIG`]; of the existing ones, brings each compacted topic's settings
    /// to [`COMPACTED_TOPIC_CONFIG`] where they are still the broker's defaults (see
    /// [`Self::tune_compacted_topics`]), and leaves everything else as it is.
    pub async fn ensure_topics(&self, topics: &[TopicSpec]) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .context("cannot create the Kafka admin client")?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| {
                let new = NewTopic::new(&topic.name, topic.partitions, TopicReplication::Fixed(1));
                if topic.compacted {
                    COMPACTED_TOPIC_CONFIG
                        .iter()
                        .fold(new, |new, (key, value)| new.set(key, value))
                } else {
                    new
                }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .context("creating topics")?;
        let mut existing = Vec::new();
        for result in results {
            match result {
                Ok(_) => {}
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => existing.push(name),
                Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code}"),
            }
        }
        let compacted: Vec<&str> = topics
            .iter()
            .filter(|topic| topic.compacted && existing.contains(&topic.name))
            .map(|topic| topic.name.as_str())
            .collect();
        Self::tune_compacted_topics(&admin, &compacted, &options).await
    }

    /// Brings existing compacted topics (created before [`COMPACTED_TOPIC_CONFIG`] existed) to
    /// its settings. Only a setting still at the broker's default is changed: one an operator
    /// set on the topic (`kafka-configs --alter`) is theirs and stays. Kafka's `AlterConfigs`
    /// replaces a topic's whole set of topic-level settings, so the request carries every
    /// setting the topic already has of its own together with the ones added here.
    async fn tune_compacted_topics(
        admin: &AdminClient<DefaultClientContext>,
        names: &[&str],
        options: &AdminOptions,
    ) -> anyhow::Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let specifiers: Vec<ResourceSpecifier<'_>> = names
            .iter()
            .map(|name| ResourceSpecifier::Topic(name))
            .collect();
        let described = admin
            .describe_configs(&specifiers, options)
            .await
            .context("reading the settings of compacted topics")?;
        let mut changes: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for (name, resource) in names.iter().zip(described) {
            let resource =
                resource.with_context(|| format!("reading the settings of topic {name}"))?;
            let own: Vec<(String, String)> = resource
                .entries
                .iter()
                .filter(|entry| matches!(entry.source, ConfigSource::DynamicTopic))
                .filter_map(|entry| Some((entry.name.clone(), entry.value.clone()?)))
                .collect();
            let missing: Vec<(String, String)> = COMPACTED_TOPIC_CONFIG
                .iter()
                .filter(|(key, _)| own.iter().all(|(name, _)| name != key))
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect();
            if !missing.is_empty() {
                tracing::info!(
                    topic = name,
                    settings = ?missing,
                    "setting a compacted topic's segment and cleaner settings"
                );
                changes.push(((*name).to_owned(), own.into_iter().chain(missing).collect()));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let alters: Vec<AlterConfig<'_>> = changes
            .iter()
            .map(|(name, settings)| {
                settings.iter().fold(
                    AlterConfig::new(ResourceSpecifier::Topic(name)),
                    |alter, (key, value)| alter.set(key, value),
                )
            })
            .collect();
        for result in admin
            .alter_configs(&alters, options)
            .await
            .context("changing the settings of compacted topics")?
        {
            if let Err((resource, code)) = result {
                anyhow::bail!("cannot change the settings of {resource:?}: {code}");
            }
        }
        Ok(())
    }
}

/// Where a consumer group stands on one topic, seen from outside the group: the sums over the
/// topic's partitions of the group's committed offsets and of the partitions' ends (high
/// watermarks). Sums suffice for the question it answers, "how far behind is the group, and is
/// it moving" (order-service's admission control, which watches the saga's consumers of
/// `order.events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupProgress {
    /// Committed offsets summed; a partition the group never committed counts from its start
    /// (low watermark), as a new member would read it.
    pub committed: i64,
    /// High watermarks summed.
    pub end: i64,
}

impl std::ops::Add for GroupProgress {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            committed: self.committed + other.committed,
            end: self.end + other.end,
        }
    }
}

impl std::iter::Sum for GroupProgress {
    fn sum<I: Iterator<Item = Self>>(progress: I) -> Self {
        progress.fold(
            Self {
                committed: 0,
                end: 0,
            },
            std::ops::Add::add,
        )
    }
}

impl GroupProgress {
    /// Records produced and not yet committed by the group.
    pub fn lag(&self) -> i64 {
        (self.end - self.committed).max(0)
    }
}

/// Reads a consumer group's committed offsets on a topic without joining the group: a consumer
/// client named with the group's id that never subscribes, so the group's members are not
/// rebalanced by it. Its calls ask the broker and block: run them off the async workers.
///
/// A reading costs three broker requests whatever the number of partitions: the group's
/// committed offsets (one `OffsetFetch`), and the partitions' starts and ends (one `ListOffsets`
/// each, every partition in it). It asked for each partition's watermarks apart (two requests
/// each) and for the topic's metadata every time: order-service's admission control, which
/// reads two groups every 730 ms, made 20 of the broker's 75 requests a second while the shop
/// was idle. The partition list is kept for [`PARTITIONS_KEPT`] (a topic's partitions are only
/// ever added, by hand).
pub struct GroupProbe {
    consumer: BaseConsumer,
    group: String,
    topic: String,
    /// The topic's partitions and when they were read.
    partitions: std::sync::Mutex<Option<(std::time::Instant, TopicPartitionList)>>,
}

/// How long a [`GroupProbe`] uses the partition list it read before reading it again.
pub const PARTITIONS_KEPT: Duration = Duration::from_secs(60);

impl std::fmt::Debug for GroupProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupProbe")
            .field("group", &self.group)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// How long one broker request of a [`GroupProbe`] or a consumer's lag probe may take.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl GroupProbe {
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The group's committed offsets and the partitions' ends on the topic, now.
    pub fn progress(&self) -> anyhow::Result<GroupProgress> {
        let partitions = self.partitions()?;
        let committed = self
            .consumer
            .committed_offsets(partitions.clone(), PROBE_TIMEOUT)
            .context("reading the group's committed offsets")?;
        let starts = self.offsets_at(&partitions, Offset::Beginning)?;
        let ends = self.offsets_at(&partitions, Offset::End)?;
        let mut progress = GroupProgress {
            committed: 0,
            end: 0,
        };
        for element in committed.elements() {
            let bound = |offsets: &HashMap<i32, i64>| {
                offsets
                    .get(&element.partition())
                    .copied()
                    .with_context(|| format!("no offset for partition {}", element.partition()))
            };
            let (low, high) = (bound(&starts)?, bound(&ends)?);
            let at = match element.offset() {
                Offset::Offset(offset) => offset.clamp(low, high),
                _ => low,
            };
            progress.committed += at;
            progress.end += high;
        }
        Ok(progress)
    }

    /// The topic's partitions: the list read within [`PARTITIONS_KEPT`], or a fresh one.
    fn partitions(&self) -> anyhow::Result<TopicPartitionList> {
        let mut kept = self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((read_at, partitions)) = kept.as_ref()
            && read_at.elapsed() < PARTITIONS_KEPT
        {
            return Ok(partitions.clone());
        }
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), PROBE_TIMEOUT)
            .context("reading the topic's partitions")?;
        let mut partitions = TopicPartitionList::new();
        for topic in metadata.topics().iter().filter(|t| t.name() == self.topic) {
            for partition in topic.partitions() {
                partitions.add_partition(&self.topic, partition.id());
            }
        }
        // A topic not created yet has none; it is asked about again at the next reading.
        if partitions.count() > 0 {
            *kept = Some((std::time::Instant::now(), partitions.clone()));
        }
        Ok(partitions)
    }

    /// Every partition's first (`Offset::Beginning`) or next (`Offset::End`) offset, by
    /// partition ([`offsets_at`]).
    fn offsets_at(
        &self,
        partitions: &TopicPartitionList,
        at: Offset,
    ) -> anyhow::Result<HashMap<i32, i64>> {
        Ok(offsets_at(&self.consumer, partitions, at, PROBE_TIMEOUT)?
            .into_iter()
            .map(|((_, partition), offset)| (partition, offset))
            .collect())
    }
}

/// Every listed partition's first (`Offset::Beginning`) or next (`Offset::End`) offset, by
/// topic and partition, in one `ListOffsets` request per broker: librdkafka passes the offset
/// as the request's timestamp, and the broker reads -2 and -1 as earliest and latest. Ask
/// through a client that does not fetch ([`KafkaConfig::offsets_client`]).
pub(crate) fn offsets_at(
    client: &BaseConsumer,
    partitions: &TopicPartitionList,
    at: Offset,
    timeout: Duration,
) -> anyhow::Result<HashMap<(String, i32), i64>> {
    let mut asked = partitions.clone();
    asked
        .set_all_offsets(at)
        .context("naming the offsets to look up")?;
    let found = client
        .offsets_for_times(asked, timeout)
        .context("reading the partitions' offsets")?;
    found
        .elements()
        .iter()
        .map(|element| {
            element.error().with_context(|| {
                format!(
                    "reading the offsets of {} partition {}",
                    element.topic(),
                    element.partition()
                )
            })?;
            match element.offset() {
                Offset::Offset(offset) => {
                    Ok(((element.topic().to_owned(), element.partition()), offset))
                }
                other => anyhow::bail!(
                    "{} partition {} answered no offset ({other:?})",
                    element.topic(),
                    element.partition()
                ),
            }
        })
        .collect()
}

/// Readiness of a replica built from a log by a consumer group: red until the group has
/// committed, on its topic, at least as far as the topic reached when this gate first looked
/// (the first readiness probe, right after start), then green for good. A replica started late,
/// or on an empty database, would otherwise serve answers from a half-replayed log: an
/// order-service that has read a product's first snapshot but not its price change prices
/// orders from the old price (a CI run placed exactly such an order). After the catch-up the
/// gate costs nothing: lag in normal running is the consumers' metric, not a reason to leave
/// the load balancer. Clones share the state.
#[derive(Debug, Clone)]
pub struct CatchUpGate {
    group: String,
    inner: Arc<std::sync::Mutex<Gate>>,
}

#[derive(Debug)]
struct Gate {
    state: CatchUp,
    /// The group on each of its topics, their progress summed; `None` once caught up, when
    /// the probes' Kafka clients (threads and a broker connection each) are let go.
    probes: Option<Arc<Vec<GroupProbe>>>,
}

/// Where a [`CatchUpGate`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing read yet: the first reading fixes the target.
    Unmeasured,
    /// Waiting for the group to commit up to `target` (the sum of the partitions' ends).
    Behind { target: i64 },
    /// Caught up once; stays so.
    CaughtUp,
}

impl CatchUp {
    /// The state after `progress` was read, and whether the replica counts as caught up.
    pub fn observe(self, progress: GroupProgress) -> Self {
        let target = match self {
            Self::CaughtUp => return Self::CaughtUp,
            Self::Unmeasured => progress.end,
            Self::Behind { target } => target,
        };
        if progress.committed >= target {
            Self::CaughtUp
        } else {
            Self::Behind { target }
        }
    }
}

impl CatchUpGate {
    /// A gate over `group`'s progress on the topics of `probes` (see
    /// [`KafkaConfig::catch_up_gate`]).
    pub fn new(group: String, probes: Vec<GroupProbe>) -> Self {
        Self {
            group,
            inner: Arc::new(std::sync::Mutex::new(Gate {
                state: CatchUp::Unmeasured,
                probes: Some(Arc::new(probes)),
            })),
        }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the gate still holds its probes (until the group has caught up).
    pub fn is_probing(&self) -> bool {
        self.gate().probes.is_some()
    }

    /// `Ok` once the group has caught up; otherwise how far behind it is.
    pub async fn check(&self) -> Result<(), String> {
        // No probes left means caught up (they go when it is).
        let Some(probes) = self.gate().probes.clone() else {
            return Ok(());
        };
        let progress = tokio::task::spawn_blocking(move || {
            probes
                .iter()
                .map(GroupProbe::progress)
                .sum::<anyhow::Result<GroupProgress>>()
        })
        .await
        .map_err(|error| format!("reading {}'s progress: {error}", self.group))?
        .map_err(|error| format!("reading {}'s progress: {error:#}", self.group))?;
        let mut gate = self.gate();
        gate.state = gate.state.observe(progress);
        match gate.state {
            CatchUp::CaughtUp => {
                let probes = gate.probes.take();
                // Destroying a Kafka client joins its threads: off the async workers.
                tokio::task::spawn_blocking(move || drop(probes));
                Ok(())
            }
            CatchUp::Behind { target } => Err(format!(
                "{} is replaying the log: {} of {target} records committed",
                self.group, progress.committed
            )),
            CatchUp::Unmeasured => Err(format!("{} not measured yet", self.group)),
        }
    }
}

/// The readiness check of a service's replicas (for `web::Readiness::with_check`): every gate
/// in turn, the first one still replaying named.
pub fn catch_up_check(
    gates: Vec<CatchUpGate>,
) -> impl Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    let gates = Arc::new(gates);
    move || {
        let gates = Arc::clone(&gates);
        Box::pin(async move {
            for gate in gates.iter() {
                gate.check().await?;
            }
            Ok(())
        })
    }
}

/// The readiness check of a service that produces to `topic` (for `web::Readiness::with_check`):
/// [`broker_reachable`] each time it runs.
pub fn broker_check(
    producer: Producer,
    topic: String,
) -> impl Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    move || {
        let (producer, topic) = (producer.clone(), topic.clone());
        Box::pin(async move { broker_reachable(&producer, &topic).await })
    }
}

/// Whether the broker answers a metadata request about `topic` (readiness). One topic, not
/// all: the answer about every topic grows with the topics on the broker (thousands on a
/// development broker the tests have used), and readiness is probed every two seconds per
/// instance; those answers were a seventh of the broker's CPU under the checkout (JFR).
pub async fn broker_reachable(producer: &Producer, topic: &str) -> Result<(), String> {
    let producer = producer.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(2))
            .map(|_| ())
            .map_err(|error| format!("Kafka broker unreachable: {error}"))
    })
    .await
    .map_err(|error| format!("metadata check failed: {error}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_come_from_kafka_brokers_or_the_local_default() -> anyhow::Result<()> {
        let local = KafkaConfig::from_env(&settings::Env::from_pairs([]))?;
        assert_eq!(local.brokers, DEFAULT_BROKERS);
        let env = settings::Env::from_pairs([("KAFKA_BROKERS", "kafka-0:9092,kafka-1:9092")]);
        assert_eq!(
            KafkaConfig::from_env(&env)?.brokers,
            "kafka-0:9092,kafka-1:9092"
        );
        Ok(())
    }

    /// `variable` read by `read` from the environment: its default when unset or empty, each
    /// of `taken` as given, each of `refused` an error that names the variable.
    fn check_bounded_setting(
        variable: &str,
        read: fn(&KafkaConfig) -> u32,
        default: u32,
        taken: &[u32],
        refused: &[&str],
    ) -> anyhow::Result<()> {
        let value = |value: &str| {
            KafkaConfig::from_env(&settings::Env::from_pairs([(variable, value)]))
                .map(|config| read(&config))
        };
        assert_eq!(
            read(&KafkaConfig::from_env(&settings::Env::from_pairs([]))?),
            default
        );
        // Empty is unset, as for every variable.
        assert_eq!(value("")?, default);
        for &number in taken {
            assert_eq!(value(&number.to_string())?, number);
        }
        for refused in refused {
            let error = value(refused).err().map(|error| error.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|error| error.contains(variable)),
                "{refused:?}: {error:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn the_linger_comes_from_kafka_linger_ms_within_its_bounds() -> anyhow::Result<()> {
        check_bounded_setting(
            "KAFKA_LINGER_MS",
            |config| config.linger_ms,
            DEFAULT_LINGER_MS,
            &[0, 20],
            &["1001", "-1", "5ms"],
        )
    }

    #[test]
    fn the_fetch_wait_comes_from_kafka_fetch_wait_ms_within_its_bounds() -> anyhow::Result<()> {
        check_bounded_setting(
            "KAFKA_FETCH_WAIT_MS",
            |config| config.fetch_wait_ms,
            DEFAULT_FETCH_WAIT_MS,
            &[1, 500, 10_000],
            &["0", "10001", "-1", "2s"],
        )
    }

    #[test]
    fn a_replica_is_caught_up_once_it_reaches_the_end_it_started_from_and_stays_so() {
        let at = |committed, end| GroupProgress { committed, end };
        // Records produced while it replays do not move the target.
        let state = CatchUp::Unmeasured.observe(at(0, 100));
        assert_eq!(state, CatchUp::Behind { target: 100 });
        let state = state.observe(at(60, 140));
        assert_eq!(state, CatchUp::Behind { target: 100 });
        let state = state.observe(at(100, 180));
        assert_eq!(state, CatchUp::CaughtUp);
        // Later lag is the consumers' metric, not a readiness matter.
        assert_eq!(state.observe(at(0, 500)), CatchUp::CaughtUp);
        // An empty or fully read log is caught up at the first look.
        assert_eq!(CatchUp::Unmeasured.observe(at(0, 0)), CatchUp::CaughtUp);
        assert_eq!(CatchUp::Unmeasured.observe(at(7, 7)), CatchUp::CaughtUp);
    }

    #[test]
    fn progress_on_several_topics_sums_committed_and_ends() {
        let at = |committed, end| GroupProgress { committed, end };
        let total: GroupProgress = [at(2, 5), at(0, 3), at(4, 4)].into_iter().sum();
        assert_eq!((total, total.lag()), (at(6, 12), 6));
        let none: GroupProgress = std::iter::empty().sum();
        assert_eq!(none, at(0, 0));
    }
}
