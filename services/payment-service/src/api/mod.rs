//! HTTP API of payment-service: routes, shared state and the OpenAPI document.

pub mod error;
pub mod payments;

use auth::TokenVerifier;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use utoipa::OpenApi;
use web::openapi::{BearerAuth, Links, OperationLink, PlatformResponses};

use crate::charging::Charging;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub charging: Charging,
    pub verifier: TokenVerifier,
    /// Declines per account (card testing), see `domain::decline_throttle`.
    pub declines: std::sync::Arc<crate::domain::decline_throttle::DeclineThrottle>,
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/payments", get(payments::list).post(payments::create))
        .route("/api/payments/{id}", get(payments::get))
        .with_state(state)
}

/// The links the stateful use of the API follows: from a create to the reads and actions on
/// what it created.
const LINKS: Links = Links(&[
    OperationLink {
        from: ("post", "/api/payments", "201"),
        name: "GetPayment",
        to: ("get", "/api/payments/{id}"),
        parameters: &[("id", "$response.body#/id")],
        request_body: None,
    },
    OperationLink {
        from: ("post", "/api/payments", "201"),
        name: "ListOrderPayments",
        to: ("get", "/api/payments"),
        parameters: &[("order_id", "$response.body#/order_id")],
        request_body: None,
    },
    OperationLink {
        from: ("post", "/api/payments", "202"),
        name: "GetPendingPayment",
        to: ("get", "/api/payments/{id}"),
        parameters: &[("id", "$response.body#/id")],
        request_body: None,
    },
]);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payment-service",
        description = "Card payments for orders against the payment provider: idempotent (Idempotency-Key), at most one successful payment per order, payment.* events."
    ),
    paths(payments::create, payments::get, payments::list),
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
