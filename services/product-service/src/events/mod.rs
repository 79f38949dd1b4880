//! What product-service publishes: `product.*` and `inventory.*` events through
//! single-document outboxes. (The `product.events` consumer of this service is the read
//! model's feed, `crate::catalog::feed`.)

pub mod outbox;

use contracts::topics::Topic;
use contracts::{CloudEvent, EventData};
use uuid::Uuid;

use outbox::PendingEvent;

/// The CloudEvents `source` of everything this service emits.
pub const EVENT_SOURCE: &str = "/product-service";

/// An event about `subject` (the product or order it is keyed by), ready for an outbox.
pub fn pending_event<T: EventData>(
    topics: &Topic,
    subject: Uuid,
    data: T,
) -> anyhow::Result<PendingEvent> {
    PendingEvent::new(
        topics,
        CloudEvent::new(EVENT_SOURCE, subject.to_string(), data),
    )
}
