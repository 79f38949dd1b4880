//! `/api/admin/approvals`: what the decision tables sent to a person. Each item is a user
//! task on the workflow engine (the same task Tasklist shows): "Approve refund" of a `refund`
//! process (a refund request above the automatic limits), or "Review order" of an
//! `order-review` process (a new order the risk table held `REVIEW`). An admin's decision
//! completes the task and the process goes on: the refund or its rejection mail; the order's
//! payment step, or its rejection (stock released, customer told).

use auth::AdminUser;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use web::{FieldError, Json, Path, Problem};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::orders::Price;
use super::refunds::{RefundRequestView, view};
use crate::domain::status::OrderStatus;
use crate::refunds::PROCESS_KEY;
use crate::review;
use crate::store::{orders, refunds};

/// The candidate group of the approval task in `refund.bpmn` and the review task in
/// `order-review.bpmn`.
const APPROVERS: &str = "admin";
const MAX_COMMENT: usize = 1_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    /// The engine's task id (the path of the decision).
    pub task_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the task was created (the engine's timestamp).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `refund` (see `refund_request`) or `order_review` (see `order_review`).
    #[schema(example = "order_review")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_request: Option<RefundRequestView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_review: Option<OrderReviewView>,
}

/// An order held for review, as the admin decides it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderReviewView {
    pub order_id: Uuid,
    pub user_id: Uuid,
    /// `REVIEW` while undecided; after the decision the status it moved to.
    #[schema(example = "REVIEW")]
    pub status: String,
    pub total: Price,
    /// The risk table's rule: `large_amount`, `new_account`, `order_velocity`,
    /// `shipping_country`, or `risk_check_unavailable`.
    #[schema(example = "large_amount")]
    pub risk_reason: String,
    #[schema(example = "DE")]
    pub shipping_country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<orders::OrderRow> for OrderReviewView {
    fn from(row: orders::OrderRow) -> Self {
        OrderReviewView {
            order_id: row.id,
            user_id: row.user_id,
            shipping_country: row.shipping_country().to_owned(),
            status: row.status,
            total: Price {
                amount: row.total_amount,
                currency: row.currency,
            },
            risk_reason: row.risk_reason.unwrap_or_default(),
            review_comment: row.review_comment,
            created_at: row.created_at,
        }
    }
}

/// What a decision answers: the refund request, or the reviewed order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Decided {
    Refund(RefundRequestView),
    OrderReview(OrderReviewView),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalList {
    pub items: Vec<ApprovalView>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `approve` or `reject`.
    #[schema(example = "reject", pattern = "^(approve|reject)$")]
    pub decision: String,
    /// Shown to the customer in the rejection mail.
    #[serde(default)]
    #[schema(
        example = "The parcel was delivered and signed for.",
        max_length = 1000
    )]
    pub comment: Option<String>,
}

fn engine_error(error: workflow::EngineError) -> ApiError {
    if error.is_transient() {
        super::engine_unavailable("the workflow engine is unavailable; retry").into()
    } else {
        anyhow::Error::new(error).into()
    }
}

