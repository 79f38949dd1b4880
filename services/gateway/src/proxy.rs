//! The request path: route, check the edge rules (clean path, body size, rate limits, token),
//! pick a healthy instance, forward over a pooled connection with streamed bodies, and map
//! every upstream failure to a problem document (502 unreachable, 503 no healthy instance,
//! 504 too slow), so a client never waits on a dead upstream.
//!
//! Idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE) are buffered (they are small, and
//! bounded by the body limit) so that a connect failure can be retried once on another
//! instance; other methods stream straight through and are never retried.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::{AuthError, TokenVerifier};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Uri};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing::{Instrument as _, field};
use uuid::Uuid;
use web::Problem;

use crate::config::Config;
use crate::ratelimit::KeyedLimiter;
use crate::routes::{LimitClass, Route, RouteTable, is_clean_path, is_idempotent};
use crate::storefront::{self, Storefront};
use crate::upstream::Pool;

/// The pooled HTTP/1.1 client every upstream request goes through.
pub type UpstreamClient = Client<HttpConnector, Body>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Everything the request path needs, shared by all connections.
#[derive(Debug)]
pub struct Proxy {
    routes: RouteTable,
    pools: Vec<Pool>,
    client: UpstreamClient,
    verifier: TokenVerifier,
    per_ip: Option<KeyedLimiter<IpAddr>>,
    strict: Option<KeyedLimiter<IpAddr>>,
    per_user: Option<KeyedLimiter<Uuid>>,
    max_body_bytes: usize,
    trust_forwarded_for: bool,
    /// The web storefront, answering what no route matches (see [`crate::storefront`]).
    storefront: Option<Storefront>,
}

