//! HTTP API of product-service: routes, shared state and the OpenAPI document.

pub mod error;
pub mod products;
pub mod views;

use std::ops::Deref;
use std::sync::Arc;

use auth::TokenVerifier;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use utoipa::OpenApi;
use web::openapi::{BearerAuth, Links, MinProperties, OperationLink, PlatformResponses};

use crate::catalog::Catalog;
use crate::catalog::writes::CatalogWrites;

/// What every handler can reach. axum clones the state for every request, so it is one
/// shared allocation: cloning the parts one by one (a reference count each, several inside
/// the views' cache) and dropping them again was 2.7% of product-service's CPU per cached
/// read (`perf`, `GET /api/products/{id}` at saturation).
#[derive(Clone)]
pub struct AppState(Arc<AppStateParts>);

impl AppState {
    pub fn new(parts: AppStateParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl Deref for AppState {
    type Target = AppStateParts;

    fn deref(&self) -> &AppStateParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppStateParts {
    pub verifier: TokenVerifier,
    /// The in-memory catalog every read is served from.
    pub catalog: Catalog,
    /// Every admin write goes through it.
    pub writes: CatalogWrites,
    /// The JSON of product views already written, for the answers that show them again.
    pub views: views::RenderedViews,
}

impl FromRef<AppState> for TokenVerifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

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

/// Partial-update bodies the handlers refuse when they change nothing.
const PARTIAL_UPDATES: MinProperties = MinProperties(&[("ProductPatch", 2)]);

/// The links the stateful use of the API follows: from a create to the reads and actions on
/// what it created.
const LINKS: Links = Links(&[
    OperationLink {
        from: ("post", "/api/products", "201"),
        name: "GetProduct",
        to: ("get", "/api/products/{id}"),
        parameters: &[("id", "$response.body#/id")],
        request_body: None,
    },
    OperationLink {
        from: ("post", "/api/products", "201"),
        name: "UpdateProduct",
        to: ("patch", "/api/products/{id}"),
        parameters: &[("id", "$response.body#/id")],
        request_body: Some(
            r#"{"version": "$response.body#/version", "name": "Renamed through a link"}"#,
        ),
    },
    OperationLink {
        from: ("post", "/api/products", "201"),
        name: "AdjustStock",
        to: ("post", "/api/products/{id}/stock"),
        parameters: &[("id", "$response.body#/id")],
        request_body: Some(r#"{"delta": 5, "reason": "restocked through a link"}"#),
    },
    OperationLink {
        from: ("post", "/api/products", "201"),
        name: "DeleteProduct",
        to: ("delete", "/api/products/{id}"),
        parameters: &[("id", "$response.body#/id")],
        request_body: None,
    },
    OperationLink {
        from: ("patch", "/api/products/{id}", "200"),
        name: "GetUpdatedProduct",
        to: ("get", "/api/products/{id}"),
        parameters: &[("id", "$response.body#/id")],
        request_body: None,
    },
]);

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
    components(schemas(web::Problem, web::FieldError, products::Specs, products::SpecValue)),
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
