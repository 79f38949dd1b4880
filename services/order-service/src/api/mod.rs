//! HTTP API of order-service: routes, shared state and the OpenAPI document.

pub mod approvals;
pub mod error;
pub mod orders;
pub mod refunds;

use auth::TokenVerifier;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use sqlx::PgPool;
use utoipa::OpenApi;
use web::openapi::{BearerAuth, Links, OperationLink, PlatformResponses};

use crate::placing::Placing;
use crate::refunds::RefundSettings;
use crate::saga::SagaSettings;
use crate::status_feed::StatusFeed;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub verifier: TokenVerifier,
    pub saga: SagaSettings,
    pub feed: StatusFeed,
    pub engine: workflow::EngineClient,
    pub refunds: RefundSettings,
    /// `POST /api/orders` goes through it.
    pub placing: Placing,
    /// Refuses new orders while the saga is behind.
    pub admission: crate::admission::Admission,
}

/// How long a client is told to wait before retrying when the workflow engine is unreachable
/// (a restarted engine answers within seconds; a longer outage gets more 503s, each cheap).
pub const ENGINE_RETRY_AFTER_SECS: u64 = 5;

/// The 503 of a request that needs the workflow engine while it is unreachable, with
/// `Retry-After`.
pub(crate) fn engine_unavailable(detail: &str) -> web::Problem {
    let mut problem = web::Problem::unavailable(detail);
    problem.retry_after_secs = Some(ENGINE_RETRY_AFTER_SECS);
    problem
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/orders", get(orders::list).post(orders::create))
        .route("/api/orders/{id}", get(orders::get))
        .route("/api/orders/{id}/events", get(orders::events))
        .route("/api/orders/{id}/cancel", post(orders::cancel))
        .route("/api/admin/orders", get(orders::admin_list))
        .route(
            "/api/orders/{id}/refund-requests",
            get(refunds::list).post(refunds::create),
        )
        .route("/api/admin/approvals", get(approvals::list))
        .route("/api/admin/approvals/{task}", post(approvals::decide))
        .with_state(state)
}

/// The links the stateful use of the API follows: from a create to the reads and actions on
/// what it created.
const LINKS: Links = Links(&[
    OperationLink {
        from: ("post", "/api/orders", "201"),
        name: "GetOrder",
        to: ("get", "/api/orders/{id}"),
        parameters: &[("id", "$response.body#/id")],
        request_body: None,
    },
    OperationLink {
        from: ("post", "/api/orders", "201"),
        name: "CancelOrder",
        to: ("post", "/api/orders/{id}/cancel"),
        parameters: &[("id", "$response.body#/id")],
        request_body: None,
    },
    OperationLink {
        from: ("post", "/api/orders", "201"),
        name: "ListRefundRequests",
        to: ("get", "/api/orders/{id}/refund-requests"),
        parameters: &[("id", "$response.body#/id")],
        request_body: None,
    },
    OperationLink {
        from: ("post", "/api/orders", "201"),
        name: "RequestRefund",
        to: ("post", "/api/orders/{id}/refund-requests"),
        parameters: &[("id", "$response.body#/id")],
        request_body: Some(r#"{"reason": "changed_mind"}"#),
    },
    OperationLink {
        from: ("post", "/api/orders/{id}/cancel", "200"),
        name: "GetCancelledOrder",
        to: ("get", "/api/orders/{id}"),
        parameters: &[("id", "$response.body#/id")],
        request_body: None,
    },
]);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-service",
        description = "Orders and the checkout saga: an order is priced from the product replica, classified by the risk table (order-risk on the workflow engine), reserved by product-service, paid through payment-service, and ends PAID, REJECTED or CANCELLED. A risky order waits REVIEW, its stock held, until an admin approves it (AWAITING_PAYMENT) or rejects it (REJECTED, reason review_rejected), or its review times out (REJECTED, reason review_timeout); admins decide it with the approvals routes like refund requests. A paid order may be refunded through a refund request (the `refund` process on the workflow engine) and end REFUNDED. Every change is published on order.events."
    ),
    paths(
        orders::create,
        orders::get,
        orders::events,
        orders::list,
        orders::cancel,
        refunds::create,
        refunds::list,
        approvals::list,
        approvals::decide,
        orders::admin_list
    ),
    components(schemas(web::Problem, web::FieldError, crate::status_feed::StatusChange)),
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
