//! HTTP API of product-service: routes, shared state and the OpenAPI document.

pub mod error;
pub mod products;

use std::sync::Arc;

use auth::TokenVerifier;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use contracts::topics::Topic;
use tokio::sync::Notify;
use utoipa::OpenApi;
use uuid::Uuid;
use web::openapi::BearerAuth;

use crate::catalog::Catalog;
use crate::store::products::Products;

/// What the inventory path tells after it changed a product's stock (it calls `invalidate`):
/// this replica's read model then reloads that product from MongoDB at once instead of
/// waiting for its snapshot on `product.events` (which arrives too and is ignored by version).
/// The name is the one the inventory code knows from the product cache this replaced.
pub type ProductCache = StockRefresh;

#[derive(Clone)]
pub struct StockRefresh {
    catalog: Catalog,
    products: Products,
}

impl StockRefresh {
    pub fn new(catalog: Catalog, products: Products) -> Self {
        Self { catalog, products }
    }

    /// Reloads product `id` into the read model in the background (the caller, a reservation,
    /// does not wait for it; a failure leaves the model to the topic).
    pub async fn invalidate(&self, id: &Uuid) {
        let (catalog, products, id) = (self.catalog.clone(), self.products.clone(), *id);
        tokio::spawn(async move {
            let refreshed = async {
                if let Some(product) = products.get(&id).await? {
                    catalog.apply_now(product.snapshot()?).await?;
                }
                anyhow::Ok(())
            };
            if let Err(error) = refreshed.await {
                tracing::debug!(error = format!("{error:#}"), %id, "stock refresh skipped");
            }
        });
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub products: Products,
    pub verifier: TokenVerifier,
    pub topics: Topic,
    /// The in-memory catalog every read is served from.
    pub catalog: Catalog,
    /// Wakes the outbox relay after a write.
    pub relay_wake: Arc<Notify>,
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
