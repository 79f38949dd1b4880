//! psp-sim: a stand-in for a card payment provider (a third party), reached over HTTP.
//!
//! It imitates the parts of a Stripe-like API that payment-service depends on: a single
//! charge call with the provider's own idempotency key (`POST /v1/charges`), refunds
//! (`POST /v1/refunds`, idempotent too), and look-ups by charge id, by idempotency key (so a
//! caller whose request timed out can find out what happened) and by the caller's
//! `reference` (so tests can count the charges of an order). Test cards pick the outcome:
//! success, decline, insufficient funds, a provider error (5xx, nothing charged) and a slow
//! answer that arrives after the caller's timeout although the charge is made. Latency and a
//! random failure rate are configurable for load and chaos runs. Its state lives in its own
//! memory ([`ledger`]): it is a third party, not part of the platform's data.

pub mod api;
pub mod cards;
pub mod config;
pub mod ledger;
pub mod startup;

pub use startup::Application;
