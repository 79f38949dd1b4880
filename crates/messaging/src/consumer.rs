//! The consuming side: a loop that hands each record to a handler, retries transient failures
//! with backoff, sends poison records to `<topic>.dlt`, and only then lets the offset advance.
//!
//! A transient failure (a dependency away: the database, the MongoDB-wire server) is retried
//! until the handler succeeds, never dead-lettered: the record is fine, only the moment is
//! not, and a dependency can be away far longer than any fixed number of attempts (an outage
//! of 30 s once dead-lettered the `order.created` of orders accepted meanwhile, and they stayed
//! `PENDING` for good). The consumer holds its partition meanwhile, so later records of the
//! same aggregate wait in order behind it. After [`ConsumerSettings::max_attempts`] failed
//! attempts it reports itself stalled ([`ConsumerHealth`], for `/health/ready`) and keeps
//! retrying at most every [`ConsumerSettings::max_backoff`]; the first success clears it. The
//! price of that choice: a handler that calls a deterministic failure transient holds its
//! partition until it is fixed, which shows as a red readiness and a growing `consumer_lag`,
//! never as a record lost to the dead-letter topic. Only permanent failures (undecodable or
//! impossible records) go there.
//!
//! Delivery is at-least-once: the offset of a record is stored after its handler succeeded (or
//! it was dead-lettered), and stored offsets are committed by librdkafka in the background and
//! synchronously on shutdown. A crash in between replays the record, so handlers must be
//! idempotent; [`mark_processed`] is the PostgreSQL way, in the handler's own transaction.
//! By default records are handled one at a time per consumer, in partition order, which keeps
//! each aggregate's events in order. A consumer given [`ConsumerSettings::in_flight`] > 1
//! handles up to that many records at once, never two of one key at once (records are keyed
//! by their aggregate's id, so each aggregate's events still apply in order), and acknowledges
//! a partition only up to the oldest record not finished ([`in_flight`]); a crash in the
//! middle replays from there, which the idempotent handlers absorb. A service uses it where the
//! handler waits on I/O that many records can share: product-service's stock writer takes
//! every reservation waiting for a product in one guarded update, so records handled side by
//! side become one write.

mod in_flight;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use contracts::CloudEvent;
use contracts::topics::dead_letter;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureRecord;
#[cfg(feature = "postgres")]
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
#[cfg(feature = "postgres")]
use uuid::Uuid;

use crate::headers::{from_record_headers, to_record_headers};
use crate::kafka::{KafkaConfig, PROBE_TIMEOUT, offsets_at};

/// One record as a handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub event: CloudEvent,
    pub headers: HashMap<String, String>,
}

/// How a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again (a dependency is unavailable): retried until it succeeds.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Will never succeed (invalid data); goes straight to the dead-letter topic.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

/// Processes one record. Must be idempotent: a record can arrive more than once.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub group_id: String,
    pub topics: Vec<String>,
    /// Attempts for a transiently failing record before the consumer reports itself stalled
    /// (it keeps retrying; see the module documentation).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub base_backoff: Duration,
    /// The longest pause between two attempts, so a record is retried soon after its
    /// dependency returns.
    pub max_backoff: Duration,
    /// Records handled at once, never two of one key (see the module documentation); 1, the
    /// default, handles them one at a time.
    pub in_flight: usize,
}

impl ConsumerSettings {
    pub fn new(group_id: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group_id: group_id.into(),
            topics,
            max_attempts: 5,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            in_flight: 1,
        }
    }

    /// Up to `records` handled at once, never two of one key.
    pub fn with_in_flight(mut self, records: usize) -> Self {
        self.in_flight = records.max(1);
        self
    }
}

/// Which consumers of a service are stuck on a record they cannot process yet, for
/// `/health/ready`. One is shared by every consumer that reports to it
/// ([`EventConsumer::reporting_to`]); clones share the state.
#[derive(Debug, Clone, Default)]
pub struct ConsumerHealth {
    /// Why each stalled consumer's record has failed `max_attempts` times or more, by the
    /// consumer's number.
    stalled: Arc<Mutex<BTreeMap<u64, String>>>,
}