impl Proxy {
    pub fn new(config: &Config, verifier: TokenVerifier) -> anyhow::Result<Self> {
        let mut pools = Vec::with_capacity(config.services.len());
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let service = &config.services[&route.service];
            let pool = match pools
                .iter()
                .position(|p: &Pool| *p.service == *route.service)
            {
                Some(index) => index,
                None => {
                    pools.push(Pool::new(&route.service, &service.urls)?);
                    pools.len() - 1
                }
            };
            routes.push(Route {
                prefix: route.prefix.as_str().into(),
                pool,
                auth: route.auth,
                limit: route.limit,
                timeout: Duration::from_millis(route.timeout_ms.unwrap_or(service.timeout_ms)),
            });
        }

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout()));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            // Below the services' idle close (`web::CLIENT_POOL_IDLE_TIMEOUT`).
            .pool_idle_timeout(web::CLIENT_POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);

        Ok(Self {
            routes: RouteTable::new(routes),
            pools,
            client,
            verifier,
            per_ip: KeyedLimiter::new(config.limits.per_ip),
            strict: KeyedLimiter::new(config.limits.strict),
            per_user: KeyedLimiter::new(config.limits.per_user),
            max_body_bytes: config.max_body_bytes,
            trust_forwarded_for: config.trust_forwarded_for,
            storefront: config
                .web_root
                .as_deref()
                .map(|root| Storefront::open(Path::new(root)))
                .transpose()?,
        })
    }

    /// Only services some route points at have a pool.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    pub fn client(&self) -> &UpstreamClient {
        &self.client
    }

    /// Drops rate-limit keys whose buckets have refilled (bounds memory).
    pub fn sweep_limits(&self) {
        if let Some(limit) = &self.per_ip {
            limit.sweep();
        }
        if let Some(limit) = &self.strict {
            limit.sweep();
        }
        if let Some(limit) = &self.per_user {
            limit.sweep();
        }
    }

    async fn forward(&self, route: &Route, request: Request, peer: SocketAddr) -> Response {
        match self.try_forward(route, request, peer).await {
            Ok(response) => response,
            Err(problem) => problem.into_response(),
        }
    }

    async fn try_forward(
        &self,
        route: &Route,
        request: Request,
        peer: SocketAddr,
    ) -> Result<Response, Problem> {
        let (mut parts, body) = request.into_parts();
        if !is_clean_path(parts.uri.path()) {
            return Err(Problem::bad_request(
                "the path must not contain `.` or `..` segments",
            ));
        }
        if content_length(&parts.headers).is_some_and(|length| length > self.max_body_bytes) {
            linger(body).await;
            return Err(Problem::payload_too_large(self.max_body_bytes));
        }
        let client_ip = self.client_ip(&parts.headers, peer);
        self.admit_client(route, client_ip)?;
        if route.auth.requires_token(&parts.method) {
            let user = self.authenticate(&parts.headers).await?;
            tracing::Span::current().record("user_id", field::display(user));
            if let Some(limit) = &self.per_user {
                limit.check(user).map_err(|wait| {
                    metrics::counter!("gateway_rate_limited_total", "limit" => "per_user")
                        .increment(1);
                    Problem::too_many_requests(
                        ceil_secs(wait),
                        "too many requests for this user; slow down",
                    )
                })?;
            }
        }

        let pool = &self.pools[route.pool];
        prepare_request_headers(&mut parts.headers, client_ip, self.trust_forwarded_for);
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let method = parts.method;
        let headers = parts.headers;

        let outcome = if is_idempotent(&method) {
            let body = Limited::new(body, self.max_body_bytes)
                .collect()
                .await
                .map_err(|error| self.body_problem(error.as_ref()))?
                .to_bytes();
            self.send_with_retry(route, pool, &method, &path, headers, body)
                .await
        } else {
            let first = pool.pick(None).ok_or_else(|| no_healthy_instance(pool))?;
            let body = Body::new(Limited::new(body, self.max_body_bytes));
            let request = upstream_request(&pool.instances[first], method, &path, headers, body)?;
            self.send(route, pool, first, request).await
        };
        outcome
            .map(downstream_response)
            .map_err(|error| self.upstream_problem(error, route, pool))
    }

    /// One attempt, and a second on another instance when the first could not connect.
    async fn send_with_retry(
        &self,
        route: &Route,
        pool: &Pool,
        method: &Method,
        path: &PathAndQuery,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<http::Response<Incoming>, UpstreamError> {
        let first = pool.pick(None).ok_or(UpstreamError::NoHealthyInstance)?;
        let request = |index: usize, headers: HeaderMap| {
            upstream_request(
                &pool.instances[index],
                method.clone(),
                path,
                headers,
                Body::from(body.clone()),
            )
            .map_err(UpstreamError::Request)
        };
        // The headers are cloned only when a second instance exists to retry on.
        let retry_headers = (pool.instances.len() > 1).then(|| headers.clone());
        match self
            .send(route, pool, first, request(first, headers)?)
            .await
        {
            Err(UpstreamError::Connect(error)) => match (pool.pick(Some(first)), retry_headers) {
                (Some(second), Some(headers)) => {
                    tracing::info!(service = %pool.service, "retrying on another instance");
                    metrics::counter!("gateway_retries_total", "service" => pool.service.clone())
                        .increment(1);
                    self.send(route, pool, second, request(second, headers)?)
                        .await
                }
                _ => Err(UpstreamError::Connect(error)),
            },
            other => other,
        }
    }

    async fn send(
        &self,
        route: &Route,
        pool: &Pool,
        index: usize,
        request: http::Request<Body>,
    ) -> Result<http::Response<Incoming>, UpstreamError> {
        let instance = &pool.instances[index];
        tracing::Span::current().record("upstream", &*instance.url);
        match tokio::time::timeout(route.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) if error.is_connect() => {
                if instance.eject() {
                    tracing::warn!(
                        service = %pool.service,
                        instance = %instance.url,
                        %error,
                        "upstream instance left rotation: cannot connect"
                    );
                }
                Err(UpstreamError::Connect(error))
            }
            Ok(Err(error)) => Err(UpstreamError::Failed(error)),
            Err(_) => Err(UpstreamError::Timeout(route.timeout)),
        }
    }

    fn admit_client(&self, route: &Route, ip: IpAddr) -> Result<(), Problem> {
        let throttled = |limit: &'static str, wait: Duration, detail: &str| {
            metrics::counter!("gateway_rate_limited_total", "limit" => limit).increment(1);
            Problem::too_many_requests(ceil_secs(wait), detail)
        };
        if let Some(limit) = &self.per_ip {
            limit.check(ip).map_err(|wait| {
                throttled(
                    "per_ip",
                    wait,
                    "too many requests from this address; slow down",
                )
            })?;
        }
        if route.limit == LimitClass::Strict
            && let Some(limit) = &self.strict
        {
            limit.check(ip).map_err(|wait| {
                throttled(
                    "strict",
                    wait,
                    "too many sign-in or sign-up attempts from this address",
                )
            })?;
        }
        Ok(())
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<Uuid, Problem> {
        let token = bearer_token(headers).ok_or(AuthError::Missing)?;
        Ok(self.verifier.verify(token).await?.sub)
    }

    fn client_ip(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        if self.trust_forwarded_for
            && let Some(ip) = headers
                .get(&X_FORWARDED_FOR)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(',').next())
                .and_then(|first| first.trim().parse().ok())
        {
            return ip;
        }
        peer.ip()
    }

    fn body_problem(&self, error: &(dyn std::error::Error + 'static)) -> Problem {
        if is_length_limit(error) {
            Problem::payload_too_large(self.max_body_bytes)
        } else {
            Problem::bad_request("the request body could not be read")
        }
    }

    fn upstream_problem(&self, error: UpstreamError, route: &Route, pool: &Pool) -> Problem {
        let service = &pool.service;
        let kind = error.kind();
        metrics::counter!(
            "gateway_upstream_errors_total",
            "service" => service.clone(),
            "kind" => kind
        )
        .increment(1);
        let span = tracing::Span::current();
        let trace_id = telemetry::trace_id(&span);
        span.record("trace_id", trace_id.as_str());
        let mut problem = match error {
            UpstreamError::NoHealthyInstance => return no_healthy_instance(pool),
            UpstreamError::Timeout(after) => {
                tracing::warn!(%service, route = %route.prefix, "upstream timed out");
                gateway_problem(
                    http::StatusCode::GATEWAY_TIMEOUT,
                    "gateway-timeout",
                    "Gateway timeout",
                    format!("{service} did not answer within {} ms", after.as_millis()),
                )
            }
            UpstreamError::Failed(error) if is_length_limit(&error) => {
                return Problem::payload_too_large(self.max_body_bytes);
            }
            UpstreamError::Connect(error) | UpstreamError::Failed(error) => {
                tracing::warn!(%service, route = %route.prefix, error = %error_chain(&error), "upstream request failed");
                gateway_problem(
                    http::StatusCode::BAD_GATEWAY,
                    "bad-gateway",
                    "Bad gateway",
                    format!("{service} could not be reached or broke off the answer"),
                )
            }
            UpstreamError::Request(problem) => return problem,
        };
        problem.trace_id = Some(trace_id);
        problem
    }
}

