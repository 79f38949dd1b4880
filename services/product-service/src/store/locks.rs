//! Per-document write locks of product-service's collections (products, and the reservations
//! of orders). The mechanism, and why FerretDB needs it, is [`messaging::mongo::locks`].

pub use messaging::mongo::locks::{DocumentLocks, LEASE, LockGuard};
use mongodb::Database;

/// Locks of `products` documents.
pub const COLLECTION: &str = "product_locks";
/// Locks of `reservations` documents.
pub const RESERVATION_LOCKS: &str = "reservation_locks";

/// The locks of products.
pub fn products(db: &Database) -> DocumentLocks {
    DocumentLocks::new(db, COLLECTION)
}
