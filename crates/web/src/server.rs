//! The router every service shares at its edge, and the server loop that takes a listener and
//! a shutdown signal (port 0 in tests, SIGTERM draining in production).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::{Instrument, field};

use crate::extract::MAX_BODY_BYTES;
use crate::health::{self, Readiness};
use crate::metrics;
use crate::problem::{Problem, ServerProblem};

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
    let openapi = crate::openapi::with_openapi_link_names(&info.openapi_json);
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
    .layer(middleware::from_fn(move |req, next| {
        read_whole_body(timeout, req, next)
    }))
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

/// The most of an oversized body read (and thrown away) before answering 413, so that the
/// caller, typically the gateway with its own larger limit, can finish sending and read the
/// answer. A declared length above it is refused at once.
const DRAIN_MAX_BYTES: usize = 2 * 1024 * 1024;

/// Reads the whole request body before any routing or extraction. A handler (or an extractor,
/// or the 404 fallback) that answers without reading the body made hyper close the connection
/// while the client was still sending it; the gateway, writing the body to a pooled
/// connection, then saw a broken pipe and answered 502 instead of the service's 404 or 422
/// (found by the contract fuzzing through the gateway). Bodies are at most 64 KiB and every
/// handler buffers them anyway, so buffering here costs nothing; a body slower than the
/// request timeout is refused.
async fn read_whole_body(timeout: Duration, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > DRAIN_MAX_BYTES) {
        return Problem::payload_too_large(MAX_BODY_BYTES).into_response();
    }
    let (parts, body) = req.into_parts();
    let read = async move {
        let mut stream = body.into_data_stream();
        let mut buffer = bytes::BytesMut::new();
        let mut seen = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|_| Problem::bad_request("the request body could not be read"))?;
            seen = seen.saturating_add(chunk.len());
            if seen > DRAIN_MAX_BYTES {
                return Err(Problem::payload_too_large(MAX_BODY_BYTES));
            }
            if seen <= MAX_BODY_BYTES {
                buffer.extend_from_slice(&chunk);
            }
        }
        if seen > MAX_BODY_BYTES {
            return Err(Problem::payload_too_large(MAX_BODY_BYTES));
        }
        Ok(buffer.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(problem)) => problem.into_response(),
        Err(_) => Problem::bad_request("the request body did not arrive in time").into_response(),
    }
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
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| match access_log_level(status, elapsed) {
        AccessLogLevel::Warn => match response.extensions().get::<ServerProblem>() {
            Some(problem) => tracing::warn!(
                status = status.as_u16(),
                latency_ms,
                problem_type = %problem.problem_type,
                detail = %problem.detail,
                "request finished"
            ),
            None => tracing::warn!(status = status.as_u16(), latency_ms, "request finished"),
        },
        AccessLogLevel::Info => {
            tracing::info!(status = status.as_u16(), latency_ms, "request finished")
        }
        AccessLogLevel::Debug => {
            tracing::debug!(status = status.as_u16(), latency_ms, "request finished")
        }
    });
    metrics::record_request(&method, &route, status, elapsed.as_secs_f64());
    response
}

/// A request slower than this is logged at INFO whatever its status.
const SLOW_REQUEST: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AccessLogLevel {
    Warn,
    Info,
    Debug,
}

/// The level of a request's access-log line: WARN for a server error, INFO for a refused
/// request (4xx) or a slow one, DEBUG for a quick success (`RUST_LOG=debug` shows every
/// request). Every request still has its span and its metrics. Why not INFO for all: under
/// `cargo xtask bench` product-service wrote one JSON line per read, 30,000 a second, 8 GB
/// over a run, and formatting them was a share of its CPU; the gateway already logs its
/// forwards at DEBUG for the same reason.
fn access_log_level(status: StatusCode, elapsed: Duration) -> AccessLogLevel {
    if status.is_server_error() {
        AccessLogLevel::Warn
    } else if status.is_client_error() || elapsed >= SLOW_REQUEST {
        AccessLogLevel::Info
    } else {
        AccessLogLevel::Debug
    }
}

