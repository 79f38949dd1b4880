//! MongoDB access for payment-service (database `payments`).
//!
//! Collections: `orders` (the replica of order-service's orders, written only by the
//! `order.events` consumer), `payments` (one document per payment: state, card brand and last
//! four, provider reference, and its pending events: the single-document outbox),
//! `payment_claims` (`_id` = order id: at most one payment in flight or succeeded per order)
//! and `payment_log` (append-only: every provider attempt and status change).
//!
//! Every write is one single-document operation, atomic with its filter: inserts under a
//! unique `_id` (payments, whose id is the idempotency check, and claims), a payment's changes
//! as `findOneAndUpdate` guarded by the revision they were decided on (see
//! [`payments::Payments::update_guarded`]), and upserts of the order replica. There are no
//! multi-document transactions: the payment, its claim and its log are separate writes,
//! ordered so that every crash point is recoverable.
//!
//! Every command the client sends is counted ([`commands`]): the writes per paid order are
//! what the MongoDB-wire server's throughput is spent on (issue 12).

pub mod commands;
pub mod orders;
pub mod payments;

use anyhow::Context as _;
use messaging::mongo::connect::START_PATIENCE;
pub use messaging::mongo::is_duplicate_key;
use mongodb::Database;
use mongodb::bson::doc;

use self::commands::CommandCounts;

/// Connects and checks the server answers (waiting a bounded while at start, as every
/// service does: `messaging::mongo::connect`), so a wrong URL fails at start, not on the first
/// request. Every command the client sends is counted in `commands`.
pub async fn connect(
    url: &str,
    database: &str,
    commands: &CommandCounts,
) -> anyhow::Result<Database> {
    messaging::mongo::connect::connect_with(
        url,
        database,
        "payment-service",
        START_PATIENCE,
        |options| {
            options.command_event_handler = Some(commands.handler());
        },
    )
    .await
}

pub use messaging::mongo::ping;

/// Creates the indexes the queries need; creating an existing index is a no-op, so every
/// replica runs this at start.
pub async fn ensure_indexes(db: &Database) -> anyhow::Result<()> {
    use mongodb::IndexModel;
    use mongodb::bson::Document;
    let indexes = [
        (payments::COLLECTION, doc! {"order_id": 1}),
        (payments::COLLECTION, doc! {"status": 1}),
        // The reconciler's pass asks every second for the payments still flagged for a refund
        // check (`Payments::refund_checks_due`). Through `status` alone that read every
        // succeeded payment ever stored (24 ms of the local server's CPU a second at 13,000
        // payments, growing with each); the flag is up only between a success and its check.
        (payments::COLLECTION, doc! {"refund_check": 1}),
        // The outbox relay's poll looks for payments with pending events.
        (
            payments::COLLECTION,
            doc! {messaging::mongo::PENDING_FLAG: 1},
        ),
        (payments::LOG, doc! {"payment_id": 1}),
        (payments::CLAIMS, doc! {"open": 1}),
    ];
    for (collection, keys) in indexes {
        db.collection::<Document>(collection)
            .create_index(IndexModel::builder().keys(keys).build())
            .await
            .with_context(|| format!("creating an index on {collection}"))?;
    }
    Ok(())
}
