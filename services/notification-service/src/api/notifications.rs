//! `GET /api/notifications`: the caller's messages, newest first.

use auth::AuthUser;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::{Json, Problem};

use super::AppState;
use super::error::ApiResult;
use crate::store::messages::{self, HistoryEntry};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_before` of the previous page.
    pub before: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: i64,
    /// The event the message tells about.
    pub event_id: Uuid,
    #[schema(example = "email")]
    pub channel: String,
    #[schema(example = "receipt")]
    pub template: String,
    #[schema(example = "en")]
    pub locale: String,
    pub recipient: String,
    pub subject: Option<String>,
    /// `pending`, `sending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<HistoryEntry> for NotificationView {
    fn from(entry: HistoryEntry) -> Self {
        Self {
            id: entry.id,
            event_id: entry.event_id,
            channel: entry.channel,
            template: entry.template,
            locale: entry.locale,
            recipient: entry.recipient,
            subject: entry.subject,
            status: entry.status,
            attempts: entry.attempts,
            last_error: entry.last_error,
            created_at: entry.created_at,
            updated_at: entry.updated_at,
            sent_at: entry.sent_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<NotificationView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// The caller's notifications (e-mail and SMS), newest first.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = NotificationPage),
        (status = 400, body = Problem, description = "Malformed query"),
        (status = 401, body = Problem),
        (status = 422, body = Problem, description = "limit out of range"),
    ))]
#[tracing::instrument(skip_all, fields(user_id))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<NotificationPage>> {
    let Query(query) = query.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(Problem::invalid_field("limit", "must be between 1 and 100").into());
    }
    let entries = messages::history(&state.pool, user.id, query.before, limit).await?;
    let next_before = match entries.last() {
        Some(last) if entries.len() as i64 == limit => Some(last.id),
        _ => None,
    };
    Ok(Json(NotificationPage {
        items: entries.into_iter().map(Into::into).collect(),
        next_before,
    }))
}
