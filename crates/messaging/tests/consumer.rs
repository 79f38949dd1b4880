//! The consumer loop against the real broker: retries, dead letters, offsets after restart,
//! and the processed-event record against the real PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contracts::{CloudEvent, EventData};
use messaging::testing::read_topic;
use messaging::{ConsumerSettings, Delivery, EventConsumer, Handler, HandlerError, KafkaConfig};
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use sqlx::Connection as _;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

type TestResult = anyhow::Result<()>;

fn kafka() -> KafkaConfig {
    KafkaConfig::new(testkit::stack::kafka_brokers())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Thing {
    name: String,
    /// How the test handler should treat it: "ok", "permanent", or "flaky" (fails twice).
    behaviour: String,
}

impl EventData for Thing {
    const TYPE: &'static str = "test.thing.v1";
    const TOPIC: &'static str = "things";
}

/// Records what it processed and how often it was called per event.
#[derive(Clone, Default)]
struct Recorder {
    processed: Arc<Mutex<Vec<String>>>,
    attempts: Arc<Mutex<HashMap<String, u32>>>,
}

impl Recorder {
    fn processed(&self) -> Vec<String> {
        self.processed.lock().map(|p| p.clone()).unwrap_or_default()
    }
    fn attempts(&self, name: &str) -> u32 {
        self.attempts
            .lock()
            .map(|a| a.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// The [`Thing`] a record carries; one that does not decode is a permanent failure.
fn decode_thing(delivery: &Delivery) -> Result<Thing, HandlerError> {
    delivery
        .event
        .decode::<Thing>()
        .map(|event| event.data)
        .map_err(|error| HandlerError::Permanent(error.into()))
}

impl Handler for Recorder {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let thing = decode_thing(delivery)?;
        let attempt = {
            let mut attempts = self
                .attempts
                .lock()
                .map_err(|_| HandlerError::Permanent(anyhow::anyhow!("poisoned lock")))?;
            let entry = attempts.entry(thing.name.clone()).or_insert(0);
            *entry += 1;
            *entry
        };
        match thing.behaviour.as_str() {
            "permanent" => Err(HandlerError::Permanent(anyhow::anyhow!(
                "{} is invalid",
                thing.name
            ))),
            "flaky" if attempt < 3 => Err(HandlerError::Transient(anyhow::anyhow!("not yet"))),
            _ => {
                if let Ok(mut processed) = self.processed.lock() {
                    processed.push(thing.name);
                }
                Ok(())
            }
        }
    }
}

async fn produce(topic: &str, payloads: &[Vec<u8>]) -> TestResult {
    let producer = kafka().producer()?;
    for payload in payloads {
        // One key, one partition: the order below is the order consumed.
        let record = FutureRecord::to(topic).key("k").payload(payload);
        producer.send(record, Duration::from_secs(10)).await?;
    }
    Ok(())
}

fn thing(name: &str, behaviour: &str) -> anyhow::Result<Vec<u8>> {
    let event = CloudEvent::new(
        "/test",
        "k",
        Thing {
            name: name.into(),
            behaviour: behaviour.into(),
        },
    );
    Ok(serde_json::to_vec(&event.into_untyped()?)?)
}

fn settings(topic: &str, group: &str) -> ConsumerSettings {
    let mut settings = ConsumerSettings::new(group, vec![topic.to_owned()]);
    settings.base_backoff = Duration::from_millis(20);
    settings
}

async fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> TestResult {
    testkit::eventually(deadline, || {
        let reached = done();
        async move {
            anyhow::ensure!(reached, "condition not reached");
            Ok(())
        }
    })
    .await
}

/// Runs a consumer of `topic` in `group` with a fresh recorder until it has processed
/// `count` records, stops it (committing its offsets), and returns what it processed.
async fn consume_until(topic: &str, group: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let recorder = Recorder::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        EventConsumer::new(&kafka(), settings(topic, group))?.run(recorder.clone(), stop.clone()),
    );
    wait_until(Duration::from_secs(30), || {
        recorder.processed().len() >= count
    })
    .await?;
    stop.cancel();
    task.await?;
    Ok(recorder.processed())
}

#[tokio::test]
async fn failures_are_retried_or_dead_lettered_and_the_consumer_keeps_going() -> TestResult {
    let topic = format!("test-{}.things", Uuid::new_v4().simple());
    produce(
        &topic,
        &[
            thing("first", "ok")?,
            b"{ this is not a cloud event".to_vec(),
            thing("invalid", "permanent")?,
            thing("flaky", "flaky")?,
            thing("last", "ok")?,
        ],
    )
    .await?;

    let recorder = Recorder::default();
    let stop = CancellationToken::new();
    let consumer =
        EventConsumer::new(&kafka(), settings(&topic, &format!("g-{}", Uuid::new_v4())))?;
    let task = tokio::spawn(consumer.run(recorder.clone(), stop.clone()));
    wait_until(Duration::from_secs(30), || recorder.processed().len() == 3).await?;
    stop.cancel();
    task.await?;

    assert_eq!(
        recorder.processed(),
        ["first", "flaky", "last"],
        "in order, each once"
    );
    assert_eq!(
        recorder.attempts("flaky"),
        3,
        "two transient failures, then success"
    );
    assert_eq!(
        recorder.attempts("invalid"),
        1,
        "permanent failures are not retried"
    );

    let dead = read_topic(&kafka().brokers, &format!("{topic}.dlt")).await?;
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].payload, b"{ this is not a cloud event");
    assert!(dead[0].headers["dlt.reason"].contains("not a CloudEvent"));
    assert_eq!(dead[0].headers["dlt.original.topic"], topic);
    assert!(dead[1].headers["dlt.reason"].contains("invalid is invalid"));
    Ok(())
}

