//! HTTP API: `POST /v1/messages` (the gateway API callers use), and `/admin/*` for tests
//! (failure rules, what arrived).

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use web::{FieldError, Json, Problem};

use crate::gateway::{Accepted, FailureMode, FailureRule, Gateway, Outcome};

#[derive(Clone)]
pub struct AppState {
    gateway: Arc<Mutex<Gateway>>,
    token: Arc<str>,
}

impl AppState {
    pub fn new(token: String) -> Self {
        Self {
            gateway: Arc::default(),
            token: token.into(),
        }
    }

    fn gateway(&self) -> MutexGuard<'_, Gateway> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.gateway
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/messages", post(send))
        .route("/admin/failure", post(set_failure))
        .route("/admin/messages", get(messages))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sms-sim",
        description = "A simulated SMS gateway for local runs and tests: records what it receives and fails on demand."
    ),
    paths(send, set_failure, messages),
    components(schemas(web::Problem, web::FieldError))
)]
pub struct ApiDoc;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// E.164 number, e.g. `+4915112345678`.
    pub to: String,
    pub text: String,
    /// The caller's idempotency key: a second request with the same reference is not sent again.
    pub client_reference: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SendResponse {
    pub id: String,
    pub to: String,
    pub status: &'static str,
    pub client_reference: Option<String>,
    /// `true` when the reference was seen before and nothing new was sent.
    pub duplicate: bool,
}

/// Send one SMS. 201 when accepted, 200 for a repeated `client_reference` (not sent again),
/// 401 without the bearer token, 422 for a bad number or text, and the configured failure
/// status (503 by default) when a failure rule applies.
#[utoipa::path(post, path = "/v1/messages", request_body = SendRequest,
    responses(
        (status = 201, body = SendResponse), (status = 200, body = SendResponse),
        (status = 401, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem),
    ))]
pub async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<SendRequest>,
) -> Result<(StatusCode, Json<SendResponse>), Problem> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if token != Some(&*state.token) {
        return Err(Problem::unauthorized(
            "a valid bearer API token is required",
        ));
    }
    let mut errors = Vec::new();
    if !is_e164(&body.to) {
        errors.push(FieldError::new(
            "to",
            "must be an E.164 number such as +4915112345678",
        ));
    }
    if body.text.trim().is_empty() || body.text.chars().count() > 1600 {
        errors.push(FieldError::new("text", "must be 1 to 1600 characters"));
    }
    if body
        .client_reference
        .as_ref()
        .is_some_and(|reference| reference.is_empty() || reference.len() > 128)
    {
        errors.push(FieldError::new(
            "client_reference",
            "must be 1 to 128 characters",
        ));
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let outcome = state
        .gateway()
        .submit(&body.to, &body.text, body.client_reference.as_deref());
    let reply = |status, message: Accepted, duplicate| {
        (
            status,
            Json(SendResponse {
                id: message.id,
                to: message.to,
                status: "accepted",
                client_reference: message.client_reference,
                duplicate,
            }),
        )
    };
    match outcome {
        Outcome::Accepted(message) => {
            tracing::info!(to = %message.to, id = %message.id, "SMS accepted");
            Ok(reply(StatusCode::CREATED, message, false))
        }
        Outcome::Duplicate(message) => Ok(reply(StatusCode::OK, message, true)),
        Outcome::Refused(status) => {
            let mut problem = Problem::unavailable("simulated gateway failure");
            problem.status = status;
            problem.title = "Simulated failure".into();
            Err(problem)
        }
    }
}

fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureRequest {
    pub mode: FailureMode,
    /// For `fail_n`: how many requests to refuse.
    pub count: Option<u32>,
    /// Only this recipient; every recipient without a rule of its own when absent.
    pub to: Option<String>,
    /// The status refusals carry (400-599, default 503).
    pub status: Option<u16>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailureView {
    pub mode: FailureMode,
    pub count: u32,
    pub to: Option<String>,
    pub status: u16,
}

/// Set a failure rule, for one recipient (`to`) or for all.
#[utoipa::path(post, path = "/admin/failure", request_body = FailureRequest,
    responses((status = 200, body = FailureView), (status = 422, body = Problem)))]
pub async fn set_failure(
    State(state): State<AppState>,
    Json(body): Json<FailureRequest>,
) -> Result<Json<FailureView>, Problem> {
    let status = body.status.unwrap_or(503);
    if !(400..=599).contains(&status) {
        return Err(Problem::invalid_field(
            "status",
            "must be an HTTP error status (400-599)",
        ));
    }
    let count = match (body.mode, body.count) {
        (FailureMode::FailN, Some(count)) if count > 0 => count,
        (FailureMode::FailN, _) => {
            return Err(Problem::invalid_field(
                "count",
                "fail_n needs a count of at least 1",
            ));
        }
        (_, _) => 0,
    };
    state.gateway().set_failure(
        body.to.as_deref(),
        FailureRule {
            mode: body.mode,
            remaining: count,
            status,
        },
    );
    Ok(Json(FailureView {
        mode: body.mode,
        count,
        to: body.to,
        status,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagesView {
    pub messages: Vec<Accepted>,
    /// Requests received for `to` (accepted, repeated or refused); 0 without `to`.
    pub requests: u64,
}

/// What the gateway accepted, oldest first; `?to=` narrows to one number.
#[utoipa::path(get, path = "/admin/messages", params(("to" = Option<String>, Query)),
    responses((status = 200, body = MessagesView), (status = 400, body = Problem)))]
pub async fn messages(
    State(state): State<AppState>,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<Json<MessagesView>, Problem> {
    let Query(query) = query.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let gateway = state.gateway();
    Ok(Json(MessagesView {
        messages: gateway.messages(query.to.as_deref()),
        requests: query.to.as_deref().map_or(0, |to| gateway.requests(to)),
    }))
}

#[cfg(test)]
mod tests {
    use super::is_e164;

    #[test]
    fn e164_numbers() {
        assert!(is_e164("+4915112345678"));
        assert!(!is_e164("4915112345678"));
        assert!(!is_e164("+0123456789"));
        assert!(!is_e164("+12ab4567"));
        assert!(!is_e164("+123"));
    }
}
