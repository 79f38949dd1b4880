//! `/api/payments`: pay an order, read a payment, list the payments of an order.
//!
//! `POST` answers `201` with the payment once the provider's answer is known (`succeeded`, or
//! `failed` with a `failure_reason` such as `card_declined`), and `202` with status `pending`
//! when the provider did not answer in time: the reconciler finishes it and
//! `GET /api/payments/{id}` shows the outcome. It answers within the request budget (1.5 s):
//! a payment under way as it stands (`202 processing`), or `503` with `Retry-After` when none
//! could be created in time (see `charging`). Repeating a request with its Idempotency-Key
//! returns the same payment (and status code for its current state); no second charge.

use auth::AuthUser;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use web::{Json, Path, Problem};

use super::AppState;
use super::error::ApiResult;
use crate::charging::PayRequest;
use crate::domain::card::{self, CardInput};
use crate::domain::idempotency;
use crate::domain::payment_status::PaymentStatus;
use crate::store::payments::PaymentDoc;

/// `POST /api/payments` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    pub order_id: Uuid,
    pub card: CardInput,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MoneyView {
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CardView {
    pub brand: String,
    pub last4: String,
}

/// A payment as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub id: Uuid,
    pub order_id: Uuid,
    /// `processing`, `pending`, `succeeded`, `failed`, `refunding` or `refunded`.
    pub status: String,
    pub amount: MoneyView,
    pub card: CardView,
    /// The provider's charge id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_reference: Option<String>,
    /// Why it failed: `card_declined`, `insufficient_funds`, `provider_unavailable`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentList {
    pub items: Vec<PaymentView>,
}

fn view(payment: &PaymentDoc) -> PaymentView {
    PaymentView {
        id: Uuid::parse_str(&payment.id).unwrap_or_default(),
        order_id: Uuid::parse_str(&payment.order_id).unwrap_or_default(),
        status: payment.status.clone(),
        amount: MoneyView {
            amount: payment.amount,
            currency: payment.currency.clone(),
        },
        card: CardView {
            brand: payment.card_brand.clone(),
            last4: payment.card_last4.clone(),
        },
        provider_reference: payment.provider_reference.clone(),
        failure_reason: payment.failure_reason.clone(),
        created_at: to_chrono(payment.created_at),
        updated_at: to_chrono(payment.updated_at),
    }
}

fn to_chrono(at: mongodb::bson::DateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or_default()
}

/// The failure reason of a payment the provider could not take (not the card's fault).
const PROVIDER_UNAVAILABLE: &str = "provider_unavailable";

/// 429 for an account with too many recent declines: a clear type, so a client can tell it
/// from the gateway's request-rate limits.
fn too_many_declines(wait: std::time::Duration) -> Problem {
    let mut problem = Problem::too_many_requests(
        wait.as_secs().saturating_add(1),
        "too many declined payments from this account recently; try again later",
    );
    problem.problem_type = "https://ferroshop.dev/problems/too-many-declines".into();
    problem.title = "Too many declined payments".into();
    problem
}

#[utoipa::path(post, path = "/api/payments", tag = "payments", security(("bearer" = [])),
    request_body = NewPayment,
    params(("Idempotency-Key" = String, Header, pattern = r"^\s*[!-~]{1,255}\s*$", description = "Required, 1 to 255 visible ASCII characters; the same key and body return the same payment")),
    responses(
        (status = 201, body = PaymentView, description = "The provider answered: `succeeded` or `failed`"),
        (status = 202, body = PaymentView, description = "`pending`: the provider did not answer in time, or `processing`: the charge is still under way when the request budget (`PAYMENT_REQUEST_BUDGET_MS`, 1.5 s) runs out; poll GET /api/payments/{id}"),
        (status = 400, body = Problem, description = "No Idempotency-Key"),
        (status = 401, body = Problem),
        (status = 404, body = Problem, description = "No such order (or not yours)"),
        (status = 409, body = Problem, description = "The order is not awaiting payment, or another payment of it is in progress or succeeded"),
        (status = 422, body = Problem, description = "Invalid fields (named in `errors`), or the key was used with another body"),
        (status = 429, body = Problem, description = "Too many declined payments from this account recently (card testing); retry after `Retry-After` seconds. Type `https://ferroshop.dev/problems/too-many-declines`",
            headers(("Retry-After" = u64, description = "Seconds until another payment may be tried"))),
        (status = 503, body = Problem, description = "The provider is unavailable (circuit open; nothing was written), MongoDB is unavailable, or no payment could be created within the request budget (`PAYMENT_REQUEST_BUDGET_MS`, 1.5 s); a retry with the same Idempotency-Key is safe. Retry after `Retry-After` seconds",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying (with the same Idempotency-Key)"))),
    ))]
#[tracing::instrument(skip_all, fields(order_id, payment_id))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<NewPayment>,
) -> ApiResult<Response> {
    let key = idempotency::validate(
        headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok()),
    )
    .map_err(Problem::bad_request)?
    .to_owned();
    tracing::Span::current().record("order_id", tracing::field::display(body.order_id));
    if let Some(wait) = state.declines.wait(user.id, std::time::Instant::now()) {
        return Err(too_many_declines(wait).into());
    }
    let card =
        card::validate(&body.card, chrono::Utc::now().date_naive()).map_err(Problem::validation)?;
    let payment = state
        .charging
        .pay(
            user.id,
            PayRequest {
                idempotency_key: key,
                order_id: body.order_id,
                card,
            },
        )
        .await?;
    if payment.status() == Some(PaymentStatus::Failed)
        && payment.failure_reason.as_deref() != Some(PROVIDER_UNAVAILABLE)
    {
        state
            .declines
            .declined(user.id, &payment.id, std::time::Instant::now());
    }
    let status = match payment.status().is_some_and(PaymentStatus::awaits_outcome) {
        true => StatusCode::ACCEPTED,
        false => StatusCode::CREATED,
    };
    Ok((status, Json(view(&payment))).into_response())
}

#[utoipa::path(get, path = "/api/payments/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Payment id")),
    responses(
        (status = 200, body = PaymentView),
        (status = 401, body = Problem),
        (status = 404, body = Problem, description = "No such payment (or not yours)"),
    ))]
#[tracing::instrument(skip_all, fields(payment_id = %id))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<PaymentView>> {
    match state.charging.payments.get(id).await? {
        Some(payment) if payment.user_id == user.id.to_string() => Ok(Json(view(&payment))),
        _ => Err(Problem::not_found("no such payment").into()),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only the payments of this order (empty: all).
    #[param(
        pattern = "^([0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})?$"
    )]
    pub order_id: Option<String>,
}

#[utoipa::path(get, path = "/api/payments", tag = "payments", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = PaymentList, description = "The caller's payments, oldest first (at most 100)"),
        (status = 401, body = Problem),
        (status = 422, body = Problem, description = "`order_id` is not a UUID"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<PaymentList>> {
    let Query(params) = params.map_err(|rejection| {
        Problem::bad_request(format!("cannot read the query: {}", rejection.body_text()))
    })?;
    let order = match params.order_id.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            Uuid::parse_str(raw)
                .map_err(|_| Problem::invalid_field("order_id", "must be a UUID"))?,
        ),
    };
    let payments = state.charging.payments.list(user.id, order).await?;
    Ok(Json(PaymentList {
        items: payments.iter().map(view).collect(),
    }))
}
