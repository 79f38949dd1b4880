//! HTTP API: the caller's notification history and channel preferences.

pub mod error;
pub mod notifications;
pub mod preferences;

use auth::TokenVerifier;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use sqlx::PgPool;
use utoipa::OpenApi;
use web::openapi::{BearerAuth, Links, OperationLink, PlatformResponses};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub verifier: TokenVerifier,
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/notifications", get(notifications::list))
        .route(
            "/api/notifications/preferences",
            get(preferences::get).put(preferences::put),
        )
        .with_state(state)
}

/// The links the stateful use of the API follows: from a create to the reads and actions on
/// what it created.
const LINKS: Links = Links(&[OperationLink {
    from: ("put", "/api/notifications/preferences", "200"),
    name: "GetPreferences",
    to: ("get", "/api/notifications/preferences"),
    parameters: &[],
    request_body: None,
}]);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "notification-service",
        description = "E-mail and SMS to customers, exactly once per event and channel: the caller's history and channel preferences."
    ),
    paths(notifications::list, preferences::get, preferences::put),
    components(schemas(web::Problem, web::FieldError)),
    modifiers(
        &BearerAuth,
        &LINKS,
        &PlatformResponses
    )
)]
pub struct ApiDoc;

#[cfg(test)]
mod openapi_tests {
    use utoipa::OpenApi as _;

    use super::{ApiDoc, LINKS};

    #[test]
    fn every_link_joins_documented_operations() {
        let missing = web::openapi::missing_links(&ApiDoc::openapi(), &LINKS);
        assert!(missing.is_empty(), "links to or from nowhere: {missing:?}");
    }
}