impl ConsumerHealth {
    pub fn new() -> Self {
        Self::default()
    }

    /// `Ok` unless a consumer holds a record that keeps failing; the error says which and why.
    pub fn check(&self) -> Result<(), String> {
        let stalled = self.stalled.lock().unwrap_or_else(PoisonError::into_inner);
        match stalled.values().next() {
            None => Ok(()),
            Some(reason) if stalled.len() == 1 => Err(reason.clone()),
            Some(reason) => Err(format!("{reason} (and {} more)", stalled.len() - 1)),
        }
    }

    fn set(&self, consumer: u64, stalled: Option<String>) {
        let mut map = self.stalled.lock().unwrap_or_else(PoisonError::into_inner);
        match stalled {
            Some(reason) => map.insert(consumer, reason),
            None => map.remove(&consumer),
        };
    }
}

/// How long [`EventConsumer::run`] waits, once stopped, for its partitions to be revoked.
const LEAVE_GROUP_WAIT: Duration = Duration::from_secs(5);

/// Numbers the consumers of a process, so each has its entry in a shared [`ConsumerHealth`].
static NEXT_CONSUMER: AtomicU64 = AtomicU64::new(0);

/// A subscribed consumer plus the producer its dead letters go out with.
pub struct EventConsumer {
    consumer: Arc<StreamConsumer>,
    /// The process's offsets client, for the [`LagProbe`].
    offsets: Arc<BaseConsumer>,
    dead_letters: crate::producer::Producer,
    settings: ConsumerSettings,
    health: ConsumerHealth,
    /// This consumer's entry in `health`.
    number: u64,
    /// Records of this consumer failing for [`ConsumerSettings::max_attempts`] or more
    /// attempts right now; the consumer is reported healthy again only when none is left.
    stalled_records: AtomicUsize,
}

/// Closes the Kafka consumer on a thread of its own. librdkafka's close waits for a rebalance
/// in flight to finish, and when one is (a consumer dropped while the group rebalances, as a
/// test's teardown or an aborted task does) it can wait forever inside `rd_kafka_assign`
/// (librdkafka #4884, rust-rdkafka #509: a CI run once hung in a test's teardown there). On a
/// thread of its own such a close holds only that thread, never a runtime worker. The thread
/// waits for the other handles (the lag probe) to go, so that it runs the close itself. A
/// graceful stop ([`EventConsumer::run`]) has left the group already, so its close is quick.
impl Drop for EventConsumer {
    fn drop(&mut self) {
        let consumer = Arc::clone(&self.consumer);
        let closing = std::thread::Builder::new()
            .name("kafka-consumer-close".into())
            .spawn(
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a thread of its own, started for this wait: no runtime worker"
                )]
                move || {
                    // Ours and the one `self` still holds until this `drop` returns.
                    while Arc::strong_count(&consumer) > 1 {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    drop(consumer);
                },
            );
        if let Err(error) = closing {
            // No thread to be had: the close runs here, as it did before.
            tracing::warn!(%error, "closing the Kafka consumer on this thread");
        }
    }
}

