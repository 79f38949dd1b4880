//! The service's one error type: a problem for the client, the cause chain for the log.

use web::Problem;

use crate::domain::password::PasswordError;

pub use web::{ApiError, ApiResult};

impl From<PasswordError> for ApiError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy => {
                let mut problem =
                    Problem::unavailable("the service is busy signing people in; retry shortly");
                problem.retry_after_secs = Some(1);
                ApiError::Problem(problem)
            }
            PasswordError::Failed(error) => ApiError::Internal(error),
        }
    }
}