/// The regression of the MongoDB-wire outage: a dependency away for longer than the fast
/// retries take once made the consumer dead-letter the record (orders stayed `PENDING`). Now
/// the record is held, the consumer reports itself stalled, and once the dependency is back
/// the record is processed, in order, and nothing reaches the dead-letter topic.
#[tokio::test]
async fn a_transient_failure_holds_the_record_until_the_dependency_returns() -> TestResult {
    /// Fails transiently while `down` is set; records what it processed.
    #[derive(Clone, Default)]
    struct Dependent {
        down: Arc<std::sync::atomic::AtomicBool>,
        attempts: Arc<std::sync::atomic::AtomicU32>,
        recorder: Recorder,
    }
    impl Handler for Dependent {
        async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
            use std::sync::atomic::Ordering;
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(HandlerError::Transient(anyhow::anyhow!("dependency down")));
            }
            self.recorder.handle(delivery).await
        }
    }
    let topic = format!("test-{}.things", Uuid::new_v4().simple());
    produce(&topic, &[thing("held", "ok")?, thing("behind", "ok")?]).await?;
    let mut settings = settings(&topic, &format!("g-{}", Uuid::new_v4()));
    settings.max_attempts = 3;
    settings.max_backoff = Duration::from_millis(100);
    let handler = Dependent::default();
    handler
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let consumer = EventConsumer::new(&kafka(), settings)?;
    let health = consumer.health();
    assert!(health.check().is_ok(), "not stalled before it starts");
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(handler.clone(), stop.clone()));

    // Well past the attempts that used to end in the dead-letter topic: stalled, still held.
    wait_until(Duration::from_secs(30), || {
        health.check().is_err()
            && handler.attempts.load(std::sync::atomic::Ordering::SeqCst) >= 3 * 3
    })
    .await?;
    let stalled = health.check().err().unwrap_or_default();
    assert!(stalled.contains("dependency down"), "{stalled}");
    assert!(
        handler.recorder.processed().is_empty(),
        "nothing gets past the held record"
    );

    handler
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_until(Duration::from_secs(30), || {
        handler.recorder.processed().len() == 2
    })
    .await?;
    assert!(health.check().is_ok(), "recovered: {:?}", health.check());
    stop.cancel();
    task.await?;
    assert_eq!(handler.recorder.processed(), ["held", "behind"], "in order");
    let dead = read_topic(&kafka().brokers, &format!("{topic}.dlt")).await?;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    Ok(())
}

/// Shutdown while a record is being retried leaves it unacknowledged (it used to be
/// dead-lettered with the reason "shutting down"): the group's next consumer gets it.
#[tokio::test]
async fn a_record_retried_at_shutdown_is_delivered_again_not_dead_lettered() -> TestResult {
    struct AlwaysDown;
    impl Handler for AlwaysDown {
        async fn handle(&self, _: &Delivery) -> Result<(), HandlerError> {
            Err(HandlerError::Transient(anyhow::anyhow!("dependency down")))
        }
    }
    let topic = format!("test-{}.things", Uuid::new_v4().simple());
    let group = format!("g-{}", Uuid::new_v4());
    produce(&topic, &[thing("interrupted", "ok")?]).await?;
    let mut down_settings = settings(&topic, &group);
    down_settings.max_attempts = 2;
    let consumer = EventConsumer::new(&kafka(), down_settings)?;
    let health = consumer.health();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(AlwaysDown, stop.clone()));
    wait_until(Duration::from_secs(30), || health.check().is_err()).await?;
    stop.cancel();
    task.await?;

    assert_eq!(consume_until(&topic, &group, 1).await?, ["interrupted"]);
    let dead = read_topic(&kafka().brokers, &format!("{topic}.dlt")).await?;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    Ok(())
}

