//! The service's one error type: a problem for the client, the cause chain for the log.

use web::Problem;

use crate::charging::PayError;

pub use web::{ApiError, ApiResult};

impl From<PayError> for ApiError {
    fn from(error: PayError) -> Self {
        match error {
            PayError::NotFound(detail) => Problem::not_found(detail).into(),
            PayError::Conflict(detail) => Problem::conflict(detail).into(),
            PayError::KeyReused => Problem::invalid_field(
                "Idempotency-Key",
                "was used before with a different request; use a new key for a new payment",
            )
            .into(),
            PayError::Unavailable(detail) => Problem::unavailable(detail).into(),
            PayError::Internal(error) => ApiError::Internal(error),
        }
    }
}