/// Why no upstream response came back.
#[derive(Debug)]
enum UpstreamError {
    NoHealthyInstance,
    /// The TCP connection could not be made: the request never left, so a retry is safe.
    Connect(hyper_util::client::legacy::Error),
    Failed(hyper_util::client::legacy::Error),
    Timeout(Duration),
    Request(Problem),
}

impl UpstreamError {
    fn kind(&self) -> &'static str {
        match self {
            UpstreamError::NoHealthyInstance => "no_healthy_instance",
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Failed(_) => "failed",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Request(_) => "request",
        }
    }
}

/// The fallback handler: every path that is not one of the gateway's own.
pub async fn handle(
    State(proxy): State<Arc<Proxy>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let Some(route) = proxy.routes.resolve(request.uri().path()) else {
        if let Some(storefront) = &proxy.storefront
            && storefront::is_site_path(request.uri().path())
        {
            return storefront.serve(request).await;
        }
        metrics::counter!("gateway_requests_total", "route" => "unmatched", "status" => "404")
            .increment(1);
        return Problem::not_found("no API lives at this path").into_response();
    };
    let method = request.method().clone();
    // The request id is set by the edge layer before this runs, so it goes into the span as
    // it is created: every later `record` costs the log layer and the span exporter an update.
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok());
    let span = tracing::info_span!(
        "gateway.request",
        otel.name = %format_args!("{method} {}", route.prefix),
        otel.kind = "server",
        otel.status_code = field::Empty,
        http.method = %method,
        http.route = %route.prefix,
        http.status_code = field::Empty,
        request_id,
        upstream = field::Empty,
        user_id = field::Empty,
        trace_id = field::Empty,
    );
    telemetry::adopt_parent(&span, telemetry::context_from_http(request.headers()));
    // The trace id is recorded only when something fails (see `upstream_problem`): reading it
    // costs a context lookup per request, and only failures are logged here.

    let response = proxy
        .forward(route, request, peer)
        .instrument(span.clone())
        .await;

    let status = response.status();
    let elapsed = started.elapsed();
    span.record("http.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        )
    });
    metrics::counter!(
        "gateway_requests_total",
        "route" => route.prefix.clone(),
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    metrics::histogram!("gateway_request_duration_seconds", "route" => route.prefix.clone())
        .record(elapsed.as_secs_f64());
    response
}