/// The probe's reading, taken off the async workers (its calls block on the broker).
async fn probe_progress(
    probe: &Arc<messaging::GroupProbe>,
) -> anyhow::Result<messaging::GroupProgress> {
    let probe = probe.clone();
    tokio::task::spawn_blocking(move || probe.progress()).await?
}

/// A group probe reads what a group committed and where the topic ends, from outside the
/// group: before the group's first commit it counts from the start, after it from the commit.
#[tokio::test]
async fn a_group_probe_sees_what_the_group_committed_and_where_the_topic_ends() -> TestResult {
    let topic = format!("test-{}.things", Uuid::new_v4().simple());
    let group = format!("g-{}", Uuid::new_v4());
    produce(&topic, &[thing("one", "ok")?, thing("two", "ok")?]).await?;
    let probe = Arc::new(kafka().group_probe(&group, &topic)?);

    let before = probe_progress(&probe).await?;
    assert_eq!((before.committed, before.end, before.lag()), (0, 2, 2));

    consume_until(&topic, &group, 2).await?;
    produce(&topic, &[thing("three", "ok")?]).await?;
    let after = probe_progress(&probe).await?;
    assert_eq!((after.committed, after.end, after.lag()), (2, 3, 1));
    Ok(())
}

/// Over several partitions the probe adds up each one's commit and end, read in one request
/// each for all partitions (an empty partition counts from its start; a record produced after
/// the first reading is seen through the partition list the probe kept).
#[tokio::test]
async fn a_group_probe_adds_up_every_partition_of_the_topic() -> TestResult {
    let topic = format!("test-{}.things", Uuid::new_v4().simple());
    let group = format!("g-{}", Uuid::new_v4());
    kafka()
        .ensure_topics(&[messaging::TopicSpec {
            name: topic.clone(),
            partitions: 3,
            compacted: false,
        }])
        .await?;
    let producer = kafka().producer()?;
    let send_to = |partition: i32, name: &'static str| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            let payload = thing(name, "ok")?;
            let record = FutureRecord::to(&topic)
                .partition(partition)
                .key(name)
                .payload(&payload);
            producer.send(record, Duration::from_secs(10)).await?;
            anyhow::Ok(())
        }
    };
    for (partition, name) in [(0, "a"), (0, "b"), (1, "c"), (1, "d"), (1, "e")] {
        send_to(partition, name).await?;
    }
    let probe = Arc::new(kafka().group_probe(&group, &topic)?);

    let before = probe_progress(&probe).await?;
    assert_eq!((before.committed, before.end, before.lag()), (0, 5, 5));

    consume_until(&topic, &group, 5).await?;
    send_to(2, "f").await?;
    let after = probe_progress(&probe).await?;
    assert_eq!((after.committed, after.end, after.lag()), (5, 6, 1));
    Ok(())
}

/// The gate of a replica over two topics: red while its group has not committed both topics'
/// records as they stood at the first check, then green for good, and it lets its probes go.
#[tokio::test]
async fn a_catch_up_gate_opens_once_the_group_has_read_every_topic_and_drops_its_probes()
-> TestResult {
    let prefix = format!("test-{}", Uuid::new_v4().simple());
    let (things, others) = (format!("{prefix}.things"), format!("{prefix}.others"));
    let group = format!("g-{}", Uuid::new_v4());
    produce(&things, &[thing("one", "ok")?, thing("two", "ok")?]).await?;
    produce(&others, &[thing("three", "ok")?]).await?;
    let settings = ConsumerSettings::new(&group, vec![things.clone(), others.clone()]);
    let gate = kafka().catch_up_gate(&settings)?;

    let first = gate.check().await.err().unwrap_or_default();
    assert!(first.contains("0 of 3 records"), "{first}");
    assert!(gate.is_probing());
    consume_until(&things, &group, 2).await?;
    let halfway = gate.check().await.err().unwrap_or_default();
    assert!(halfway.contains("2 of 3 records"), "{halfway}");

    consume_until(&others, &group, 1).await?;
    assert_eq!(gate.check().await, Ok(()));
    assert!(!gate.is_probing(), "the probes are let go once caught up");
    produce(&things, &[thing("four", "ok")?]).await?;
    assert_eq!(
        gate.check().await,
        Ok(()),
        "later lag does not close it again"
    );
    Ok(())
}

