//! What product-service publishes (`product.*` and `inventory.*` events through
//! single-document outboxes) and the `product.events` consumer that keeps replica caches fresh.

pub mod cache;
pub mod outbox;
