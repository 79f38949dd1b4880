//! Kafka plumbing shared by the services: the idempotent producer, topic set-up, trace context
//! in record headers, and the PostgreSQL transactional outbox with its relay.
//!
//! The outbox is how a PostgreSQL service keeps the rule "an event is published if and only if
//! its state change committed": the handler writes the event into the `outbox` table in the same
//! transaction as the change ([`outbox::enqueue`]); the [`outbox::OutboxRelay`] publishes
//! committed rows with an idempotent, acks=all producer and deletes them only after the broker
//! acknowledged them. A crash between the broker's acknowledgement and the delete can publish a
//! row twice, never zero times; consumers deduplicate on the CloudEvent id. MongoDB services
//! get the same guarantee from the single-document outbox in [`mongo`] (feature `mongo`). The
//! PostgreSQL outbox and consumer deduplication are behind feature `postgres`, so a
//! MongoDB-only service does not build sqlx.

pub mod consumer;
pub mod headers;
pub mod kafka;
#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "postgres")]
pub mod outbox;
pub mod producer;
pub mod publish;
#[cfg(feature = "test-support")]
pub mod testing;

pub use consumer::{
    ConsumerHealth, ConsumerSettings, Delivery, EventConsumer, Handler, HandlerError, LagProbe,
    PartitionLag,
};
#[cfg(feature = "postgres")]
pub use consumer::{mark_processed, mark_processed_all};
pub use kafka::{
    COMPACTED_TOPIC_CONFIG, CatchUpGate, GroupProbe, GroupProgress, KafkaConfig, TopicSpec,
};
#[cfg(feature = "postgres")]
pub use outbox::{OutboxRelay, enqueue};
