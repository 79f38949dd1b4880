//! The route table: which service serves a path, whether the edge demands a token, and which
//! rate-limit class applies. Pure data and matching, no I/O.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde::Deserialize;

/// Whether a route needs a verified access token at the edge. The upstream still checks roles
/// and ownership itself; the edge check keeps anonymous traffic off the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthPolicy {
    #[default]
    Public,
    Required,
    /// Reads are public, writes (anything but GET, HEAD, OPTIONS) need a token: the catalog.
    RequiredForWrites,
}

impl AuthPolicy {
    pub fn requires_token(self, method: &Method) -> bool {
        match self {
            AuthPolicy::Public => false,
            AuthPolicy::Required => true,
            AuthPolicy::RequiredForWrites => !is_read(method),
        }
    }
}

/// Which client-IP bucket a route draws from besides the general one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitClass {
    #[default]
    Standard,
    /// Login and register: a much smaller bucket, against password guessing.
    Strict,
}

/// One resolved route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The prefix, also the route's label in metrics and spans (bounded cardinality).
    pub prefix: Arc<str>,
    /// Index of the upstream pool.
    pub pool: usize,
    pub auth: AuthPolicy,
    pub limit: LimitClass,
    pub timeout: Duration,
}

/// Routes ordered longest prefix first, so the first match is the most specific.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        Self { routes }
    }

    pub fn resolve(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| prefix_matches(&route.prefix, path))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

/// Whole-segment prefix match: `/api/users` matches `/api/users` and `/api/users/me`, never
/// `/api/usersx`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// Methods that only read. They are also the ones a browser may send without a token.
pub fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Methods safe to send twice (RFC 9110 9.2.2), hence safe to retry on another instance.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// Refuses dot segments (`/api/products/../users/me`), also percent-encoded: the gateway
/// decides auth by prefix, so a path that an upstream might normalise into another route must
/// never pass the edge.
pub fn is_clean_path(path: &str) -> bool {
    path.starts_with('/') && !path.split('/').any(is_dot_segment)
}

/// `.`, `..` and their percent-encoded spellings (`%2e`, `%2E`), without allocating.
fn is_dot_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at..] {
            [b'.', ..] => at += 1,
            [b'%', b'2', e, ..] if e.eq_ignore_ascii_case(&b'e') => at += 3,
            _ => return false,
        }
    }
    !bytes.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, pool: usize) -> Route {
        Route {
            prefix: prefix.into(),
            pool,
            auth: AuthPolicy::Public,
            limit: LimitClass::Standard,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_longest_whole_segment_prefix_wins() {
        let table = RouteTable::new(vec![
            route("/api/users", 0),
            route("/api/users/me", 1),
            route("/api/products", 2),
        ]);
        let pool = |path| table.resolve(path).map(|route| route.pool);
        assert_eq!(pool("/api/users/me"), Some(1));
        assert_eq!(pool("/api/users/me/anything"), Some(1));
        assert_eq!(pool("/api/users/login"), Some(0));
        assert_eq!(pool("/api/users"), Some(0));
        assert_eq!(pool("/api/usersx"), None);
        assert_eq!(pool("/api/users/mex"), Some(0));
        assert_eq!(pool("/api/products/abc/stock"), Some(2));
        assert_eq!(pool("/"), None);
    }

    #[test]
    fn writes_need_a_token_where_reads_are_public() {
        let policy = AuthPolicy::RequiredForWrites;
        assert!(!policy.requires_token(&Method::GET));
        assert!(!policy.requires_token(&Method::OPTIONS));
        assert!(policy.requires_token(&Method::POST));
        assert!(policy.requires_token(&Method::PATCH));
        assert!(policy.requires_token(&Method::DELETE));
        assert!(AuthPolicy::Required.requires_token(&Method::GET));
        assert!(!AuthPolicy::Public.requires_token(&Method::POST));
    }

    #[test]
    fn only_idempotent_methods_are_retryable() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(is_idempotent(&Method::DELETE));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }

    #[test]
    fn dot_segments_never_pass_the_edge() {
        assert!(is_clean_path("/api/products/abc"));
        assert!(is_clean_path("/api/products/a.b"));
        assert!(is_clean_path("/.well-known/jwks.json"));
        assert!(!is_clean_path("/api/products/../users/me"));
        assert!(!is_clean_path("/api/products/%2E%2e/users/me"));
        assert!(!is_clean_path("/api/./orders"));
        assert!(!is_clean_path("/api/products/.."));
    }
}
