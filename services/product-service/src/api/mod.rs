//! HTTP API of product-service: routes, shared state and the OpenAPI document.

pub mod error;
pub mod products;

use auth::TokenVerifier;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use contracts::topics::Topic;
use messaging::mongo::RelayWake;
use utoipa::OpenApi;
use web::openapi::BearerAuth;

use crate::catalog::Catalog;
use crate::store::products::Products;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub products: Products,
    pub verifier: TokenVerifier,
    pub topics: Topic,
    /// The in-memory catalog every read is served from.
    pub catalog: Catalog,
    /// Names each written product to the outbox relay, so its event leaves at once.
    pub relay_wake: RelayWake,
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The CloudEvents `source` of everything this service emits.
pub const EVENT_SOURCE: &str = "/product-service";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/products", get(products::list).post(products::create))
        .route("/api/products/suggest", get(products::suggest))
        .route(
            "/api/products/{id}",
            get(products::get)
                .patch(products::update)
                .delete(products::delete),
        )
        .route("/api/products/{id}/stock", post(products::adjust_stock))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "product-service",
        description = "The catalog: public search (ranked full text in Chinese and English, facets, search as you type) and product pages, served from an in-memory read model; admin writes with optimistic concurrency and stock adjustments. Every change is published on product.events."
    ),
    paths(
        products::list,
        products::suggest,
        products::get,
        products::create,
        products::update,
        products::delete,
        products::adjust_stock
    ),
    components(schemas(web::Problem, web::FieldError)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;
