//! order-service: orders and the checkout saga for the ferroshop platform.
//!
//! It owns the PostgreSQL database `orders`. An order is priced from a local replica of the
//! catalog (built from `product.events`), stored `PENDING` with its `order.created` event in
//! one transaction (transactional outbox; [`placing`]), and then moved by the saga: `inventory.*` events
//! from product-service and `payment.*` events from payment-service, each applied exactly once
//! (processed-event table) through the pure state machine in [`domain::status`]; every change
//! is announced to the clients that wait on it ([`status_feed`], Server-Sent Events). An expiry job,
//! safe with any number of replicas, cancels orders that wait too long. Refund requests run
//! as processes on the workflow engine ([`refunds`]), whose order steps this service works.
//! Every new order is classified by the decision table `order-risk` ([`risk`]); a risky one
//! waits `REVIEW` for an admin in the `order-review` process ([`review`]). While the saga falls
//! behind, new orders are refused with 503 at once ([`admission`]). `main.rs` is a thin
//! shell over [`Application`], which tests start on port 0 against their own database and
//! topics.

pub mod admission;
pub mod api;
pub mod config;
pub mod domain;
pub mod events;
pub mod placing;
pub mod refunds;
pub mod review;
pub mod risk;
pub mod saga;
pub mod startup;
pub mod status_feed;
pub mod store;

pub use startup::Application;
