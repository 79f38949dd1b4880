//! payment-service: takes card payments for orders against the payment provider (psp-sim),
//! at most one successful payment per order, and publishes `payment.*` events.
//!
//! It owns the MongoDB database `payments`. It knows orders from
//! `order.events` (a replica: owner, total, status), checks that the order is the caller's and
//! awaiting payment, claims the order (an insert under the order id: the database, not only
//! the code, allows one payment in flight or succeeded per order), charges the card through
//! the provider with timeouts, safe retries under the provider's idempotency key and a circuit
//! breaker, and records the outcome with its event in one document update (the single-document
//! outbox of `messaging::mongo`). A provider timeout leaves the payment `pending`; the
//! [`reconciler`] asks the provider until it knows the outcome. Charges that succeed for a
//! cancelled order are refunded ([`refunds`]), and so are paid orders whose refund request was
//! approved: the `refund-payment` step of the workflow engine's `refund` process
//! ([`refund_requests`]). Card numbers and CVCs are never stored or
//! logged: only brand and last four digits.

pub mod api;
pub mod charging;
pub mod config;
pub mod domain;
pub mod events;
pub mod psp;
pub mod reconciler;
pub mod refund_requests;
pub mod refunds;
pub mod startup;
pub mod store;

pub use startup::Application;
