//! PostgreSQL access: orders with their history, refund requests, and the product and
//! customer replicas.

pub mod customers;
pub mod orders;
pub mod products;
pub mod refunds;
