//! product-service: the catalog of the ferroshop platform.
//!
//! It owns the MongoDB database `catalog`: public search and product pages with keyset
//! pagination, admin writes with optimistic concurrency, and stock adjustments that never take
//! stock below zero. Every change is one atomic update of the product document that also
//! stores the change's event (a single-document outbox); a relay publishes those events on the
//! compacted `product.events` topic, each carrying the full product snapshot. An
//! `order.events` consumer reserves, commits and releases stock for orders and publishes
//! `inventory.*` events ([`inventory`]); the `restock` step of the workflow engine's `refund`
//! process returns a refunded order's goods to stock ([`restock`]). Every read (product pages, listings, full-text search
//! in Chinese and English with facets, suggest) is served from an in-memory read model fed by
//! `product.events` ([`catalog`]). `main.rs` is a thin shell over [`Application`], which
//! tests start on port 0 against their own database and topics.

pub mod api;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod events;
pub mod inventory;
pub mod restock;
pub mod startup;
pub mod store;

pub use startup::Application;
