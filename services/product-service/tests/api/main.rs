//! Integration tests of product-service against the real local stack (MongoDB and
//! Kafka): each test gets its own database and topic prefix, so they run in parallel.

mod access;
mod catalog;
mod events;
mod helpers;
mod inventory;
mod judged;
mod listing;
mod platform;
mod products;
mod search;
mod shutdown;
mod stock;
