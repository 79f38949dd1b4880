//! The platform's event contracts, defined once and shared by every producer and consumer.
//!
//! Events travel on Kafka as CloudEvents 1.0 in structured JSON mode ([`CloudEvent`]); the Kafka
//! key is the aggregate id (the envelope's `subject`) and W3C trace context rides in the record
//! headers, not in the envelope. Each event's `data` is a plain struct here, tied to its `type`
//! string and topic by the [`EventData`] trait, so a producer cannot put an event on the wrong
//! topic and a consumer decodes by type. Changes to a `data` struct must stay backward
//! compatible (only optional fields added); anything else gets a new `.vN` type.

pub mod envelope;
pub mod inventory;
pub mod order;
pub mod payment;
pub mod product;
pub mod topics;
pub mod user;

pub use envelope::{CloudEvent, EnvelopeError, EventData};