impl std::fmt::Debug for EventConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventConsumer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl EventConsumer {
    /// Creates the consumer and subscribes it. A group reading a topic for the first time
    /// starts from the beginning, so a service started late replays the log.
    pub fn new(kafka: &KafkaConfig, settings: ConsumerSettings) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", &settings.group_id)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets advance only when this code stores them, i.e. after the effect.
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", "10000")
            .set("fetch.wait.max.ms", kafka.fetch_wait_ms.to_string())
            .create()
            .context("cannot create the Kafka consumer")?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).context("subscribing")?;
        Ok(Self {
            consumer: Arc::new(consumer),
            offsets: kafka.offsets_client()?,
            dead_letters: kafka.producer()?,
            health: ConsumerHealth::new(),
            number: NEXT_CONSUMER.fetch_add(1, Ordering::Relaxed),
            stalled_records: AtomicUsize::new(0),
            settings,
        })
    }

    /// `count` consumers of one group, which share its topics' partitions (each partition,
    /// and so each key's records in order, handled by one of them at a time), all reporting to
    /// `health`.
    pub fn group(
        kafka: &KafkaConfig,
        settings: &ConsumerSettings,
        count: usize,
        health: &ConsumerHealth,
    ) -> anyhow::Result<Vec<Self>> {
        (0..count)
            .map(|_| Ok(Self::new(kafka, settings.clone())?.reporting_to(health)))
            .collect()
    }

    /// Reports stalls to `health` (shared with the service's other consumers and read by its
    /// readiness) instead of a health of its own.
    pub fn reporting_to(mut self, health: &ConsumerHealth) -> Self {
        self.health = health.clone();
        self
    }

    /// Where this consumer reports whether it is stalled.
    pub fn health(&self) -> ConsumerHealth {
        self.health.clone()
    }

    /// Consumes until `shutdown` is cancelled; the record in hand is finished and offsets are
    /// committed before it returns.
    pub async fn run<H: Handler>(self, handler: H, shutdown: CancellationToken) {
        let lag_reporter = tokio::spawn(report_lag(self.lag_probe(), shutdown.clone()));
        if self.settings.in_flight > 1 {
            self.run_side_by_side(&handler, &shutdown).await;
        } else {
            self.run_one_at_a_time(&handler, &shutdown).await;
        }
        lag_reporter.abort();
        self.health.set(self.number, None);
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored yet is the common case for an idle consumer.
            tracing::debug!(%error, "final offset commit");
        }
        self.leave_group().await;
        tracing::info!(group = %self.settings.group_id, "consumer stopped");
    }

    /// The default loop: one record at a time, its offset stored once it is finished.
    async fn run_one_at_a_time<H: Handler>(&self, handler: &H, shutdown: &CancellationToken) {
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            match message {
                Ok(message) => {
                    if self.process(handler, &message, shutdown).await == Done::Unfinished {
                        // Stopped while retrying: the offset stays where it is, so the record
                        // is delivered again (to this group's next consumer), not lost.
                        break;
                    }
                    if let Err(error) = self.consumer.store_offset_from_message(&message) {
                        tracing::warn!(%error, "storing the offset failed; the record may be replayed");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Kafka receive error");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {},
                    }
                }
            }
        }
    }

    /// Up to [`ConsumerSettings::in_flight`] records at once, one per key (see the module
    /// documentation). On shutdown it takes nothing more and waits for the records running
    /// (a record being retried stops at once and stays unacknowledged); records waiting behind
    /// their key are not started and, like every record after the oldest unfinished one, are
    /// delivered again to the partition's next owner.
    async fn run_side_by_side<H: Handler>(&self, handler: &H, shutdown: &CancellationToken) {
        let limit = self.settings.in_flight;
        let mut in_flight = in_flight::InFlight::<OwnedMessage>::default();
        let mut running = FuturesUnordered::new();
        let mut stopping = false;
        let mut resume_receiving: Option<tokio::time::Instant> = None;
        loop {
            if stopping && running.is_empty() {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled(), if !stopping => stopping = true,
                Some((message, done)) = running.next(), if !running.is_empty() => {
                    if done == Done::Unfinished {
                        // Shutting down while it was retried: not acknowledged.
                        stopping = true;
                        continue;
                    }
                    let (partition, offset, key) = position(&message);
                    let (acknowledged, next) = in_flight.finish(&partition, offset, &key);
                    if let Some(offset) = acknowledged
                        && let Err(error) = self.consumer.store_offset(&partition.0, partition.1, offset)
                    {
                        tracing::warn!(%error, "storing the offset failed; records may be replayed");
                    }
                    if let Some(next) = next {
                        if stopping {
                            continue;
                        }
                        running.push(self.process_owned(handler, next, shutdown));
                    }
                }
                message = self.consumer.recv(),
                    if !stopping && resume_receiving.is_none() && in_flight.len() < limit =>
                {
                    match message {
                        Ok(message) => {
                            let message = message.detach();
                            let (partition, offset, key) = position(&message);
                            if let Some(start) = in_flight.take(partition, offset, key, message) {
                                running.push(self.process_owned(handler, start, shutdown));
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "Kafka receive error");
                            // A pause in receiving only: the records running go on meanwhile.
                            resume_receiving =
                                Some(tokio::time::Instant::now() + Duration::from_millis(500));
                        }
                    }
                }
                () = tokio::time::sleep_until(
                    resume_receiving.unwrap_or_else(tokio::time::Instant::now),
                ), if resume_receiving.is_some() => resume_receiving = None,
            }
        }
    }

    /// [`EventConsumer::process`] of a record taken off the consumer, handed back with the
    /// outcome so the loop can acknowledge it.
    async fn process_owned<H: Handler>(
        &self,
        handler: &H,
        message: OwnedMessage,
        shutdown: &CancellationToken,
    ) -> (OwnedMessage, Done) {
        let done = self.process(handler, &message, shutdown).await;
        (message, done)
    }

    /// Leaves the group before the consumer is dropped: unsubscribes, then serves the queue
    /// until the partitions are revoked (at most [`LEAVE_GROUP_WAIT`]), so the group's other
    /// members take them over at once and the close that dropping runs finds no rebalance in
    /// flight (see the `Drop` implementation). Records still received meanwhile are not
    /// handled and their offsets not stored: they are delivered again to the next owner.
    async fn leave_group(&self) {
        self.consumer.unsubscribe();
        let deadline = tokio::time::Instant::now() + LEAVE_GROUP_WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.consumer.assignment() {
                Ok(assigned) if assigned.count() > 0 => {}
                _ => return,
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), self.consumer.recv()).await;
        }
        tracing::warn!(group = %self.settings.group_id, "partitions not revoked in time; closing anyway");
    }

    async fn process<H: Handler, M: Message>(
        &self,
        handler: &H,
        message: &M,
        shutdown: &CancellationToken,
    ) -> Done {
        let topic = message.topic().to_owned();
        let headers = message
            .headers()
            .map(from_record_headers)
            .unwrap_or_default();
        let span = tracing::info_span!(
            "consume",
            otel.name = %format!("consume {topic}"),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.source = %topic,
            messaging.consumer_group = %self.settings.group_id,
            messaging.kafka.partition = message.partition(),
            messaging.kafka.offset = message.offset(),
            event_type = tracing::field::Empty,
            event_id = tracing::field::Empty,
        );
        telemetry::adopt_parent(&span, telemetry::context_from_headers(&headers));
        let outcome = async {
            let event = match CloudEvent::from_slice(message.payload().unwrap_or_default()) {
                Ok(event) => event,
                Err(error) => return Err(Stop::DeadLetter(format!("not a CloudEvent: {error}"))),
            };
            let span = tracing::Span::current();
            span.record("event_type", event.event_type.as_str());
            span.record("event_id", tracing::field::display(event.id));
            let delivery = Delivery {
                topic: topic.clone(),
                partition: message.partition(),
                offset: message.offset(),
                key: message
                    .key()
                    .map(|key| String::from_utf8_lossy(key).into_owned()),
                event,
                headers: headers.clone(),
            };
            self.handle_with_retries(handler, &delivery, shutdown).await
        }
        .instrument(span.clone())
        .await;
        let labels = [("topic", topic.clone())];
        match outcome {
            Ok(()) => metrics::counter!("consumer_processed_total", &labels).increment(1),
            Err(Stop::DeadLetter(reason)) => {
                span.record("otel.status_code", "ERROR");
                span.in_scope(|| tracing::error!(%reason, "dead-lettering the record"));
                self.dead_letter(message, &reason).instrument(span).await;
                metrics::counter!("consumer_dead_lettered_total", &labels).increment(1);
            }
            Err(Stop::ShuttingDown) => return Done::Unfinished,
        }
        Done::Finished
    }

    /// Runs the handler until it succeeds or fails permanently (the error is then the reason
    /// to dead-letter), or shutdown is asked for (the record stays unacknowledged and is
    /// replayed later). Transient failures are retried with backoff for as long as they last.
    async fn handle_with_retries<H: Handler>(
        &self,
        handler: &H,
        delivery: &Delivery,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let mut attempt: u32 = 1;
        let mut stalled = false;
        let outcome = loop {
            let error = match handler.handle(delivery).await {
                Ok(()) => break Ok(()),
                Err(HandlerError::Permanent(error)) => {
                    break Err(Stop::DeadLetter(format!("{error:#}")));
                }
                Err(HandlerError::Transient(error)) => error,
            };
            metrics::counter!(
                "consumer_retries_total",
                &[("topic", delivery.topic.clone())]
            )
            .increment(1);
            let delay = backoff(self.settings.base_backoff, attempt).min(self.settings.max_backoff);
            if attempt >= self.settings.max_attempts {
                if !stalled {
                    stalled = true;
                    self.stalled_records.fetch_add(1, Ordering::SeqCst);
                }
                self.health.set(
                    self.number,
                    Some(format!(
                        "consumer {} holds a record of {} that failed {attempt} times: {error:#}",
                        self.settings.group_id, delivery.topic
                    )),
                );
                tracing::error!(
                    error = format!("{error:#}"),
                    attempt,
                    ?delay,
                    "handler keeps failing; holding the record and retrying"
                );
            } else {
                tracing::warn!(
                    error = format!("{error:#}"),
                    attempt,
                    ?delay,
                    "handler failed; retrying"
                );
            }
            tokio::select! {
                () = shutdown.cancelled() => break Err(Stop::ShuttingDown),
                () = tokio::time::sleep(delay) => {},
            }
            attempt = attempt.saturating_add(1);
        };
        // Healthy again once no record of this consumer is stuck (with several records in
        // flight, one record's success says nothing of another's).
        if stalled && self.stalled_records.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.health.set(self.number, None);
        }
        outcome
    }

    async fn dead_letter<M: Message>(&self, message: &M, reason: &str) {
        let topic = dead_letter(message.topic());
        let mut headers = message
            .headers()
            .map(from_record_headers)
            .unwrap_or_default();
        headers.insert("dlt.reason".into(), reason.to_owned());
        headers.insert("dlt.original.topic".into(), message.topic().to_owned());
        headers.insert(
            "dlt.original.partition".into(),
            message.partition().to_string(),
        );
        headers.insert("dlt.original.offset".into(), message.offset().to_string());
        let payload = message.payload().unwrap_or_default();
        // Keep trying: dropping a poison record on the floor would lose it for good.
        let mut delay = Duration::from_millis(200);
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic)
                .payload(payload)
                .headers(to_record_headers(&headers));
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            match self
                .dead_letters
                .send(record, Duration::from_secs(10))
                .await
            {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(%error, %topic, "cannot write the dead letter; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// Where a record sits (its partition and offset) and its key, as [`in_flight::InFlight`]
/// tracks it.
fn position(message: &OwnedMessage) -> (in_flight::PartitionId, i64, Option<Vec<u8>>) {
    (
        (message.topic().to_owned(), message.partition()),
        message.offset(),
        message.key().map(<[u8]>::to_vec),
    )
}

/// Why a record's handling stopped short of success.
enum Stop {
    /// It can never succeed: to the dead-letter topic, with this reason.
    DeadLetter(String),
    /// Shutdown came while a transient failure was being retried.
    ShuttingDown,
}

/// Whether the consumer is done with a record (its offset may advance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// Processed or dead-lettered.
    Finished,
    /// Left for a later delivery.
    Unfinished,
}

/// How far behind the end of its partitions a running consumer is.
#[derive(Clone)]
pub struct LagProbe {
    consumer: Arc<StreamConsumer>,
    /// Asks the broker for the partitions' offsets ([`KafkaConfig::offsets_client`]): not the
    /// consumer's own client, where the question would wait behind a fetch held at the broker.
    offsets: Arc<BaseConsumer>,
    group: String,
}

impl std::fmt::Debug for LagProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LagProbe")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// Records not yet processed in one assigned partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

impl LagProbe {
    /// Lag of every assigned partition: the partition's end minus the consumer's position
    /// (the whole partition when it has no position yet). The positions are the consumer's
    /// own state; the ends (and the starts, only for a partition without a position) are one
    /// `ListOffsets` request each. Blocks: call it off the async workers.
    pub fn measure(&self) -> anyhow::Result<Vec<PartitionLag>> {
        let positions = self.consumer.position().context("reading positions")?;
        if positions.count() == 0 {
            return Ok(Vec::new());
        }
        let ends = offsets_at(
            &self.offsets,
            &positions,
            rdkafka::Offset::End,
            PROBE_TIMEOUT,
        )
        .context("reading the partitions' ends")?;
        let unpositioned = positions
            .elements()
            .iter()
            .any(|element| !matches!(element.offset(), rdkafka::Offset::Offset(_)));
        let starts = if unpositioned {
            offsets_at(
                &self.offsets,
                &positions,
                rdkafka::Offset::Beginning,
                PROBE_TIMEOUT,
            )
            .context("reading the partitions' starts")?
        } else {
            HashMap::new()
        };
        positions
            .elements()
            .iter()
            .map(|element| {
                let key = (element.topic().to_owned(), element.partition());
                let high = *ends
                    .get(&key)
                    .with_context(|| format!("no end for {} partition {}", key.0, key.1))?;
                let next = match element.offset() {
                    rdkafka::Offset::Offset(offset) => offset,
                    _ => *starts
                        .get(&key)
                        .with_context(|| format!("no start for {} partition {}", key.0, key.1))?,
                };
                Ok(PartitionLag {
                    lag: (high - next).max(0),
                    topic: key.0,
                    partition: key.1,
                })
            })
            .collect()
    }
}

impl EventConsumer {
    /// A handle that measures this consumer's lag while it runs.
    pub fn lag_probe(&self) -> LagProbe {
        LagProbe {
            consumer: self.consumer.clone(),
            offsets: self.offsets.clone(),
            group: self.settings.group_id.clone(),
        }
    }
}

/// Exports `consumer_lag{group,topic,partition}` every 10 seconds until shutdown.
async fn report_lag(probe: LagProbe, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let measuring = probe.clone();
        match tokio::task::spawn_blocking(move || measuring.measure()).await {
            Ok(Ok(lags)) => {
                for lag in lags {
                    metrics::gauge!(
                        "consumer_lag",
                        &[
                            ("group", probe.group.clone()),
                            ("topic", lag.topic),
                            ("partition", lag.partition.to_string()),
                        ]
                    )
                    .set(lag.lag as f64);
                }
            }
            Ok(Err(error)) => tracing::debug!(error = format!("{error:#}"), "lag not measured"),
            Err(error) => tracing::debug!(%error, "lag task failed"),
        }
    }
}

