//! The shared producer against the real broker: records are acknowledged in order and read
//! back, a refused record fails at once, and a dropped producer takes its delivery thread
//! with it. A test binary of its own, so the threads it counts are its own.

use std::time::{Duration, Instant};

use messaging::testing::read_topic;
use messaging::{KafkaConfig, TopicSpec};
use rdkafka::producer::FutureRecord;
use uuid::Uuid;

type TestResult = anyhow::Result<()>;

/// Threads of this process named as the producer names its delivery thread.
fn delivery_threads() -> anyhow::Result<usize> {
    let mut count = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let name = std::fs::read_to_string(task?.path().join("comm")).unwrap_or_default();
        if name.trim_end() == "kafka-delivery" {
            count += 1;
        }
    }
    Ok(count)
}

#[tokio::test]
async fn records_are_acknowledged_and_a_dropped_producer_stops_its_delivery_thread() -> TestResult {
    let brokers = testkit::stack::kafka_brokers();
    let topic = format!("test.producer.{}", Uuid::new_v4().simple());
    let kafka = KafkaConfig::new(brokers.clone());
    kafka
        .ensure_topics(&[TopicSpec {
            name: topic.clone(),
            partitions: 1,
            compacted: false,
        }])
        .await?;
    let producer = kafka.producer()?;
    // The thread names itself once it runs.
    threads_become(1).await?;

    // Pipelined, then awaited: each future resolves with the broker's acknowledgement.
    let mut deliveries = Vec::new();
    for n in 0..20 {
        let payload = format!("record {n}");
        deliveries.push(
            producer.send_result(
                FutureRecord::to(&topic)
                    .key("k")
                    .payload(payload.as_bytes()),
            )?,
        );
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer
        .send(
            FutureRecord::to(&topic).key("k").payload("last"),
            Duration::from_secs(10),
        )
        .await?;
    let read: Vec<String> = read_topic(&brokers, &topic)
        .await?
        .iter()
        .map(|record| String::from_utf8_lossy(&record.payload).into_owned())
        .collect();
    let mut expected: Vec<String> = (0..20).map(|n| format!("record {n}")).collect();
    expected.push("last".to_owned());
    assert_eq!(read, expected, "acknowledged records, in the order sent");

    // A record the producer refuses (larger than `message.max.bytes`) fails at once.
    let huge = vec![b'x'; 2_000_000];
    let refused = producer.send_result(FutureRecord::to(&topic).key("k").payload(&huge[..]));
    assert!(refused.is_err(), "a 2 MB record was accepted");

    drop(producer);
    drop(kafka);
    threads_become(0).await
}

/// Waits (up to 10 s) until this process has `count` delivery threads.
async fn threads_become(count: usize) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let threads = delivery_threads()?;
        if threads == count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{threads} delivery threads, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
