//! What product-service publishes: `product.*` and `inventory.*` events through
//! single-document outboxes. (The `product.events` consumer of this service is the read
//! model's feed, `crate::catalog::feed`.)

pub mod outbox;
