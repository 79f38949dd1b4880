//! `/api/orders/{id}/refund-requests`: the owner asks for the money of a paid order back, and
//! follows the request. The request runs as the `refund` process on the workflow engine; its
//! steps so far come from the engine's history, which is the source of truth for the process.

use auth::AuthUser;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use web::{FieldError, Json, Path, Problem};

use super::AppState;
use super::error::ApiResult;
use super::orders::{Price, visible_order};
use crate::domain::refund::{self, REASONS, Refusal};
use crate::refunds::{self as requests, RequestError};
use crate::store::orders::OrderRow;
use crate::store::refunds::{self, RefundRow};

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefundRequest {
    /// One of `damaged`, `not_as_described`, `wrong_item`, `not_received`, `changed_mind`,
    /// `other`.
    #[schema(
        example = "damaged",
        pattern = "^(damaged|not_as_described|wrong_item|not_received|changed_mind|other)$"
    )]
    pub reason: String,
    /// The lines concerned (all when absent). The provider refunds whole charges, so the
    /// amount is the order's total either way; the lines tell operations what comes back.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub items: Option<Vec<RefundItem>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundItem {
    pub product_id: Uuid,
    #[schema(example = 1, minimum = 1, maximum = 100)]
    pub quantity: i64,
}

/// A refund request and its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundRequestView {
    pub id: Uuid,
    pub order_id: Uuid,
    /// `OPEN` while the process runs, then `REFUNDED` or `REJECTED`.
    #[schema(example = "OPEN")]
    pub status: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<RefundItem>>,
    pub amount: Price,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_instance_id: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    /// The process's steps so far, oldest first (from the workflow engine).
    pub steps: Vec<RefundStep>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundStep {
    /// The model's activity id, e.g. `decide`, `approve`, `pay-back`, `mark-refunded`.
    #[schema(example = "pay-back")]
    pub activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Absent while the step is under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundRequestList {
    pub items: Vec<RefundRequestView>,
}

pub(crate) fn view(row: RefundRow, steps: Vec<RefundStep>) -> RefundRequestView {
    RefundRequestView {
        id: row.id,
        order_id: row.order_id,
        status: row.status,
        reason: row.reason,
        items: row
            .items
            .and_then(|items| serde_json::from_value(items.0).ok()),
        amount: Price {
            amount: row.amount,
            currency: row.currency,
        },
        process_instance_id: row.process_instance_id,
        created_at: row.created_at,
        closed_at: row.closed_at,
        steps,
    }
}

fn validate(body: &CreateRefundRequest, order: &OrderRow) -> Result<(), Problem> {
    let mut errors = Vec::new();
    if !REASONS.contains(&body.reason.as_str()) {
        errors.push(FieldError::new(
            "reason",
            format!("must be one of {}", REASONS.join(", ")),
        ));
    }
    if let Some(items) = &body.items {
        if items.is_empty() {
            errors.push(FieldError::new("items", "must not be empty when given"));
        }
        for (index, item) in items.iter().enumerate() {
            let ordered = order
                .items
                .0
                .iter()
                .find(|line| line.product_id == item.product_id);
            match ordered {
                None => errors.push(FieldError::new(
                    format!("items[{index}].product_id"),
                    "is not a line of this order",
                )),
                Some(line) if item.quantity < 1 || item.quantity > line.quantity => {
                    errors.push(FieldError::new(
                        format!("items[{index}].quantity"),
                        format!(
                            "must be between 1 and {} (the quantity ordered)",
                            line.quantity
                        ),
                    ));
                }
                Some(_) => {}
            }
            if items[..index]
                .iter()
                .any(|earlier| earlier.product_id == item.product_id)
            {
                errors.push(FieldError::new(
                    format!("items[{index}].product_id"),
                    "appears twice",
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::validation(errors))
    }
}

/// Ask for a refund of a paid order.
///
/// Starts the `refund` process on the workflow engine: a decision table approves small,
/// ordinary requests at once; others wait for an admin.
#[utoipa::path(
    post,
    path = "/api/orders/{id}/refund-requests",
    params(("id" = Uuid, Path)),
    request_body = CreateRefundRequest,
    responses(
        (status = 201, description = "Requested; the process runs", body = RefundRequestView),
        (status = 400, description = "Malformed JSON", body = web::Problem),
        (status = 401, description = "No or invalid access token", body = web::Problem),
        (status = 404, description = "No such order, or another customer's", body = web::Problem),
        (status = 409, description = "The order is not PAID (unpaid, cancelled, already refunded), or a request for it is open", body = web::Problem),
        (status = 422, description = "Invalid reason or lines, or the return window has closed", body = web::Problem),
        (status = 503, description = "The workflow engine is unavailable; nothing was kept, retry after the Retry-After header's seconds", body = web::Problem)
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<CreateRefundRequest>,
) -> ApiResult<(StatusCode, Json<RefundRequestView>)> {
    let order = owned_order(&state, &user, id).await?;
    validate(&body, &order)?;
    let paid_at = {
        let mut conn = state.pool.acquire().await?;
        refunds::paid_at(&mut conn, order.id).await?
    };
    match refund::eligibility(order.status()?, paid_at, Utc::now(), state.refunds.window) {
        Ok(()) => {}
        Err(Refusal::NotRefundable(status)) => {
            return Err(Problem::conflict(format!(
                "the order is {status}; only a PAID order can be refunded"
            ))
            .into());
        }
        Err(Refusal::WindowClosed { paid_at, days }) => {
            return Err(Problem::invalid_field(
                "order",
                format!(
                    "the return window of {days} days after the payment ({}) has closed",
                    paid_at.format("%Y-%m-%d")
                ),
            )
            .into());
        }
    }
    let items = body
        .items
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(anyhow::Error::from)?;
    let row = match requests::request(
        &state.pool,
        &state.engine,
        &state.refunds,
        &order,
        &body.reason,
        items.as_ref(),
    )
    .await
    {
        Ok(row) => row,
        Err(RequestError::AlreadyOpen) => {
            return Err(Problem::conflict(format!(
                "a refund request for order {id} is open already"
            ))
            .into());
        }
        Err(RequestError::EngineUnavailable(detail)) => {
            tracing::warn!(%detail, "workflow engine unavailable");
            return Err(super::engine_unavailable(
                "the workflow engine is unavailable; nothing was kept, please retry",
            )
            .into());
        }
        Err(RequestError::Other(error)) => return Err(error.into()),
    };
    Ok((StatusCode::CREATED, Json(view(row, Vec::new()))))
}

/// The order's refund requests with their progress, newest first.
#[utoipa::path(
    get,
    path = "/api/orders/{id}/refund-requests",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = RefundRequestList),
        (status = 401, description = "No or invalid access token", body = web::Problem),
        (status = 404, description = "No such order, or another customer's", body = web::Problem),
        (status = 503, description = "The workflow engine is unavailable", body = web::Problem)
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<RefundRequestList>> {
    visible_order(&state, &user, id).await?;
    let rows = {
        let mut conn = state.pool.acquire().await?;
        refunds::of_order(&mut conn, id).await?
    };
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let steps = match &row.process_instance_id {
            Some(process) => match state.engine.activity_history(process).await {
                Ok(steps) => steps
                    .into_iter()
                    .filter(|step| step.activity_type != "sequenceFlow")
                    .map(|step| RefundStep {
                        activity: step.activity_id,
                        name: step.activity_name,
                        started_at: step.start_time,
                        ended_at: step.end_time,
                    })
                    .collect(),
                Err(error) if error.is_transient() => {
                    return Err(super::engine_unavailable(
                        "the workflow engine is unavailable; retry to see the progress",
                    )
                    .into());
                }
                Err(error) => return Err(anyhow::Error::new(error).into()),
            },
            None => Vec::new(),
        };
        items.push(view(row, steps));
    }
    Ok(Json(RefundRequestList { items }))
}

/// The order if `user` owns it; 404 otherwise (only the owner asks for their money back;
/// admins see every order's requests but do not file them).
async fn owned_order(state: &AppState, user: &AuthUser, id: Uuid) -> ApiResult<OrderRow> {
    let order = visible_order(state, user, id).await?;
    if order.user_id != user.id {
        return Err(Problem::not_found(format!("no order {id}")).into());
    }
    Ok(order)
}
