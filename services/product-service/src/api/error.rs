//! The service's one error type is the platform's (`web::ApiError`): a problem for the
//! client, the cause chain for the log. The catalog's write errors map onto it here.

use web::Problem;

use crate::catalog::writes::WriteError;

pub use web::{ApiError, ApiResult};

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::NotFound => super::products::not_found().into(),
            WriteError::SkuTaken => {
                Problem::conflict("a product with this SKU exists already").into()
            }
            WriteError::Stale { current_version } => Problem::conflict(format!(
                "the product changed since it was read (it is at version {current_version}); read it again and retry"
            ))
            .into(),
            WriteError::Busy => {
                Problem::unavailable("the product is changing too often right now; try again")
                    .into()
            }
            WriteError::Refused(errors) => Problem::validation(errors).into(),
            WriteError::Internal(error) => ApiError::Internal(error),
        }
    }
}
