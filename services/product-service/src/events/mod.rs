//! What product-service publishes: `product.*` and `inventory.*` events through
//! single-document outboxes.

pub mod outbox;
