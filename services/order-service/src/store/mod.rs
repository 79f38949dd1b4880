//! PostgreSQL access: orders with their history, refund requests, and the product replica.

pub mod orders;
pub mod products;
pub mod refunds;
