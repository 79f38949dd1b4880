//! What product-service publishes: `product.*` events through a single-document outbox.

pub mod outbox;
