//! HTTP API of user-service: routes, shared state and the OpenAPI document.

pub mod error;
pub mod jwks;
pub mod oidc;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;

use auth::{TokenIssuer, TokenVerifier};
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use contracts::topics::Topic;
use sqlx::PgPool;
use utoipa::OpenApi;
use web::openapi::{BearerAuth, Links, MinProperties, OperationLink, PlatformResponses};

use crate::config::Config;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub passwords: crate::domain::password::PasswordHasher,
    pub issuer: TokenIssuer,
    pub verifier: TokenVerifier,
    pub topics: Topic,
    pub config: Arc<Config>,
    /// The configured OpenID Connect providers by name (`google`).
    pub providers: Arc<HashMap<String, crate::provider::IdentityProvider>>,
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The CloudEvents `source` of everything this service emits.
pub const EVENT_SOURCE: &str = "/user-service";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/users/register", post(users::register))
        .route("/api/users/login", post(users::login))
        .route("/api/users/refresh", post(users::refresh))
        .route("/api/users/logout", post(users::logout))
        .route("/api/users/me", get(users::me).patch(users::update_me))
        .route("/api/users/oidc/{provider}/authorize", get(oidc::authorize))
        .route("/api/users/oidc/{provider}/callback", get(oidc::callback))
        .route("/api/users/oidc/tickets", post(oidc::redeem_ticket))
        .route("/.well-known/jwks.json", get(jwks::jwks))
        .with_state(state)
}

/// Partial-update bodies the handlers refuse when they change nothing.
const PARTIAL_UPDATES: MinProperties = MinProperties(&[("ProfilePatch", 1)]);

/// The links the stateful use of the API follows: from a create to the reads and actions on
/// what it created.
const LINKS: Links = Links(&[
    OperationLink {
        from: ("post", "/api/users/register", "201"),
        name: "Login",
        to: ("post", "/api/users/login"),
        parameters: &[],
        request_body: Some(
            r#"{"email": "$request.body#/email", "password": "$request.body#/password"}"#,
        ),
    },
    OperationLink {
        from: ("post", "/api/users/login", "200"),
        name: "Refresh",
        to: ("post", "/api/users/refresh"),
        parameters: &[],
        request_body: Some(r#"{"refresh_token": "$response.body#/refresh_token"}"#),
    },
    OperationLink {
        from: ("post", "/api/users/login", "200"),
        name: "Logout",
        to: ("post", "/api/users/logout"),
        parameters: &[],
        request_body: Some(r#"{"refresh_token": "$response.body#/refresh_token"}"#),
    },
    OperationLink {
        from: ("post", "/api/users/refresh", "200"),
        name: "RefreshAgain",
        to: ("post", "/api/users/refresh"),
        parameters: &[],
        request_body: Some(r#"{"refresh_token": "$response.body#/refresh_token"}"#),
    },
]);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "user-service",
        description = "Accounts, sign-in (password, or Google through OpenID Connect), token refresh and profiles. Access tokens are EdDSA JWTs verifiable with /.well-known/jwks.json."
    ),
    paths(
        users::register,
        users::login,
        users::refresh,
        users::logout,
        users::me,
        users::update_me,
        oidc::authorize,
        oidc::callback,
        oidc::redeem_ticket,
        jwks::jwks
    ),
    components(schemas(web::Problem, web::FieldError)),
    modifiers(
        &BearerAuth,
        &PARTIAL_UPDATES,
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