/// Refund requests and held orders waiting for an admin, each kind oldest first (refunds
/// first).
#[utoipa::path(
    get,
    path = "/api/admin/approvals",
    responses(
        (status = 200, body = ApprovalList),
        (status = 401, description = "No or invalid access token", body = web::Problem),
        (status = 403, description = "Not an admin", body = web::Problem),
        (status = 503, description = "The workflow engine is unavailable", body = web::Problem)
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> ApiResult<Json<ApprovalList>> {
    let namespace = &state.refunds.namespace;
    let refund_tasks = state
        .engine
        .user_tasks(
            PROCESS_KEY,
            APPROVERS,
            workflow::NAMESPACE_VARIABLE,
            namespace,
        )
        .await
        .map_err(engine_error)?;
    let review_tasks = state
        .engine
        .user_tasks(
            review::PROCESS_KEY,
            APPROVERS,
            workflow::NAMESPACE_VARIABLE,
            namespace,
        )
        .await
        .map_err(engine_error)?;
    let mut conn = state.pool.acquire().await?;
    let mut items = Vec::with_capacity(refund_tasks.len() + review_tasks.len());
    // A task whose request or order is not ours (another deployment on the same engine) is
    // skipped.
    for task in refund_tasks {
        let Some(process) = &task.process_instance_id else {
            continue;
        };
        if let Some(row) = refunds::by_process(&mut conn, process).await? {
            items.push(ApprovalView {
                task_id: task.id,
                name: task.name,
                created: task.created,
                kind: "refund".into(),
                refund_request: Some(view(row, Vec::new())),
                order_review: None,
            });
        }
    }
    for task in review_tasks {
        let Some(process) = &task.process_instance_id else {
            continue;
        };
        if let Some(row) = orders::by_review_process(&mut conn, process).await? {
            items.push(ApprovalView {
                task_id: task.id,
                name: task.name,
                created: task.created,
                kind: "order_review".into(),
                refund_request: None,
                order_review: Some(row.into()),
            });
        }
    }
    Ok(Json(ApprovalList { items }))
}

/// Approve or reject a refund request or a held order that waits for an admin.
#[utoipa::path(
    post,
    path = "/api/admin/approvals/{task}",
    params(("task" = String, Path, description = "The task id from the list")),
    request_body = Decision,
    responses(
        (status = 200, description = "Decided; the process goes on. A refund answers with the refund request, an order review with the order (its status moves once the process's next step ran)", body = Decided),
        (status = 400, description = "Malformed JSON", body = web::Problem),
        (status = 401, description = "No or invalid access token", body = web::Problem),
        (status = 403, description = "Not an admin", body = web::Problem),
        (status = 404, description = "No such open approval (decided already, or unknown)", body = web::Problem),
        (status = 422, description = "The decision is neither approve nor reject, or the comment is too long", body = web::Problem),
        (status = 409, description = "The held order is no longer in review (the customer cancelled it)", body = web::Problem),
        (status = 503, description = "The workflow engine is unavailable", body = web::Problem)
    ),
    security(("bearer" = []))
)]
pub async fn decide(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(task_id): Path<String>,
    Json(body): Json<Decision>,
) -> ApiResult<Json<Decided>> {
    let mut errors = Vec::new();
    let approved = match body.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            errors.push(FieldError::new("decision", "must be approve or reject"));
            false
        }
    };
    let comment = body
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > MAX_COMMENT) {
        errors.push(FieldError::new(
            "comment",
            format!("must be at most {MAX_COMMENT} characters"),
        ));
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    let not_found =
        || -> ApiError { Problem::not_found(format!("no open approval {task_id}")).into() };
    // Task ids are the engine's UUIDs; anything else cannot be one (and never reaches a URL).
    if task_id.len() > 64
        || !task_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(not_found());
    }
    let task = match state.engine.user_task(&task_id).await {
        Ok(task) => task,
        Err(workflow::EngineError::NotFound(_)) => return Err(not_found()),
        Err(error) => return Err(engine_error(error)),
    };
    let mut conn = state.pool.acquire().await?;
    let Some(process) = task.process_instance_id.as_deref() else {
        return Err(not_found());
    };
    let variables = workflow::Variables::new()
        .boolean("approved", approved)
        .string("decisionComment", comment.unwrap_or_default());
    let complete = |variables| async {
        match state.engine.complete_user_task(&task_id, variables).await {
            Ok(()) => Ok(()),
            Err(workflow::EngineError::NotFound(_)) => Err(not_found()),
            Err(error) => Err(engine_error(error)),
        }
    };
    match task.task_definition_key.as_deref() {
        Some("approve") => {
            let Some(request) = refunds::by_process(&mut conn, process).await? else {
                return Err(not_found());
            };
            refunds::set_comment(&mut conn, request.id, comment).await?;
            // Not held through the engine's call (see `risk::classify`).
            drop(conn);
            complete(variables).await?;
            tracing::info!(refund_request_id = %request.id, approved, "refund request decided by an admin");
            Ok(Json(Decided::Refund(view(request, Vec::new()))))
        }
        Some(review::TASK_KEY) => {
            let Some(order) = orders::by_review_process(&mut conn, process).await? else {
                return Err(not_found());
            };
            if order.status != OrderStatus::Review.as_str() {
                return Err(Problem::conflict(format!(
                    "order {} is {}, no longer in review",
                    order.id, order.status
                ))
                .into());
            }
            orders::set_review_comment(&mut conn, order.id, comment).await?;
            drop(conn);
            complete(variables).await?;
            tracing::info!(order_id = %order.id, approved, "held order decided by an admin");
            let mut view = OrderReviewView::from(order);
            view.review_comment = comment.map(str::to_owned);
            Ok(Json(Decided::OrderReview(view)))
        }
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use workflow::EngineError;

    use super::engine_error;

    #[test]
    fn an_engine_that_failed_inside_answers_503_not_500() {
        let refused = |status, message: &str| EngineError::Refused {
            status,
            message: message.into(),
        };
        let cases = [
            // Operaton answers 500 to an optimistic-locking conflict (two decisions at once, or
            // a decision as the reminder timer fires): the admin retries, nothing is wrong here.
            (
                refused(
                    500,
                    "ENGINE-03005 updated by another transaction concurrently",
                ),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                EngineError::Unavailable("connection refused".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            // A refusal of what we sent is our fault, logged in full.
            (
                refused(400, "no such variable"),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, status) in cases {
            let shown = error.to_string();
            assert_eq!(
                engine_error(error).into_response().status(),
                status,
                "{shown}"
            );
        }
    }
}
