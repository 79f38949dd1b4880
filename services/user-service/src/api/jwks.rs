//! `GET /.well-known/jwks.json`: the public keys access tokens are signed with.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use super::error::ApiResult;

/// The JSON Web Key Set other services verify access tokens with.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The signing keys' public halves")))]
pub async fn jwks(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let set = state.issuer.key().jwks()?;
    // Verifiers cache keys themselves; a short public cache still spares user-service bursts.
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(set),
    ))
}
