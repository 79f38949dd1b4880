//! What payment-service publishes (`payment.*` through the single-document outbox of the
//! `payments` collection) and the `order.events` consumer that keeps its order replica.

pub mod orders;

use messaging::mongo::Outbox;
use mongodb::Database;

use crate::store::payments;

/// Payment documents carry their `payment.*` events in `pending_events`.
pub const PAYMENTS: Outbox = Outbox {
    collection: payments::COLLECTION,
};

/// How many events wait to be published (tests and diagnostics).
pub async fn backlog(db: &Database) -> anyhow::Result<usize> {
    messaging::mongo::outbox::backlog(db, &[PAYMENTS]).await
}
