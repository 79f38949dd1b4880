//! The router every service shares at its edge, and the server loop that takes a listener and
//! a shutdown signal (port 0 in tests, SIGTERM draining in production).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::{Instrument, field};

use crate::extract::MAX_BODY_BYTES;
use crate::health::{self, Readiness};
use crate::metrics;
use crate::problem::Problem;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the shared router needs to know about a service.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    pub name: &'static str,
    /// The OpenAPI document, served at `/openapi.json`.
    pub openapi_json: String,
    /// The longest a request may take before it is answered 503.
    pub request_timeout: Duration,
}

/// [`service_router`] for the service `name` whose OpenAPI document is `Doc`: renders the
/// document once, at start, and serves it at `/openapi.json`.
pub fn documented_service_router<Doc: utoipa::OpenApi>(
    name: &'static str,
    request_timeout: Duration,
    api: Router,
    readiness: Readiness,
) -> anyhow::Result<Router> {
    let openapi_json = Doc::openapi()
        .to_json()
        .map_err(|error| anyhow::anyhow!("rendering the OpenAPI document: {error}"))?;
    Ok(service_router(
        ServiceInfo {
            name,
            openapi_json,
            request_timeout,
        },
        api,
        readiness,
    ))
}

/// Wraps a service's API routes with the platform endpoints and the edge middleware.
pub fn service_router(info: ServiceInfo, api: Router, readiness: Readiness) -> Router {
    let _ = metrics::handle();
    let openapi = info.openapi_json.clone();
    let timeout = info.request_timeout;
    let platform = Router::new()
        .merge(health::router(readiness))
        .route("/metrics", get(metrics::render))
        .route(
            "/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], openapi) }
            }),
        )
        .route("/docs", get(crate::docs::page));

    api.layer(middleware::from_fn(move |req, next| {
        with_timeout(timeout, req, next)
    }))
    .merge(platform)
    .fallback(|| async { Problem::not_found("no such resource") })
    .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .layer(middleware::from_fn(trace_request))
    .layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(CatchPanicLayer::custom(|_| {
                Problem::internal().into_response()
            })),
    )
}

async fn with_timeout(timeout: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
            Problem::unavailable("the request took too long; try again").into_response()
        }
    }
}

/// One server span per request, joined to the caller's `traceparent`, plus the access log line
/// and the request metrics.
async fn trace_request(req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = field::Empty,
        http.method = %method,
        http.route = %route,
        http.status_code = field::Empty,
        request_id = %request_id,
        trace_id = field::Empty,
    );
    telemetry::adopt_parent(&span, telemetry::context_from_http(req.headers()));
    span.record("trace_id", telemetry::trace_id(&span));

    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.record("http.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        )
    });
    metrics::record_request(&method, &route, status, elapsed.as_secs_f64());
    response
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // TCP_NODELAY on every connection: a response written as headers and then body chunks
    // (event streams, the gateway's proxied bodies) would otherwise wait for the client's
    // delayed ACK (up to 40 ms) before its second write; in the gateway that showed as a 4-8x
    // throughput loss under load.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining");
}