#[tokio::test]
async fn a_restarted_consumer_resumes_after_what_it_processed() -> TestResult {
    let topic = format!("test-{}.things", Uuid::new_v4().simple());
    let group = format!("g-{}", Uuid::new_v4());
    produce(&topic, &[thing("one", "ok")?, thing("two", "ok")?]).await?;

    consume_until(&topic, &group, 2).await?;

    produce(&topic, &[thing("three", "ok")?]).await?;
    assert_eq!(
        consume_until(&topic, &group, 1).await?,
        ["three"],
        "committed records are not replayed"
    );
    Ok(())
}

#[tokio::test]
async fn an_event_is_marked_processed_once_per_consumer() -> TestResult {
    let mut conn = sqlx::PgConnection::connect(&testkit::stack::admin_database_url()).await?;
    sqlx::query(
        "CREATE TEMP TABLE processed_events (consumer TEXT NOT NULL, event_id UUID NOT NULL,
         processed_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (consumer, event_id))",
    )
    .execute(&mut conn)
    .await?;
    let event = Uuid::new_v4();
    assert!(messaging::mark_processed(&mut conn, "orders", event).await?);
    assert!(
        !messaging::mark_processed(&mut conn, "orders", event).await?,
        "a redelivery"
    );
    assert!(
        messaging::mark_processed(&mut conn, "notifications", event).await?,
        "another consumer"
    );
    Ok(())
}

/// Waits at a gate before each record, so the test controls how far the consumer gets.
struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
    done: Arc<std::sync::atomic::AtomicUsize>,
}

impl Handler for Gated {
    async fn handle(&self, _: &Delivery) -> Result<(), HandlerError> {
        self.gate
            .acquire()
            .await
            .map_err(|e| HandlerError::Permanent(e.into()))?
            .forget();
        self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn lag_counts_what_is_left_and_reaches_zero_when_caught_up() -> TestResult {
    let topic = format!("test-{}.things", Uuid::new_v4().simple());
    produce(
        &topic,
        &[thing("a", "ok")?, thing("b", "ok")?, thing("c", "ok")?],
    )
    .await?;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let consumer =
        EventConsumer::new(&kafka(), settings(&topic, &format!("g-{}", Uuid::new_v4())))?;
    let probe = consumer.lag_probe();
    let stop = CancellationToken::new();
    let handler = Gated {
        gate: gate.clone(),
        done: done.clone(),
    };
    let task = tokio::spawn(consumer.run(handler, stop.clone()));

    let total_lag = |probe: messaging::LagProbe| async move {
        let lags = tokio::task::spawn_blocking(move || probe.measure()).await??;
        anyhow::Ok(
            lags.iter()
                .filter(|l| l.topic.ends_with(".things"))
                .map(|l| l.lag)
                .sum::<i64>(),
        )
    };
    // The first record is in the handler, held at the gate: two are left behind it.
    testkit::eventually(Duration::from_secs(30), || async {
        anyhow::ensure!(total_lag(probe.clone()).await? == 2, "lag is not 2 yet");
        Ok(())
    })
    .await?;
    gate.add_permits(3);
    wait_until(Duration::from_secs(30), || {
        done.load(std::sync::atomic::Ordering::SeqCst) == 3
    })
    .await?;
    testkit::eventually(Duration::from_secs(30), || async {
        anyhow::ensure!(total_lag(probe.clone()).await? == 0, "lag is not 0 yet");
        Ok(())
    })
    .await?;
    stop.cancel();
    task.await?;
    Ok(())
}

/// Handles [`Thing`]s slowly enough for records to overlap, recording per key the order it
/// finished them and how many ran at once; behaviour "stuck" fails transiently every time.
#[derive(Clone, Default)]
struct SideBySide {
    finished: Arc<Mutex<Vec<(String, String)>>>,
    running: Arc<std::sync::atomic::AtomicUsize>,
    most_at_once: Arc<std::sync::atomic::AtomicUsize>,
    stuck_attempts: Arc<std::sync::atomic::AtomicUsize>,
}

impl SideBySide {
    fn finished(&self) -> Vec<(String, String)> {
        self.finished.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn of_key(&self, key: &str) -> Vec<String> {
        self.finished()
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, name)| name)
            .collect()
    }
}

impl Handler for SideBySide {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        use std::sync::atomic::Ordering;
        let thing = decode_thing(delivery)?;
        if thing.behaviour == "stuck" {
            self.stuck_attempts.fetch_add(1, Ordering::SeqCst);
            return Err(HandlerError::Transient(anyhow::anyhow!(
                "{} is stuck",
                thing.name
            )));
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(15)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut finished) = self.finished.lock() {
            finished.push((delivery.key.clone().unwrap_or_default(), thing.name));
        }
        Ok(())
    }
}

