//! HTTP API of product-service: routes, shared state and the OpenAPI document.

pub mod error;
pub mod products;

use std::sync::Arc;

use auth::TokenVerifier;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use contracts::topics::Topic;
use messaging::mongo::RelayWake;
use utoipa::OpenApi;
use uuid::Uuid;
use web::openapi::BearerAuth;

use crate::store::products::Products;

/// Products read by id, kept briefly in memory. Local writes invalidate their entry at once;
/// other replicas' writes arrive through `product.events` (`events::cache`), and the TTL bounds
/// what that misses.
pub type ProductCache = moka::future::Cache<Uuid, Arc<products::ProductView>>;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub products: Products,
    pub verifier: TokenVerifier,
    pub topics: Topic,
    pub cache: ProductCache,
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
        description = "The catalog: public search and product pages; admin writes with optimistic concurrency and stock adjustments. Every change is published on product.events."
    ),
    paths(
        products::list,
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
