//! What order-service does in the background: the product and customer replicas, the saga's
//! reactions to inventory and payment events, and the expiry job.

pub mod customers;
pub mod expiry;
pub mod replica;
pub mod saga;

use contracts::{CloudEvent, EventData};
use messaging::HandlerError;

/// Decodes an event's data; a record that does not decode never will (dead-lettered).
pub(crate) fn decode<T: EventData>(event: &CloudEvent) -> Result<T, HandlerError> {
    event
        .decode::<T>()
        .map(|event| event.data)
        .map_err(|error| HandlerError::Permanent(error.into()))
}

/// Database trouble is worth retrying.
pub(crate) fn transient(error: impl Into<anyhow::Error>) -> HandlerError {
    HandlerError::Transient(error.into())
}