/// Produces `(key, payload)` records, all to partition 0 so their offsets interleave.
async fn produce_keyed(topic: &str, records: &[(String, Vec<u8>)]) -> TestResult {
    let producer = kafka().producer()?;
    for (key, payload) in records {
        let record = FutureRecord::to(topic)
            .partition(0)
            .key(key.as_str())
            .payload(payload);
        producer.send(record, Duration::from_secs(10)).await?;
    }
    Ok(())
}

/// With several records in flight, records of different keys run side by side while each
/// key's records still finish one after another in partition order, each once.
#[tokio::test]
async fn records_in_flight_side_by_side_keep_each_keys_order() -> TestResult {
    let topic = format!("test-{}.things", Uuid::new_v4().simple());
    let keys = ["k0", "k1", "k2", "k3"];
    let mut records = Vec::new();
    for n in 0..6 {
        for key in keys {
            records.push((key.to_owned(), thing(&format!("{key}-{n}"), "ok")?));
        }
    }
    produce_keyed(&topic, &records).await?;
    let handler = SideBySide::default();
    let stop = CancellationToken::new();
    let consumer = EventConsumer::new(
        &kafka(),
        settings(&topic, &format!("g-{}", Uuid::new_v4())).with_in_flight(8),
    )?;
    let task = tokio::spawn(consumer.run(handler.clone(), stop.clone()));
    wait_until(Duration::from_secs(30), || handler.finished().len() >= 24).await?;
    stop.cancel();
    task.await?;
    assert_eq!(handler.finished().len(), 24, "each record once");
    for key in keys {
        let expected: Vec<String> = (0..6).map(|n| format!("{key}-{n}")).collect();
        assert_eq!(handler.of_key(key), expected, "{key} in order");
    }
    let most = handler
        .most_at_once
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        most > 1,
        "records ran side by side (at most {most} at once)"
    );
    assert!(most <= 4, "never two of one key at once: {most} for 4 keys");
    Ok(())
}

/// A consumer stopped while an early record of a batch keeps failing acknowledges nothing from
/// that record on, though later records of other keys finished: the group's next consumer
/// gets the stuck record and everything after it again, so nothing is skipped.
#[tokio::test]
async fn a_consumer_stopped_mid_batch_acknowledges_only_the_finished_prefix() -> TestResult {
    let topic = format!("test-{}.things", Uuid::new_v4().simple());
    let group = format!("g-{}", Uuid::new_v4());
    produce_keyed(
        &topic,
        &[
            ("a".to_owned(), thing("first", "ok")?),
            ("s".to_owned(), thing("stuck", "stuck")?),
            ("b".to_owned(), thing("after-b", "ok")?),
            ("c".to_owned(), thing("after-c", "ok")?),
        ],
    )
    .await?;
    let handler = SideBySide::default();
    let stop = CancellationToken::new();
    let consumer = EventConsumer::new(&kafka(), settings(&topic, &group).with_in_flight(8))?;
    let health = consumer.health();
    let task = tokio::spawn(consumer.run(handler.clone(), stop.clone()));
    wait_until(Duration::from_secs(30), || {
        handler.finished().len() >= 3
            && handler
                .stuck_attempts
                .load(std::sync::atomic::Ordering::SeqCst)
                >= 5
    })
    .await?;
    assert!(
        health.check().is_err(),
        "the stuck record shows in readiness"
    );
    stop.cancel();
    task.await?;

    // The next consumer of the group: the stuck record (fine now) and what followed it.
    let recorder = Recorder::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        EventConsumer::new(&kafka(), settings(&topic, &group).with_in_flight(8))?
            .run(recorder.clone(), stop.clone()),
    );
    wait_until(Duration::from_secs(30), || recorder.processed().len() >= 3).await?;
    stop.cancel();
    task.await?;
    let mut replayed = recorder.processed();
    replayed.sort();
    assert_eq!(
        replayed,
        ["after-b", "after-c", "stuck"],
        "from the stuck record on, nothing before it"
    );
    Ok(())
}
