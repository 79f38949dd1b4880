//! Integration tests of user-service against the real local stack (PostgreSQL, Kafka, Zipkin,
//! and the OIDC stand-in for Google):
//! each test gets its own database and topic prefix, so they run in parallel.

mod events;
mod helpers;
mod oidc;
mod platform;
mod profile;
mod register;
mod sessions;
mod shutdown;