/// How long a client may keep an idle keep-alive connection to one of these servers (or to any
/// server it does not control) before it stops reusing it. hyper's header read timeout also
/// runs while a kept-alive connection waits for its next request, so these servers close a
/// connection idle for [`ConnectionLimits::header_read_timeout`] (10 s); a client that reuses
/// it at that moment has sent its request into a closing socket and gets "connection closed
/// before message completed" (a CI run's gateway answered a payment 502 so, from a pooled
/// connection to payment-service idle for about 10 s). A client that drops idle connections
/// well before the server's close never meets that race; 4 s is also below the 5 s keep-alive
/// of Node.js servers, the shortest common default.
pub const CLIENT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// What one client connection may cost before its request is even read: a client that
/// trickles its headers a byte at a time (slowloris) holds its connection and buffers only for
/// `header_read_timeout`, and a request head larger than `max_header_bytes` is answered 431
/// before it is buffered further (hyper's own default is about 400 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    /// At least 8192, hyper's minimum.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    /// 10 s for the headers and 32 KiB of them: a browser's request with its cookies and a
    /// bearer token is a few KiB.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
        }
    }
}

/// Serves `router` on `listener` with the default [`ConnectionLimits`] until `shutdown`
/// resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, router, ConnectionLimits::default(), shutdown).await
}

