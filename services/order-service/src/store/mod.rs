//! PostgreSQL access: orders with their history, and the product replica.

pub mod orders;
pub mod products;
