//! The provider's HTTP API (Stripe-like, under `/v1`, bearer API key): charges, refunds and
//! look-ups. Errors are problem documents, like everywhere else in the platform.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;
use web::{Json, Path, Problem};

use crate::cards;
use crate::ledger::{Answer, Charge, Ledger, LedgerError, NewCharge, Refund};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub ledger: Arc<Ledger>,
    pub api_key: SecretString,
    pub latency: Duration,
    pub failure_rate: f64,
    pub slow_delay: Duration,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/charges", post(create_charge).get(list_charges))
        .route("/v1/charges/{id}", get(get_charge))
        .route("/v1/refunds", post(create_refund))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Every `/v1` call needs `Authorization: Bearer <PSP_API_KEY>`; then the configured latency
/// applies to it.
async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if presented != Some(state.api_key.expose_secret()) {
        return Problem::unauthorized("a valid API key is required (Authorization: Bearer sk_...)")
            .into_response();
    }
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    next.run(request).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// Minor units, at least 1.
    pub amount: i64,
    /// ISO 4217, e.g. `EUR`.
    pub currency: String,
    pub card: CardInput,
    /// The caller's reference (an order id); charges can be listed by it.
    pub reference: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    pub number: String,
    pub exp_month: u32,
    pub exp_year: i32,
    pub cvc: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// The charge id (`ch_...`).
    pub charge: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChargeQuery {
    /// The key a charge was made under.
    pub idempotency_key: Option<String>,
    /// The caller's reference.
    pub reference: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChargeList {
    pub data: Vec<Charge>,
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    if key.is_empty() || key.len() > 255 {
        return Err(Problem::bad_request(
            "the Idempotency-Key header is required (1 to 255 characters)",
        ));
    }
    Ok(key.to_owned())
}

fn ledger_problem(error: LedgerError) -> Problem {
    match error {
        LedgerError::KeyReused => Problem::invalid_field(
            "Idempotency-Key",
            "was used before with a different request",
        ),
        LedgerError::NoSuchCharge => Problem::not_found("no such charge"),
        LedgerError::NotRefundable(reason) => Problem::conflict(reason),
        LedgerError::ProviderError => {
            let mut problem = Problem::internal();
            problem.detail = "the provider failed before charging; retry with the same key".into();
            problem
        }
    }
}

/// Chaos: fail a share of the calls before they do anything.
fn injected_failure(state: &AppState) -> Result<(), Problem> {
    if state.failure_rate > 0.0 && rand::random::<f64>() < state.failure_rate {
        metrics::counter!("psp_injected_failures_total").increment(1);
        return Err(Problem::unavailable(
            "the provider is briefly unavailable; retry",
        ));
    }
    Ok(())
}

/// Sends a recorded answer once its time has come.
async fn answer(answer: Answer) -> Response {
    tokio::time::sleep_until(answer.not_before).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    (status, axum::Json(answer.body)).into_response()
}

/// `POST /v1/charges`
#[utoipa::path(post, path = "/v1/charges", tag = "charges", request_body = ChargeRequest,
    params(("Idempotency-Key" = String, Header, description = "The caller's key; the same key and request replay the answer")),
    responses(
        (status = 201, body = Charge, description = "Charged"),
        (status = 402, body = Charge, description = "Declined (`decline_code`)"),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 422, body = Problem, description = "Invalid field, or the key was used with another request"),
        (status = 500, body = Problem, description = "Provider error before charging; retry with the same key"),
        (status = 503, body = Problem, description = "Injected failure before charging"),
    ))]
#[tracing::instrument(skip_all, fields(idempotency_key, reference))]
pub async fn create_charge(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<ChargeRequest>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let span = tracing::Span::current();
    span.record("idempotency_key", key.as_str());
    span.record("reference", body.reference.as_str());
    if body.amount < 1 {
        return Err(Problem::invalid_field("amount", "must be at least 1"));
    }
    if body.currency.len() != 3 || !body.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Problem::invalid_field(
            "currency",
            "must be an ISO 4217 code such as EUR",
        ));
    }
    if body.reference.is_empty() || body.reference.len() > 200 {
        return Err(Problem::invalid_field(
            "reference",
            "must be 1 to 200 characters",
        ));
    }
    let card = &body.card;
    if let Some((field, message)) = cards::invalid_field(&card.number, card.exp_month, &card.cvc) {
        return Err(Problem::invalid_field(field, message));
    }
    injected_failure(&state)?;
    let request = NewCharge {
        amount: body.amount,
        currency: body.currency,
        reference: body.reference,
        expired: cards::is_expired(
            card.exp_month,
            card.exp_year,
            chrono::Utc::now().date_naive(),
        ),
        card_number: card.number.clone(),
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        cvc: card.cvc.clone(),
    };
    let recorded = state
        .ledger
        .charge(
            &key,
            &request,
            cards::behaviour(&card.number),
            state.slow_delay,
        )
        .map_err(ledger_problem)?;
    Ok(answer(recorded).await)
}

/// `GET /v1/charges?idempotency_key=` or `?reference=`
#[utoipa::path(get, path = "/v1/charges", tag = "charges", params(ChargeQuery),
    responses(
        (status = 200, body = ChargeList, description = "The charges (none, or one per key)"),
        (status = 400, body = Problem, description = "Neither or both parameters"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn list_charges(
    State(state): State<AppState>,
    query: Result<Query<ChargeQuery>, QueryRejection>,
) -> Result<axum::Json<ChargeList>, Problem> {
    let Query(query) = query.map_err(|rejection| {
        Problem::bad_request(format!("cannot read the query: {}", rejection.body_text()))
    })?;
    let data = match (query.idempotency_key, query.reference) {
        (Some(key), None) => state.ledger.charge_by_key(&key).into_iter().collect(),
        (None, Some(reference)) => state.ledger.charges_by_reference(&reference),
        _ => {
            return Err(Problem::bad_request(
                "give exactly one of idempotency_key and reference",
            ));
        }
    };
    Ok(axum::Json(ChargeList { data }))
}

/// `GET /v1/charges/{id}`
#[utoipa::path(get, path = "/v1/charges/{id}", tag = "charges",
    params(("id" = String, Path, description = "Charge id")),
    responses((status = 200, body = Charge), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(charge_id = %id))]
pub async fn get_charge(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Charge>, Problem> {
    state
        .ledger
        .charge_by_id(&id)
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found("no such charge"))
}

/// `POST /v1/refunds`
#[utoipa::path(post, path = "/v1/refunds", tag = "refunds", request_body = RefundRequest,
    params(("Idempotency-Key" = String, Header, description = "The caller's key")),
    responses(
        (status = 201, body = Refund),
        (status = 404, body = Problem, description = "No such charge"),
        (status = 409, body = Problem, description = "Declined, or refunded already under another key"),
        (status = 422, body = Problem, description = "The key was used with another request"),
    ))]
#[tracing::instrument(skip_all, fields(idempotency_key, charge_id))]
pub async fn create_refund(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<RefundRequest>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let span = tracing::Span::current();
    span.record("idempotency_key", key.as_str());
    span.record("charge_id", body.charge.as_str());
    injected_failure(&state)?;
    let recorded = state
        .ledger
        .refund(&key, &body.charge)
        .map_err(ledger_problem)?;
    Ok(answer(recorded).await)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "psp-sim",
        description = "A simulated card payment provider (third party): charges with idempotency keys, refunds, look-ups. Bearer API key."
    ),
    paths(create_charge, list_charges, get_charge, create_refund),
    components(schemas(web::Problem, web::FieldError))
)]
pub struct ApiDoc;