fn upstream_request(
    instance: &crate::upstream::Instance,
    method: Method,
    path: &PathAndQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<http::Request<Body>, Problem> {
    let uri = Uri::builder()
        .scheme(instance.scheme.clone())
        .authority(instance.authority.clone())
        .path_and_query(path.clone())
        .build()
        .map_err(|_| Problem::bad_request("the request target is not a valid URI"))?;
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Removes what belongs to the client's hop, and adds what the upstream should know: the
/// client address, the original host, and this span's trace context (so the upstream's span
/// is a child of the gateway's). The `Authorization` header passes unchanged.
fn prepare_request_headers(headers: &mut HeaderMap, client_ip: IpAddr, trust_forwarded: bool) {
    remove_hop_by_hop(headers);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    let client = client_ip.to_string();
    let forwarded_for = match headers.get(&X_FORWARDED_FOR) {
        // Behind a trusted balancer the chain is extended; otherwise a client-supplied chain
        // is replaced, so upstreams never see an address the client made up.
        Some(chain) if trust_forwarded => chain
            .to_str()
            .ok()
            .map(|chain| format!("{chain}, {client}"))
            .unwrap_or(client),
        _ => client,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    // Straight into the header map: the map-of-strings round trip cost about 2% of the CPU.
    telemetry::inject_http(&tracing::Span::current(), headers);
}

fn downstream_response(response: http::Response<Incoming>) -> Response {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

/// RFC 9110 7.6.1: `Connection` and the headers it names, plus the classic hop-by-hop set.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(connection) = headers.remove(header::CONNECTION)
        && let Ok(named) = connection.to_str()
    {
        for name in named.split(',') {
            if let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) {
                headers.remove(name);
            }
        }
    }
    for name in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<LengthLimitError>() {
            return true;
        }
        current = error.source();
    }
    false
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        current = cause.source();
    }
    text
}

fn no_healthy_instance(pool: &Pool) -> Problem {
    let mut problem = Problem::unavailable(format!(
        "no healthy instance of {} is available; try again shortly",
        pool.service
    ));
    problem.retry_after_secs = Some(1);
    problem
}

fn gateway_problem(status: http::StatusCode, slug: &str, title: &str, detail: String) -> Problem {
    Problem {
        problem_type: format!("https://ferroshop.dev/problems/{slug}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
        errors: Vec::new(),
        trace_id: None,
        retry_after_secs: None,
    }
}

fn ceil_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// At most this much of a refused body is read and discarded (see [`linger`]).
const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// And for at most this long.
const LINGER_TIME: Duration = Duration::from_secs(10);

/// Reads and discards the body of a request refused for its size, up to [`LINGER_BYTES`] and
/// [`LINGER_TIME`], before the 413 goes out. Answering at once and closing the connection
/// with the upload unread makes the kernel reset it, and a client still sending sees
/// "connection closed" instead of the 413 (the OWASP test caught this). Nothing is kept, so
/// the cost is bandwidth, bounded per request; a larger upload is cut off as before.
async fn linger(body: Body) {
    let drain = async {
        let mut stream = body.into_data_stream();
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen = seen.saturating_add(chunk.len());
            if seen > LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        remove_hop_by_hop(&mut headers);
        assert!(headers.get("x-secret-hop").is_none());
        assert!(headers.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(headers[header::AUTHORIZATION], "Bearer abc");
    }

    #[test]
    fn a_client_made_forwarded_chain_is_replaced_unless_trusted() {
        let ip: IpAddr = [10, 0, 0, 7].into();
        let mut untrusted = HeaderMap::new();
        untrusted.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        prepare_request_headers(&mut untrusted, ip, false);
        assert_eq!(untrusted[X_FORWARDED_FOR], "10.0.0.7");

        let mut trusted = HeaderMap::new();
        trusted.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        trusted.insert(header::HOST, HeaderValue::from_static("shop.example"));
        prepare_request_headers(&mut trusted, ip, true);
        assert_eq!(trusted[X_FORWARDED_FOR], "1.2.3.4, 10.0.0.7");
        assert_eq!(trusted[X_FORWARDED_HOST], "shop.example");
        assert!(trusted.get(header::HOST).is_none());
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively_and_blank_ones_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc.def"),
        );
        assert_eq!(bearer_token(&headers), Some("abc.def"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer  "));
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }
}
