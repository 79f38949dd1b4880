//! PostgreSQL access for user-service. Functions take a connection so callers compose them in
//! one transaction with the outbox write.

pub mod oidc;
pub mod refresh_tokens;
pub mod throttle;
pub mod users;
