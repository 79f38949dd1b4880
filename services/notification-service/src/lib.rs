//! notification-service: tells customers what happened, by e-mail and SMS, exactly once per
//! event and channel.
//!
//! It consumes `user.events` (a replica of contacts, and the welcome mail), `order.events`
//! and `payment.events` (order received, receipt, payment failed, order rejected, order
//! cancelled). It also works the `refund` process's reminder step on the workflow engine: a
//! refund request nobody approved in time is mailed to the admins. Each event becomes
//! rendered messages in PostgreSQL (database `notifications`) in the same transaction that records the event as processed; a bounded pool of senders
//! then delivers them over SMTP and an SMS gateway's HTTP API, in parallel across users and
//! in order per user, with retries, dead letters, metrics and a span per send that continues
//! the event's trace. Users read their history and set their channel preferences over HTTP.
//! `main.rs` is a thin shell over [`Application`], which tests start on port 0 against their
//! own database and topics.

pub mod api;
pub mod approval_reminders;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod events;
pub mod startup;
pub mod store;

pub use startup::Application;
