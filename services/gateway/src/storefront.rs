//! The web storefront's static files (the SPA built from `web/` by `cargo xtask up`), served
//! at `/` from a configured directory.
//!
//! Caching follows the build's naming: files under `/assets/` carry a content hash in their
//! name, so they are cached for a year as `immutable`; everything else (above all `index.html`,
//! which names the current hashes) is `no-cache`, so a new release is picked up on the next
//! load. Client routes (`/products/…`, `/orders/…`) have no file and get `index.html` (the SPA
//! fallback), but never a path that belongs to the platform (`/api/**`, `/health/**`,
//! `/.well-known/**`, `/metrics`, `/docs`, `/openapi.json`): an unknown API path must stay a
//! 404 problem document, not become an HTML page with status 200. A missing hashed asset is a
//! 404 too, so a stale page fails loudly instead of parsing HTML as JavaScript.

use std::path::{Path, PathBuf};

use anyhow::ensure;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use tower::ServiceExt as _;
use tower_http::services::{ServeDir, ServeFile};
use web::Problem;

/// Paths that are the platform's, never the storefront's (whole-segment prefixes).
const PLATFORM_PREFIXES: [&str; 6] = [
    "/api",
    "/health",
    "/.well-known",
    "/metrics",
    "/docs",
    "/openapi.json",
];

/// Where the build puts its content-hashed files.
const HASHED_ASSETS: &str = "/assets/";

const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// The built storefront on disk.
#[derive(Debug, Clone)]
pub struct Storefront {
    files: ServeDir,
    index: PathBuf,
}

impl Storefront {
    /// Refuses a directory without `index.html`: a gateway pointed at an unbuilt storefront
    /// should fail at start, not answer 404 for `/`.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let index = root.join("index.html");
        ensure!(
            index.is_file(),
            "the storefront directory {} has no index.html (build it: `cargo xtask up` runs \
             npm ci and vite build in web/)",
            root.display()
        );
        Ok(Self {
            files: ServeDir::new(root)
                .append_index_html_on_directories(true)
                .precompressed_gzip(),
            index,
        })
    }

    /// Answers a request for `path`, which no API route matched.
    pub async fn serve(&self, request: Request) -> Response {
        let path = request.uri().path().to_owned();
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Problem::method_not_allowed().into_response();
        }
        let hashed = path.starts_with(HASHED_ASSETS);
        let spa_route = !hashed && is_client_route(&path);
        let found = match self.files.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let mut response = if found.status() == StatusCode::NOT_FOUND && spa_route {
            match ServeFile::new(&self.index)
                .oneshot(Request::new(Body::empty()))
                .await
            {
                Ok(index) => index.map(Body::new),
                Err(never) => match never {},
            }
        } else if found.status() == StatusCode::NOT_FOUND {
            return Problem::not_found("no file of the storefront lives at this path")
                .into_response();
        } else {
            found.map(Body::new)
        };
        let cache = if hashed && response.status().is_success() {
            IMMUTABLE
        } else {
            NO_CACHE
        };
        response.headers_mut().insert(header::CACHE_CONTROL, cache);
        response
    }
}

/// Whether the storefront may answer `path` at all (it is not the platform's).
pub fn is_site_path(path: &str) -> bool {
    !PLATFORM_PREFIXES
        .iter()
        .any(|prefix| crate::routes::prefix_matches(prefix, path))
}

/// A path the SPA's router handles: no file extension in its last segment (`/orders/42`),
/// unlike a missing file (`/favicon.ico`, `/robots.txt`), which stays a 404.
fn is_client_route(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or_default();
    !last.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_paths_are_never_the_storefront_s() {
        for path in [
            "/api",
            "/api/nothing/here",
            "/health/other",
            "/.well-known/openid-configuration",
            "/metrics",
            "/docs",
            "/openapi.json",
        ] {
            assert!(!is_site_path(path), "{path}");
        }
        for path in [
            "/",
            "/products/1",
            "/apis",
            "/healthy",
            "/assets/index-1.js",
        ] {
            assert!(is_site_path(path), "{path}");
        }
    }

    #[test]
    fn client_routes_have_no_extension() {
        assert!(is_client_route("/"));
        assert!(is_client_route("/orders/0b7e-42"));
        assert!(is_client_route("/signin/complete"));
        assert!(!is_client_route("/favicon.ico"));
        assert!(!is_client_route("/assets/index-abc.js"));
    }
}
