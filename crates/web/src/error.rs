//! A handler's one error type: a problem for the client, or an internal error whose cause
//! chain goes to the log while the client gets a generic 500 with the trace id. Services add
//! `From` impls for their own error types (allowed: the source type is theirs).

use axum::response::{IntoResponse, Response};

use crate::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An answer meant for the client (4xx, or a 503 that says to retry).
    #[error("{0}")]
    Problem(#[from] Problem),
    /// Anything else: logged in full, answered with a generic 500 and the trace id.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
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

/// A pool with no free connection within its timeout means "busy, retry", not a server fault;
/// like every 503 it says when to retry (a burst of logins for one e-mail, all queueing on its
/// throttle row, answered 503 without `Retry-After` in the OWASP tests).
#[cfg(feature = "sqlx")]
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut => {
                let mut problem = Problem::unavailable("the database is busy; try again");
                problem.retry_after_secs = Some(1);
                ApiError::Problem(problem)
            }
            _ => ApiError::Internal(anyhow::Error::new(error).context("database error")),
        }
    }
}
