//! MongoDB access for product-service.
//!
//! Every write is one single-document update, atomic with its filter: a product changes only
//! through `findOneAndUpdate` guarded by the `version` it was read at (plus the stock condition
//! the change relies on), a reservation only through an update guarded by the status it
//! leaves, and a new document is an insert under a unique key (the product's SKU, the order
//! id). A writer whose filter no longer matches lost a race and decides again on a fresh read
//! (`messaging::mongo::ConflictRetry`). There are no multi-document transactions: each change
//! carries its event in the same document (the single-document outbox, `events::outbox`).
//! See the service README.

pub mod products;
pub mod reservations;

pub use messaging::mongo::is_duplicate_key;

use mongodb::Database;

/// Connects and checks the server answers (waiting a bounded while at start), so a wrong
/// URL fails at start, not on the first request.
pub async fn connect(url: &str, database: &str) -> anyhow::Result<Database> {
    messaging::mongo::connect(url, database, "product-service").await
}

pub use messaging::mongo::ping;