/// Accepts connections until `shutdown`, then waits for the open ones to finish their
/// requests. Hand-written rather than `axum::serve` because that one sets no timer on hyper's
/// connections, so hyper's header read timeout never applies. Every request carries the
/// client's address as `ConnectInfo<SocketAddr>`, as `axum::serve` would add it.
pub async fn serve_with_limits(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // TCP_NODELAY on every connection: a response written as headers and then body chunks
        // (event streams, the gateway's proxied bodies) would otherwise wait for the client's
        // delayed ACK (up to 40 ms) before its second write; in the gateway that showed as a
        // 4-8x throughput loss under load.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let service = tower::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { tower::Service::call(&mut router, request.map(Body::new)).await }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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

#[cfg(test)]
mod tests {
    use axum::routing::post;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;

    #[test]
    fn quick_successes_log_at_debug_refusals_and_slow_requests_at_info_errors_at_warn() {
        let quick = Duration::from_millis(3);
        for (status, latency, expected) in [
            (StatusCode::OK, quick, AccessLogLevel::Debug),
            (StatusCode::SEE_OTHER, quick, AccessLogLevel::Debug),
            (StatusCode::OK, SLOW_REQUEST, AccessLogLevel::Info),
            (StatusCode::NOT_FOUND, quick, AccessLogLevel::Info),
            (StatusCode::UNAUTHORIZED, quick, AccessLogLevel::Info),
            (StatusCode::SERVICE_UNAVAILABLE, quick, AccessLogLevel::Warn),
        ] {
            assert_eq!(
                access_log_level(status, latency),
                expected,
                "{status} in {latency:?}"
            );
        }
    }

    /// Reads one HTTP/1.1 response (headers and a `Content-Length` body); `None` at EOF.
    async fn read_response(stream: &mut TcpStream) -> Option<String> {
        let mut received = Vec::new();
        let mut byte = [0u8; 1];
        while !received.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => received.push(byte[0]),
                _ => return None,
            }
        }
        let head = String::from_utf8_lossy(&received).to_string();
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.ok()?;
        Some(format!("{head}{}", String::from_utf8_lossy(&body)))
    }

    /// A handler that refuses a request by its path alone must still let the client finish
    /// sending the body and keep the connection: the gateway writes bodies to pooled
    /// connections, and a connection closed under it turned the service's 404 into a 502.
    #[tokio::test]
    async fn an_early_refusal_waits_for_the_body_and_keeps_the_connection() {
        let router = Router::new()
            .route(
                "/things/{id}",
                post(|crate::Path(id): crate::Path<uuid::Uuid>| async move { id.to_string() }),
            )
            .layer(middleware::from_fn(|req, next| {
                read_whole_body(Duration::from_secs(10), req, next)
            }));
        let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
            panic!("cannot bind a port");
        };
        let Ok(address) = listener.local_addr() else {
            panic!("no local address");
        };
        tokio::spawn(async move { axum::serve(listener, router).await });
        let Ok(mut stream) = TcpStream::connect(address).await else {
            panic!("cannot connect");
        };
        let body = br#"{"delta": 1, "reason": "x"}"#;
        let head = format!(
            "POST /things/not-a-uuid HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        assert!(stream.write_all(head.as_bytes()).await.is_ok());
        // Before the fix the 404 came at once, before the body; now nothing is answered until
        // the body is in. Wait a little for an early answer, then send the body either way.
        let mut early = [0u8; 1];
        let answered_early =
            tokio::time::timeout(Duration::from_millis(300), stream.peek(&mut early))
                .await
                .is_ok();
        assert!(!answered_early, "answered before the body was sent");
        assert!(stream.write_all(body).await.is_ok());
        let first = read_response(&mut stream).await.unwrap_or_default();
        assert!(first.starts_with("HTTP/1.1 404"), "{first}");
        // The same connection serves the next request.
        let again = format!(
            "POST /things/{} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
            uuid::Uuid::nil()
        );
        assert!(stream.write_all(again.as_bytes()).await.is_ok());
        let second = read_response(&mut stream).await.unwrap_or_default();
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    }

    /// Serves a router answering `GET /` with "ok" under `limits`; returns its address.
    async fn serve_limited(limits: ConnectionLimits) -> std::net::SocketAddr {
        let router = Router::new().route("/", get(|| async { "ok" }));
        let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
            panic!("cannot bind a port");
        };
        let Ok(address) = listener.local_addr() else {
            panic!("no local address");
        };
        tokio::spawn(serve_with_limits(
            listener,
            router,
            limits,
            std::future::pending(),
        ));
        address
    }

    /// Sends `bytes` to a server with a 300 ms header read timeout and reads until the server
    /// closes the connection (failing the test if it has not within 20 s); what came back.
    async fn sent_until_closed(bytes: &[u8]) -> String {
        let address = serve_limited(ConnectionLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ConnectionLimits::default()
        })
        .await;
        let Ok(mut stream) = TcpStream::connect(address).await else {
            panic!("cannot connect");
        };
        assert!(stream.write_all(bytes).await.is_ok());
        let mut received = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received)).await;
        assert!(closed.is_ok(), "the connection stayed open");
        String::from_utf8_lossy(&received).into_owned()
    }

    /// A client that trickles its headers (slowloris) loses its connection once the header
    /// read timeout passes, instead of holding it for as long as it likes.
    #[tokio::test]
    async fn a_client_slow_to_send_its_headers_is_disconnected() {
        // The server closes the connection (EOF, or a 408 before it); a server without the
        // timer would keep it open and the read would run into its deadline.
        let text = sent_until_closed(b"GET / HTTP/1.1\r\nHost: te").await;
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }

    /// The header read timeout also closes a kept-alive connection that waits for its next
    /// request: the reason clients keep idle connections for less
    /// ([`CLIENT_POOL_IDLE_TIMEOUT`]) than the servers' default timeout.
    #[tokio::test]
    async fn an_idle_kept_alive_connection_is_closed_after_the_header_read_timeout() {
        assert!(CLIENT_POOL_IDLE_TIMEOUT * 2 <= ConnectionLimits::default().header_read_timeout);
        // The answer, then (the connection kept alive and idle) EOF.
        let text = sent_until_closed(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            !text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
    }

    /// A request head over the limit is answered 431 and goes no further; one under it is
    /// served.
    #[tokio::test]
    async fn a_request_head_over_the_limit_is_answered_431() {
        let address = serve_limited(ConnectionLimits {
            max_header_bytes: 16 * 1024,
            ..ConnectionLimits::default()
        })
        .await;
        for (size, expected) in [(1024, "HTTP/1.1 200"), (64 * 1024, "HTTP/1.1 431")] {
            let Ok(mut stream) = TcpStream::connect(address).await else {
                panic!("cannot connect");
            };
            let head = format!(
                "GET / HTTP/1.1\r\nHost: test\r\nX-Padding: {}\r\n\r\n",
                "a".repeat(size)
            );
            // The server may answer and close before it has read everything sent.
            let _ = stream.write_all(head.as_bytes()).await;
            let mut received = vec![0u8; 12];
            let read =
                tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut received))
                    .await;
            assert!(
                matches!(read, Ok(Ok(_))),
                "no answer for a {size}-byte header"
            );
            assert_eq!(String::from_utf8_lossy(&received), expected, "{size}");
        }
    }
}