/// Exponential backoff with up to 50% random jitter, so retries of many consumers spread out.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(10)));
    let jitter = rand::random::<f64>() * 0.5;
    exponential
        .mul_f64(1.0 + jitter)
        .min(Duration::from_secs(30))
}

/// Records that `consumer` processed `event_id`, in the caller's transaction. Returns `false`
/// when it already had: the caller then skips the effect (a redelivery). Expected table:
///
/// ```sql
/// CREATE TABLE processed_events (
///     consumer     TEXT NOT NULL,
///     event_id     UUID NOT NULL,
///     processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
///     PRIMARY KEY (consumer, event_id)
/// );
/// ```
#[cfg(feature = "postgres")]
pub async fn mark_processed(
    conn: &mut PgConnection,
    consumer: &str,
    event_id: Uuid,
) -> sqlx::Result<bool> {
    sqlx::query(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .execute(conn)
    .await
    .map(|result| result.rows_affected() == 1)
}

/// [`mark_processed`] for several events in one statement: records the ones `consumer` had
/// not processed and returns their ids (each once, in no particular order); the caller skips
/// the others.
#[cfg(feature = "postgres")]
pub async fn mark_processed_all(
    conn: &mut PgConnection,
    consumer: &str,
    event_ids: &[Uuid],
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "INSERT INTO processed_events (consumer, event_id) \
         SELECT $1, event_id FROM unnest($2::uuid[]) AS event_id \
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(consumer)
    .bind(event_ids)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_a_ceiling() {
        let base = Duration::from_millis(100);
        for attempt in 1..=4 {
            let expected = base * 2u32.pow(attempt - 1);
            let delay = backoff(base, attempt);
            assert!(
                delay >= expected && delay <= expected.mul_f64(1.5),
                "{attempt}: {delay:?}"
            );
        }
        assert_eq!(backoff(base, 40), Duration::from_secs(30));
    }
}
