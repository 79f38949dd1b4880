//! `/api/admin/approvals`: refund requests the decision table sent to a person. Each is the
//! user task "Approve refund" of a `refund` process on the workflow engine (the same task
//! Tasklist shows); an admin's decision completes it and the process goes on (refund, or the
//! rejection mail).

use auth::AdminUser;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use web::{FieldError, Json, Path, Problem};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::refunds::{RefundRequestView, view};
use crate::refunds::PROCESS_KEY;
use crate::store::refunds;

/// The candidate group of the approval task in `refund.bpmn`.
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
    pub refund_request: RefundRequestView,
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
    if error.is_unavailable() {
        Problem::unavailable("the workflow engine is unavailable; retry").into()
    } else {
        anyhow::Error::new(error).into()
    }
}

/// Refund requests waiting for an admin, oldest first.
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
    let tasks = state
        .engine
        .user_tasks(
            PROCESS_KEY,
            APPROVERS,
            workflow::NAMESPACE_VARIABLE,
            &state.refunds.namespace,
        )
        .await
        .map_err(engine_error)?;
    let mut conn = state.pool.acquire().await?;
    let mut items = Vec::with_capacity(tasks.len());
    for task in tasks {
        let Some(process) = &task.process_instance_id else {
            continue;
        };
        // A task whose request is not ours (another deployment on the same engine) is skipped.
        if let Some(row) = refunds::by_process(&mut conn, process).await? {
            items.push(ApprovalView {
                task_id: task.id,
                name: task.name,
                created: task.created,
                refund_request: view(row, Vec::new()),
            });
        }
    }
    Ok(Json(ApprovalList { items }))
}

/// Approve or reject a refund request that waits for an admin.
#[utoipa::path(
    post,
    path = "/api/admin/approvals/{task}",
    params(("task" = String, Path, description = "The task id from the list")),
    request_body = Decision,
    responses(
        (status = 200, description = "Decided; the process goes on", body = RefundRequestView),
        (status = 400, description = "Malformed JSON", body = web::Problem),
        (status = 401, description = "No or invalid access token", body = web::Problem),
        (status = 403, description = "Not an admin", body = web::Problem),
        (status = 404, description = "No such open approval (decided already, or unknown)", body = web::Problem),
        (status = 422, description = "The decision is neither approve nor reject, or the comment is too long", body = web::Problem),
        (status = 503, description = "The workflow engine is unavailable", body = web::Problem)
    ),
    security(("bearer" = []))
)]
pub async fn decide(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(task_id): Path<String>,
    Json(body): Json<Decision>,
) -> ApiResult<Json<RefundRequestView>> {
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
    let Some(request) = refunds::by_process(&mut conn, process).await? else {
        return Err(not_found());
    };
    if task.task_definition_key.as_deref() != Some("approve") {
        return Err(not_found());
    }
    refunds::set_comment(&mut conn, request.id, comment).await?;
    let variables = workflow::Variables::new()
        .boolean("approved", approved)
        .string("decisionComment", comment.unwrap_or_default());
    match state.engine.complete_user_task(&task_id, variables).await {
        Ok(()) => {}
        Err(workflow::EngineError::NotFound(_)) => return Err(not_found()),
        Err(error) => return Err(engine_error(error)),
    }
    tracing::info!(refund_request_id = %request.id, approved, "refund request decided by an admin");
    Ok(Json(view(request, Vec::new())))
}
