//! The service's one error type: a problem for the client, the cause chain for the log.

use axum::response::{IntoResponse, Response};
use web::Problem;

use crate::charging::PayError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An answer meant for the client (4xx, or a 503 that says to retry).
    #[error("{0}")]
    Problem(#[from] Problem),
    /// Anything else: logged in full, answered with a generic 500 and the trace id.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Problem(problem) => problem.into_response(),
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                Problem::internal().into_response()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
