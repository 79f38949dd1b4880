//! The service's one error type is the platform's (`web::ApiError`): a problem for the
//! client, the cause chain for the log. Placing's errors map onto it here.

use web::Problem;

use crate::placing::PlaceError;

pub use web::{ApiError, ApiResult};

impl From<PlaceError> for ApiError {
    fn from(error: PlaceError) -> Self {
        match error {
            PlaceError::KeyReused => Problem::invalid_field(
                "Idempotency-Key",
                "was already used for an order with a different body",
            )
            .into(),
            PlaceError::Invalid(errors) => Problem::validation(errors).into(),
            PlaceError::TooManyOpen(refused) => super::orders::too_many_open_orders(refused).into(),
            PlaceError::Database(error) => error.into(),
            PlaceError::Internal(error) => ApiError::Internal(error),
        }
    }
}
