//! `GET|PUT /api/notifications/preferences`: the caller's channel choices. They apply to
//! messages for events handled after the change.

use auth::AuthUser;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use web::Json;

use super::AppState;
use super::error::ApiResult;
use crate::domain::notice::Preferences;
use crate::store::preferences;

#[derive(Debug, Serialize, ToSchema)]
pub struct PreferencesView {
    /// E-mail notifications (default on).
    pub email: bool,
    /// SMS notifications, for users with a phone number (default off: opt-in).
    pub sms: bool,
    /// When the caller last changed them; absent while the defaults apply.
    pub updated_at: Option<DateTime<Utc>>,
}

/// Both channels; `PUT` replaces the whole preference set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesRequest {
    pub email: bool,
    pub sms: bool,
}

/// The caller's channel preferences.
#[utoipa::path(get, path = "/api/notifications/preferences", tag = "preferences",
    security(("bearer" = [])),
    responses((status = 200, body = PreferencesView), (status = 401, body = web::Problem)))]
#[tracing::instrument(skip_all, fields(user_id))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<PreferencesView>> {
    let mut conn = state.pool.acquire().await?;
    let stored = preferences::get(&mut conn, user.id).await?;
    let (current, updated_at) = match stored {
        Some((current, updated_at)) => (current, Some(updated_at)),
        None => (Preferences::default(), None),
    };
    Ok(Json(PreferencesView {
        email: current.email,
        sms: current.sms,
        updated_at,
    }))
}

/// Set the caller's channel preferences.
#[utoipa::path(put, path = "/api/notifications/preferences", tag = "preferences",
    request_body = PreferencesRequest, security(("bearer" = [])),
    responses(
        (status = 200, body = PreferencesView),
        (status = 400, body = web::Problem, description = "Not JSON"),
        (status = 401, body = web::Problem),
        (status = 422, body = web::Problem, description = "A field is missing or not a boolean"),
    ))]
#[tracing::instrument(skip_all, fields(user_id))]
pub async fn put(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<PreferencesRequest>,
) -> ApiResult<Json<PreferencesView>> {
    let chosen = Preferences {
        email: body.email,
        sms: body.sms,
    };
    let mut conn = state.pool.acquire().await?;
    let updated_at = preferences::put(&mut conn, user.id, chosen).await?;
    Ok(Json(PreferencesView {
        email: chosen.email,
        sms: chosen.sms,
        updated_at: Some(updated_at),
    }))
}
