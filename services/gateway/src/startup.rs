//! Wiring: configuration into the proxy state, the health checker, the rate-limit sweeper and
//! the HTTP server with its edge layers (request id, CORS, security headers, panic catching),
//! run by the services' shared `web::Lifecycle` with the gateway's own connection limits.

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
use tower_http::set_header::SetResponseHeaderLayer;
use web::{ConnectionLimits, Lifecycle, Problem};

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

    /// Builds the state and binds the listener; `keys` verify access tokens. The health
    /// checker and the rate-limit sweeper run beside the server and stop after it drains.
    pub async fn build_with_keys(config: Config, keys: KeySource) -> anyhow::Result<Self> {
        config.validate()?;
        let verifier = TokenVerifier::new(keys, &config.jwt_issuer, &config.jwt_audience);
        let proxy = Arc::new(Proxy::new(&config, verifier)?);
        let router = router(proxy.clone(), &config)?;
        let mut lifecycle = Lifecycle::bind(&config.host, config.port, router).await?;
        lifecycle.connection_limits(ConnectionLimits {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            max_header_bytes: config.max_header_bytes,
        });
        let checked = proxy.clone();
        let health = config.health.clone();
        lifecycle
            .worker("health checker", move |stop| {
                health::run(checked, health, stop)
            })
            .worker("rate-limit sweeper", move |stop| sweep_limits(proxy, stop));
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
/// before rate limits or tokens are looked at (browsers send no token on a preflight), and
/// the security headers are set on every answer, the gateway's own problems included.
fn router(proxy: Arc<Proxy>, config: &Config) -> anyhow::Result<Router> {
    let _ = web::metrics::handle();
    let x_request_id = HeaderName::from_static("x-request-id");
    let router = Router::new()
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
        .layer(cors_layer(&config.cors)?)
        .layer(axum::middleware::map_response(no_grant_without_origin));
    Ok(
        with_security_headers(router, config.hsts_max_age_secs)?.layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(
                    x_request_id.clone(),
                    RandomRequestId,
                ))
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(CatchPanicLayer::custom(|_| {
                    Problem::internal().into_response()
                })),
        ),
    )
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

/// The storefront's Content-Security-Policy: its scripts, styles and API are same-origin
/// (Vite emits no inline script), product images may come from any HTTPS host, and nothing
/// may frame the shop (clickjacking). The API's JSON answers get it too: harmless there, and
/// one policy for every answer leaves no path without it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: https:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// `nosniff` (no MIME sniffing of JSON into HTML), no framing (both the old header and CSP's
/// `frame-ancestors`), no referrer leaving the shop, the CSP above, and HSTS when configured.
/// Each is kept when the upstream set its own.
fn with_security_headers(router: Router, hsts_max_age_secs: Option<u64>) -> anyhow::Result<Router> {
    let hsts = match hsts_max_age_secs {
        Some(secs) => Some(
            HeaderValue::from_str(&format!("max-age={secs}; includeSubDomains"))
                .context("HSTS header")?,
        ),
        None => None,
    };
    Ok(router
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            hsts,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        )))
}

/// tower-http's CORS layer answers every preflight with the allowed methods and headers and
/// leaves out only `Access-Control-Allow-Origin` for an origin it does not allow. Browsers
/// refuse on that alone, but the rest tells any origin what the API accepts; an answer that
/// grants no origin grants nothing here.
async fn no_grant_without_origin(
    mut response: axum::response::Response,
) -> axum::response::Response {
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        for name in [
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
        ] {
            headers.remove(name);
        }
    }
    response
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
