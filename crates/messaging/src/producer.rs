//! The Kafka producer every service shares: librdkafka's producer, its delivery reports
//! served by a thread of this crate.
//!
//! rdkafka's `FutureProducer` serves them on a thread that asks for them in waits of 100 ms,
//! and rdkafka 0.38 and 0.39 (the newest) end every such wait in a spin: it hands librdkafka
//! the time left rounded down to whole milliseconds, so for the last millisecond it asks
//! "anything now?" again and again until its deadline passes. Measured on an idle stack,
//! that thread took 8-9 ms of CPU a second in every service (perf: two thirds of it reading
//! the clock inside the wait loop), 40 ms a second over the five services, at any load. Here
//! the thread waits a second at a time, so the same rounding costs a hundredth of that, and a
//! delivery report still wakes it at once (the wait ends when one arrives).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureRecord, Producer as _, ProducerContext,
};
use tokio::sync::oneshot;

/// How long the delivery thread waits for reports in one call. Reports end a wait as soon as
/// they arrive; this only bounds how long a dropped producer's thread lingers.
const DELIVERY_WAIT: Duration = Duration::from_secs(1);

/// How long [`Producer::send`] waits between attempts while librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(50);

/// The outcome of one record: acknowledged by the broker, or why not.
type Outcome = Result<(), KafkaError>;

/// Routes each delivery report to the future of its record.
pub struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<oneshot::Sender<Outcome>>;

    fn delivery(&self, result: &DeliveryResult<'_>, sender: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.clone()),
        };
        // The sender's caller may have stopped waiting; nothing else needs the report.
        let _ = sender.send(outcome);
    }
}

/// A Kafka producer (cheap to clone; clones share one librdkafka producer).
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

struct Shared {
    producer: Arc<BaseProducer<Deliveries>>,
    /// Tells the delivery thread to stop once the last clone is dropped.
    stop: Arc<AtomicBool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The thread ends within one wait and drops the producer with it, which hands any
        // record still queued back as failed (librdkafka's purge) instead of blocking here.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    /// A producer with `config`, and the thread that serves its delivery reports.
    pub fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<Deliveries>> =
            Arc::new(config.create_with_context(Deliveries)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (served, stopped) = (Arc::clone(&producer), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("kafka-delivery".to_owned())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    served.poll(DELIVERY_WAIT);
                }
            })
            .map_err(|error| {
                KafkaError::ClientCreation(format!("starting the delivery thread: {error}"))
            })?;
        Ok(Self {
            shared: Arc::new(Shared { producer, stop }),
        })
    }

    /// Queues `record`; the future resolves when the broker acknowledged it or it failed.
    /// Fails at once when librdkafka refuses it (its queue full, the record too large).
    pub fn send_result<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
    ) -> Result<DeliveryFuture, KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.queue(record).map_err(|(error, _)| error)
    }

    /// [`Producer::send_result`], waiting up to `queue_timeout` for room while librdkafka's
    /// queue is full, then for the broker's acknowledgement.
    pub async fn send<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let started = Instant::now();
        loop {
            match self.queue(record) {
                Ok(delivery) => return delivery.await,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if started.elapsed() < queue_timeout =>
                {
                    record = returned;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// The librdkafka client (metadata requests).
    pub fn client(&self) -> &Client<Deliveries> {
        self.shared.producer.client()
    }

    fn queue<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (sender, receiver) = oneshot::channel();
        let base = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(sender),
        };
        match self.shared.producer.send(base) {
            Ok(()) => Ok(DeliveryFuture(receiver)),
            Err((error, base)) => Err((
                error,
                FutureRecord {
                    topic: base.topic,
                    partition: base.partition,
                    payload: base.payload,
                    key: base.key,
                    timestamp: base.timestamp,
                    headers: base.headers,
                },
            )),
        }
    }
}

/// The broker's answer about one record: `Ok` once acknowledged; `KafkaError::Canceled` when
/// the producer went away before a report came.
pub struct DeliveryFuture(oneshot::Receiver<Outcome>);

impl Future for DeliveryFuture {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|received| received.unwrap_or(Err(KafkaError::Canceled)))
    }
}
