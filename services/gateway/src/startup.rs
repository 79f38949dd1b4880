//! Wiring: configuration into the proxy state, the health checker, the rate-limit sweeper and
//! the HTTP server with its edge layers (request id, CORS, panic catching).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auth::{KeySource, TokenVerifier};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use web::{Lifecycle, Problem};

use crate::config::{Config, CorsConfig};
use crate::health;
use crate::proxy::{self, Proxy};

/// How often refilled rate-limit buckets are forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// A built, not yet running, gateway.
pub struct Application {
    lifecycle: Lifecycle,
}

impl Application {
    /// Verifies tokens with user-service's JWKS (`jwks_url`), cached and refetched when a
    /// token names an unknown key.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let keys = KeySource::remote(&config.jwks_url).context("building the JWKS client")?;
        Self::build_with_keys(config, keys).await
    }

    /// Builds the state and binds the listener; `keys` verify access tokens.
    pub async fn build_with_keys(config: Config, keys: KeySource) -> anyhow::Result<Self> {
        config.validate()?;
        let verifier = TokenVerifier::new(keys, &config.jwt_issuer, &config.jwt_audience);
        let proxy = Arc::new(Proxy::new(&config, verifier)?);
        let router = router(proxy.clone(), &config.cors)?;
        let mut lifecycle = Lifecycle::bind(&config.host, config.port, router).await?;
        let (checked, swept) = (proxy.clone(), proxy);
        let health = config.health;
        lifecycle
            .worker("health checker", |stop| health::run(checked, health, stop))
            .worker("rate-limit sweeper", |stop| sweep_limits(swept, stop));
        Ok(Self { lifecycle })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.lifecycle.port()
    }

    /// Serves until `shutdown` resolves: in-flight requests (and their streamed bodies)
    /// finish, then the background tasks stop.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.lifecycle.run_until_stopped(shutdown).await
    }
}

async fn sweep_limits(proxy: Arc<Proxy>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => proxy.sweep_limits(),
        }
    }
}

/// The gateway's own endpoints, everything else proxied, inside the edge layers. Layers run
/// outermost first: the request id exists before anything can fail, CORS answers preflights
/// before rate limits or tokens are looked at (browsers send no token on a preflight).
fn router(proxy: Arc<Proxy>, cors: &CorsConfig) -> anyhow::Result<Router> {
    let _ = web::metrics::handle();
    let x_request_id = HeaderName::from_static("x-request-id");
    Ok(Router::new()
        .route(
            "/health/live",
            get(|| async { axum::Json(serde_json::json!({"status": "up"})) }),
        )
        .route(
            "/health/ready",
            get(|State(proxy): State<Arc<Proxy>>| async move { health::readiness(&proxy) }),
        )
        .route("/metrics", get(web::metrics::render))
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .fallback(proxy::handle)
        .with_state(proxy)
        .layer(cors_layer(cors)?)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(
                    x_request_id.clone(),
                    RandomRequestId,
                ))
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(CatchPanicLayer::custom(|_| {
                    Problem::internal().into_response()
                })),
        ))
}

/// UUID v4 request ids from the thread-local CSPRNG: tower-http's `MakeRequestUuid` asks the
/// kernel for randomness on every request (one `getrandom` call each), which showed in the
/// gateway's syscall profile next to the two reads and writes a proxied request needs.
#[derive(Debug, Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = uuid::Uuid::encode_buffer();
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
            .ok()
            .map(RequestId::new)
    }
}

fn cors_layer(config: &CorsConfig) -> anyhow::Result<CorsLayer> {
    let origins = if config.allowed_origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .allowed_origins
                .iter()
                .map(|origin| {
                    HeaderValue::from_str(origin)
                        .with_context(|| format!("CORS origin {origin:?} is not a header value"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
    };
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("tracestate"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            header::LOCATION,
            header::ETAG,
        ])
        .max_age(Duration::from_secs(config.max_age_secs)))
}
