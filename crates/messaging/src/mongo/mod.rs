//! The MongoDB side of "an event is published if and only if its state change committed"
//! (feature `mongo`): the single-document outbox ([`outbox`]) and the per-document write
//! locks ([`locks`]) that make read-modify-write safe on FerretDB.
//!
//! The local MongoDB-wire server (FerretDB 1.24) has no multi-document transactions, and it
//! does not apply a conditional update atomically (it queries, changes the document in Go and
//! writes it back by `_id` without re-checking the filter). The one operation it makes atomic
//! is an insert under a unique key. So a service keeps each change and its event in one
//! document, and every writer of a document (the service's own code and the relay removing
//! published events) first takes that document's lock, an insert under the document's id.
//! Both hold on real MongoDB as well. product-service and payment-service use this module.

pub mod locks;
pub mod outbox;

pub use locks::{DocumentLocks, LockGuard};
pub use outbox::{Outbox, OutboxRelay, PENDING_FLAG, PendingEvent, with_pending_event};

/// MongoDB's (and FerretDB's) duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// Whether `error` is a unique-index violation (an insert under a taken `_id`, say).
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(failure)) => failure.code == DUPLICATE_KEY,
        ErrorKind::Command(failure) => failure.code == DUPLICATE_KEY,
        _ => false,
    }
}
