//! product-service's single-document outboxes: product documents carry their `product.*`
//! events, and each order's reservation document its `inventory.*` events, in
//! `pending_events`. The relay and its guarantees are [`messaging::mongo::outbox`]; one relay
//! runs per collection.

pub use messaging::mongo::outbox::{Outbox, OutboxRelay, PendingEvent};
use mongodb::Database;

use crate::store::{products, reservations};

/// Product documents: `product.*` events.
pub const PRODUCTS: Outbox = Outbox {
    collection: products::COLLECTION,
};
/// The reservation of each order: `inventory.*` events.
pub const RESERVATIONS: Outbox = Outbox {
    collection: reservations::COLLECTION,
};
/// Every outbox collection of the service.
pub const ALL: [Outbox; 2] = [PRODUCTS, RESERVATIONS];

/// How many events wait in `db`, over every outbox collection (tests and diagnostics).
pub async fn backlog(db: &Database) -> anyhow::Result<usize> {
    messaging::mongo::outbox::backlog(db, &ALL).await
}
