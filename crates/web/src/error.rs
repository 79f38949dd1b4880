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
            // A dependency that is away (a database restarting, a broken connection) is not
            // a fault of this request: 503 with `Retry-After`, so clients and the gateway
            // retry instead of reporting a server error.
            ApiError::Internal(error) if dependency_unavailable(&error) => {
                tracing::warn!(error = format!("{error:#}"), "a dependency is unavailable");
                Problem::unavailable("a dependency of this service is unavailable; try again")
                    .into_response()
            }
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
            _ if sqlx_unavailable(&error) => {
                tracing::warn!(error = %error, "the database is unavailable");
                ApiError::Problem(Problem::unavailable(
                    "the database is unavailable; try again",
                ))
            }
            _ => ApiError::Internal(anyhow::Error::new(error).context("database error")),
        }
    }
}

/// Whether some cause in `error`'s chain says a dependency is away rather than that the
/// request failed: a lost or refused connection to PostgreSQL or MongoDB, or a server that is
/// shutting down or starting up.
pub fn dependency_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        #[cfg(feature = "sqlx")]
        if let Some(error) = cause.downcast_ref::<sqlx::Error>() {
            return sqlx_unavailable(error);
        }
        #[cfg(feature = "mongodb")]
        if let Some(error) = cause.downcast_ref::<mongodb::error::Error>() {
            return matches!(
                error.kind.as_ref(),
                mongodb::error::ErrorKind::ServerSelection { .. }
                    | mongodb::error::ErrorKind::Io(_)
                    | mongodb::error::ErrorKind::ConnectionPoolCleared { .. }
            );
        }
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| {
            use std::io::ErrorKind as K;
            matches!(
                e.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::BrokenPipe
                    | K::UnexpectedEof
                    | K::TimedOut
            )
        })
    })
}

/// PostgreSQL is away: no connection (refused, broken, pool closed), or the server says it is
/// shutting down, starting up or out of connections (SQLSTATE classes 08, 57P, 53300).
#[cfg(feature = "sqlx")]
fn sqlx_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

#[cfg(test)]
mod availability_tests {
    use axum::response::IntoResponse as _;

    use super::*;

    #[test]
    fn a_refused_connection_in_the_chain_answers_503_with_retry_after() {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = anyhow::Error::new(cause).context("loading the order");
        assert!(dependency_unavailable(&error));
        let response = ApiError::Internal(error).into_response();
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(http::header::RETRY_AFTER));
    }

    #[test]
    fn any_other_internal_error_stays_a_500() {
        let response = ApiError::Internal(anyhow::anyhow!("a bug")).into_response();
        assert_eq!(response.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    }
}
