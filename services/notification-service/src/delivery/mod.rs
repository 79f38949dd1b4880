//! The sending side: a bounded pool of senders works the message queue in PostgreSQL, over
//! SMTP (e-mail) and an SMS gateway's HTTP API, with retries, dead letters and metrics.

pub mod dead_letter;
pub mod dispatcher;
pub mod mail;
pub mod queue;
pub mod sms;

/// How one send attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt: the server is down, slow, or said "try later".
    #[error("{0}")]
    Transient(String),
    /// Will never work (a refused address, a rejected request); no more attempts.
    #[error("{0}")]
    Permanent(String),
}
