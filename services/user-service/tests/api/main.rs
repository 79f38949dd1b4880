//! Integration tests of user-service against the real local stack (PostgreSQL, Kafka, Zipkin):
//! each test gets its own database and topic prefix, so they run in parallel.

mod events;
mod helpers;
mod platform;
mod profile;
mod register;
mod sessions;
mod shutdown;
