//! `application/problem+json` (RFC 9457): the one error shape clients ever see.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A problem document. Build one with the constructors; they fix `type` and `title` per kind so
/// clients can switch on `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Set on server errors so a report can be matched to the logs and the trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Seconds until a throttled request may be retried; sent as `Retry-After` too.
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("https://ferroshop.dev/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            trace_id: None,
            retry_after_secs: None,
        }
    }

    /// 400: the request cannot be read (bad JSON syntax, bad query string).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    /// 422: well-formed but invalid; every offending field is listed.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        let mut problem = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid request",
            detail,
        );
        problem.errors = errors;
        problem
    }

    /// 422 for one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    /// 401: no credentials, or credentials that are not valid.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this resource does not support that method",
        )
    }

    /// 409: the request conflicts with the current state (duplicate, stale version).
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 413.
    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("the request body exceeds {limit_bytes} bytes"),
        )
    }

    /// 415.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        )
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64, detail: impl Into<String>) -> Self {
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            "Too many requests",
            detail,
        );
        problem.retry_after_secs = Some(retry_after_secs.max(1));
        problem
    }

    /// 503: a dependency is unavailable; the client may retry, after `Retry-After` (1 s
    /// unless the caller knows better: a dependency restarting takes about that).
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut problem = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        );
        problem.retry_after_secs = Some(1);
        problem
    }

    /// 500 with a generic message and the trace id. The cause belongs in the log, never here.
    pub fn internal() -> Self {
        let mut problem = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "the server failed to handle the request; quote the trace id when reporting it",
        );
        problem.trace_id = Some(telemetry::trace_id(&tracing::Span::current()));
        problem
    }

    /// The status as a `StatusCode`.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl std::error::Error for Problem {}

/// What a 5xx problem said, carried on its response to the access-log line
/// (`server::trace_request`).
#[derive(Debug, Clone)]
pub(crate) struct ServerProblem {
    pub(crate) problem_type: String,
    pub(crate) detail: String,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after_secs;
        let body = match serde_json::to_vec(&self) {
            Ok(body) => body,
            // A struct of strings always serialises; keep a valid body if it ever does not.
            Err(_) => br#"{"title":"Internal server error","status":500}"#.to_vec(),
        };
        let mut response = (status, body).into_response();
        // Which 5xx it was (busy, shedding, a dependency away) is what an operator reading
        // the request's access-log line needs; the status alone does not say.
        if status.is_server_error() {
            response.extensions_mut().insert(ServerProblem {
                problem_type: self.problem_type,
                detail: self.detail,
            });
        }
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problem_lists_fields_and_uses_problem_media_type() {
        let response = Problem::validation(vec![
            FieldError::new("email", "must be an e-mail address"),
            FieldError::new("password", "must be at least 12 characters"),
        ])
        .into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn a_server_error_carries_its_type_and_detail_to_the_access_log() {
        let response = Problem::unavailable("the database is busy").into_response();
        let carried = response.extensions().get::<ServerProblem>();
        assert_eq!(
            carried.map(|problem| problem.detail.as_str()),
            Some("the database is busy")
        );
        let refused = Problem::not_found("no such order").into_response();
        assert!(refused.extensions().get::<ServerProblem>().is_none());
    }

    #[test]
    fn throttling_sets_retry_after_of_at_least_one_second() {
        let response = Problem::too_many_requests(0, "slow down").into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn single_field_detail_names_the_field() {
        let problem = Problem::invalid_field("name", "must not be empty");
        assert_eq!(problem.detail, "name: must not be empty");
        assert_eq!(problem.errors.len(), 1);
    }
}
