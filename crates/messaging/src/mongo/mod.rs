//! The MongoDB side of "an event is published if and only if its state change committed"
//! (feature `mongo`): the single-document outbox and its relay ([`outbox`]), and the bounded
//! retry of a guarded write that lost a race ([`conflict`]), and the connection itself
//! ([`connect`]).
//!
//! A service keeps each change and its event in one document, so every write is one
//! single-document update, which MongoDB applies atomically together with its filter. The
//! filter states what the change was decided on (the `version` or `revision` read, the status
//! it leaves, the stock it needs): a writer that reads, decides and then updates under that
//! filter either changes the document it read, or changes nothing because another writer got
//! there first, in which case it reads again and decides again ([`ConflictRetry`]). The relay
//! claims a document with a guarded update of its own and removes what it published by event
//! id; it never touches the fields writers decide on, and writers never wait for it. product-service and payment-service use this module. (Until the local
//! server was replaced, it was FerretDB 1.24, whose conditional updates were not atomic, and
//! every writer took a lease lock per document instead.)

pub mod conflict;
pub mod connect;
pub mod outbox;

pub use conflict::ConflictRetry;
pub use connect::{connect, ping};
pub use outbox::{Outbox, OutboxRelay, PENDING_FLAG, PendingEvent, RelayWake, with_pending_event};

/// MongoDB's duplicate-key error code.
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
