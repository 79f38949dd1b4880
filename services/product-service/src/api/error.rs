//! The service's one error type is the platform's (`web::ApiError`): a problem for the
//! client, the cause chain for the log.

pub use web::{ApiError, ApiResult};
