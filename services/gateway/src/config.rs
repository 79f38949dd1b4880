//! Typed configuration: built-in defaults, then an optional TOML file (`GATEWAY_CONFIG`), then
//! environment variables, which win. Loaded once and validated at start, so a typo in a route
//! or an unparsable upstream URL stops the gateway instead of surfacing as 502s later.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use http::Uri;
use serde::Deserialize;
use settings::Env;

use crate::routes::{AuthPolicy, LimitClass};

/// The whole gateway configuration. Every field has a default (see [`Config::default`] and
/// `deploy/gateway/gateway.toml`, which spells the defaults out).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Largest request body forwarded; larger ones are answered 413 at the edge. The default
    /// is the services' own limit (`web::extract::MAX_BODY_BYTES`, 64 KiB): a larger body the
    /// gateway let through would be refused by the service before it read the body, and the
    /// service closing the connection mid-upload raced the 413 into a 502 (the OWASP tests
    /// caught it).
    pub max_body_bytes: usize,
    /// Take the client address from the first `X-Forwarded-For` entry (only behind a trusted
    /// load balancer; otherwise any client could pick its own rate-limit key).
    pub trust_forwarded_for: bool,
    /// user-service's JWKS, for verifying access tokens at the edge.
    pub jwks_url: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Zipkin's span collector; `None` (or `off` in the environment) disables export.
    pub zipkin_endpoint: Option<String>,
    /// How long a TCP connect to an upstream instance may take before it counts as down.
    pub connect_timeout_ms: u64,
    /// Idle pooled upstream connections kept per instance.
    pub pool_max_idle_per_host: usize,
    pub health: HealthConfig,
    pub limits: LimitsConfig,
    pub cors: CorsConfig,
    /// Upstream services by name (`user-service`); each name's instances may be replaced by
    /// the `<NAME>_URL` environment variable (comma-separated base URLs).
    pub services: BTreeMap<String, ServiceConfig>,
    /// The route table; the longest matching prefix wins.
    pub routes: Vec<RouteConfig>,
    /// The built web storefront (`web/dist`), served at `/` for every path outside the
    /// platform's; `None` serves no storefront (unknown paths answer 404).
    pub web_root: Option<String>,
    /// How long a client may take to send a request's headers before the connection is
    /// closed: a client that trickles its headers (slowloris) holds a connection and its
    /// buffers only this long.
    pub header_read_timeout_ms: u64,
    /// The largest request head (request line and headers) read; a larger one is answered
    /// 431 before it is buffered further (hyper's own default is about 400 KiB). At least
    /// 8192, hyper's minimum.
    pub max_header_bytes: usize,
    /// `Strict-Transport-Security: max-age=<this>` on every answer; `None` (the default)
    /// sends none. Set it only when clients reach the gateway over TLS (a TLS-terminating load
    /// balancer in front): browsers ignore the header over plain HTTP, and a wrong max-age
    /// pins browsers to HTTPS for that long.
    pub hsts_max_age_secs: Option<u64>,
}

/// Active health checks of every upstream instance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Path polled on each instance.
    pub path: String,
    pub interval_ms: u64,
    /// A check without an answer within this time failed.
    pub timeout_ms: u64,
    /// Consecutive failed checks that take an instance out of rotation.
    pub unhealthy_after: u32,
    /// Consecutive passed checks that bring it back.
    pub healthy_after: u32,
}

/// A token bucket: a sustained rate and how many requests may arrive at once.
/// `per_second = 0` switches the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub per_second: f64,
    pub burst: u32,
}

impl Quota {
    pub fn is_enabled(&self) -> bool {
        self.per_second > 0.0 && self.burst > 0
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Every request, keyed by client IP.
    pub per_ip: Quota,
    /// Requests with a verified token, keyed by user id.
    pub per_user: Quota,
    /// Routes marked `limit = "strict"` (login, register), keyed by client IP, on top of
    /// `per_ip`: password guessing and account spraying are what this slows down.
    pub strict: Quota,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to call the API from a browser; `["*"]` allows any (tokens travel in
    /// the `Authorization` header, never in cookies, so no credentials mode is needed). Empty
    /// by default: the storefront is served by the gateway itself (same origin), so no other
    /// origin needs access, and a preflight from an unlisted origin gets no `Access-Control-*`
    /// header (the browser then refuses the call).
    pub allowed_origins: Vec<String>,
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Base URLs of the instances, e.g. `http://127.0.0.1:8082`.
    pub urls: Vec<String>,
    /// Default time to the upstream's response headers for this service's routes.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix, matched on whole segments (`/api/users` matches `/api/users/me`, not
    /// `/api/usersx`).
    pub prefix: String,
    pub service: String,
    #[serde(default)]
    pub auth: AuthPolicy,
    #[serde(default)]
    pub limit: LimitClass,
    /// Overrides the service's timeout for this route.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            path: "/health/ready".into(),
            interval_ms: 2_000,
            timeout_ms: 1_000,
            unhealthy_after: 2,
            healthy_after: 1,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_ip: Quota {
                per_second: 1_000.0,
                burst: 2_000,
            },
            per_user: Quota {
                per_second: 100.0,
                burst: 200,
            },
            strict: Quota {
                per_second: 0.5,
                burst: 10,
            },
        }
    }
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_age_secs: 600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let service = |port: u16, timeout_ms: u64| ServiceConfig {
            urls: vec![format!("http://127.0.0.1:{port}")],
            timeout_ms,
        };
        let route = |prefix: &str, service: &str, auth: AuthPolicy| RouteConfig {
            prefix: prefix.into(),
            service: service.into(),
            auth,
            limit: LimitClass::Standard,
            timeout_ms: None,
        };
        let strict = |prefix: &str| RouteConfig {
            limit: LimitClass::Strict,
            ..route(prefix, "user-service", AuthPolicy::Public)
        };
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            max_body_bytes: web::extract::MAX_BODY_BYTES,
            trust_forwarded_for: false,
            jwks_url: auth::config::DEFAULT_JWKS_URL.into(),
            jwt_issuer: auth::config::DEFAULT_ISSUER.into(),
            jwt_audience: auth::config::DEFAULT_AUDIENCE.into(),
            zipkin_endpoint: Some(telemetry::DEFAULT_ZIPKIN_ENDPOINT.into()),
            connect_timeout_ms: 1_000,
            pool_max_idle_per_host: 256,
            health: HealthConfig::default(),
            limits: LimitsConfig::default(),
            cors: CorsConfig::default(),
            services: BTreeMap::from([
                ("user-service".into(), service(8081, 10_000)),
                ("product-service".into(), service(8082, 10_000)),
                ("order-service".into(), service(8083, 10_000)),
                // Covers the provider's own timeout and one retry inside payment-service.
                ("payment-service".into(), service(8084, 30_000)),
                ("notification-service".into(), service(8085, 10_000)),
            ]),
            web_root: None,
            header_read_timeout_ms: 10_000,
            max_header_bytes: 32 * 1024,
            hsts_max_age_secs: None,
            routes: vec![
                route("/api/users/me", "user-service", AuthPolicy::Required),
                strict("/api/users/login"),
                strict("/api/users/register"),
                route("/api/users", "user-service", AuthPolicy::Public),
                route("/.well-known/jwks.json", "user-service", AuthPolicy::Public),
                route(
                    "/api/products",
                    "product-service",
                    AuthPolicy::RequiredForWrites,
                ),
                route("/api/orders", "order-service", AuthPolicy::Required),
                route("/api/admin/orders", "order-service", AuthPolicy::Required),
                // Refund approvals (order-service checks the admin role itself).
                route(
                    "/api/admin/approvals",
                    "order-service",
                    AuthPolicy::Required,
                ),
                route("/api/payments", "payment-service", AuthPolicy::Required),
                route(
                    "/api/notifications",
                    "notification-service",
                    AuthPolicy::Required,
                ),
            ],
        }
    }
}

impl Config {
    /// Reads `GATEWAY_CONFIG` (if set) and the process environment.
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place the gateway reads its environment"
    )]
    pub fn load() -> anyhow::Result<Self> {
        let env = Env::process();
        let file = match env.get("GATEWAY_CONFIG") {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading GATEWAY_CONFIG {path}"))?,
            ),
            None => None,
        };
        Self::from_sources(file.as_deref(), &env)
    }

    /// Defaults, then `file` (TOML), then the variables of `env`. Pure, for tests.
    pub fn from_sources(file: Option<&str>, env: &Env) -> anyhow::Result<Self> {
        let mut config = match file {
            Some(text) => toml::from_str(text).context("parsing the gateway configuration")?,
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Each variable that is set replaces what the defaults and the file said.
    fn apply_env(&mut self, env: &Env) -> anyhow::Result<()> {
        self.host = env.string_or("HOST", &self.host);
        self.port = env.port("PORT", self.port)?;
        self.jwks_url = env.string_or("JWKS_URL", &self.jwks_url);
        self.jwt_issuer = env.string_or("JWT_ISSUER", &self.jwt_issuer);
        self.jwt_audience = env.string_or("JWT_AUDIENCE", &self.jwt_audience);
        if let Some(endpoint) = env.get("ZIPKIN_ENDPOINT") {
            self.zipkin_endpoint = (endpoint != "off").then_some(endpoint);
        }
        self.max_body_bytes = env.parsed(
            "GATEWAY_MAX_BODY_BYTES",
            self.max_body_bytes,
            "a number of bytes",
        )?;
        self.trust_forwarded_for =
            env.switch("GATEWAY_TRUST_FORWARDED_FOR", self.trust_forwarded_for)?;
        self.health.interval_ms = env.parsed(
            "GATEWAY_HEALTH_INTERVAL_MS",
            self.health.interval_ms,
            "milliseconds",
        )?;
        for (name, quota) in [
            ("GATEWAY_RATE_LIMIT_PER_IP", &mut self.limits.per_ip),
            ("GATEWAY_RATE_LIMIT_PER_USER", &mut self.limits.per_user),
            ("GATEWAY_RATE_LIMIT_STRICT", &mut self.limits.strict),
        ] {
            if let Some(value) = env.get(name) {
                *quota = parse_quota(&value).with_context(|| {
                    format!("{name} must be `<per second>:<burst>` or `off`, not {value:?}")
                })?;
            }
        }
        if let Some(root) = env.get("GATEWAY_WEB_ROOT") {
            self.web_root = (root != "off").then_some(root);
        }
        self.header_read_timeout_ms = env.parsed(
            "GATEWAY_HEADER_READ_TIMEOUT_MS",
            self.header_read_timeout_ms,
            "milliseconds",
        )?;
        self.max_header_bytes = env.parsed(
            "GATEWAY_MAX_HEADER_BYTES",
            self.max_header_bytes,
            "a number of bytes",
        )?;
        if let Some(secs) = env.get("GATEWAY_HSTS_MAX_AGE_SECS") {
            self.hsts_max_age_secs = match secs.as_str() {
                "off" => None,
                _ => Some(env.parsed("GATEWAY_HSTS_MAX_AGE_SECS", 0, "seconds or `off`")?),
            };
        }
        if let Some(origins) = env.list("GATEWAY_CORS_ORIGINS") {
            self.cors.allowed_origins = origins;
        }
        for (name, service) in &mut self.services {
            let var = format!("{}_URL", name.to_uppercase().replace('-', "_"));
            if let Some(urls) = env.list(&var) {
                service.urls = urls;
            }
        }
        Ok(())
    }

    /// Refuses a table the gateway could not serve.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.max_body_bytes > 0, "max_body_bytes must be positive");
        ensure!(
            self.header_read_timeout_ms > 0,
            "header_read_timeout_ms must be positive"
        );
        ensure!(
            self.max_header_bytes >= 8192,
            "max_header_bytes must be at least 8192"
        );
        ensure!(
            self.health.interval_ms > 0 && self.health.timeout_ms > 0,
            "health.interval_ms and health.timeout_ms must be positive"
        );
        ensure!(
            self.health.unhealthy_after > 0 && self.health.healthy_after > 0,
            "health.unhealthy_after and health.healthy_after must be at least 1"
        );
        for (name, service) in &self.services {
            ensure!(
                !service.urls.is_empty(),
                "service {name} has no instance URL"
            );
            for url in &service.urls {
                instance_uri(url).with_context(|| format!("service {name}"))?;
            }
            ensure!(
                service.timeout_ms > 0,
                "service {name}: timeout_ms must be positive"
            );
        }
        for route in &self.routes {
            ensure!(
                route.prefix.starts_with('/'),
                "route prefix {:?} must start with /",
                route.prefix
            );
            ensure!(
                self.services.contains_key(&route.service),
                "route {} names unknown service {:?}",
                route.prefix,
                route.service
            );
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// Tokio worker threads for the gateway process, from `GATEWAY_WORKER_THREADS`: a number, or
/// `cores` for one per core (tokio's default). Unset, it is one.
///
/// Why one by default: the gateway's work per request is small (about 50 µs of CPU, half of it
/// the kernel's TCP path), and with two workers on a machine shared with its upstreams a
/// profile showed 15-20% of its CPU going to waking and switching between them (futex wake-ups,
/// context switches, work stealing). One worker serves about 15,000 proxied requests per second
/// here; give it more (`cores`) when the gateway has cores of its own and needs more than that.
/// It is read before the runtime starts, so it lives outside [`Config`].
pub fn worker_threads(env: &Env) -> anyhow::Result<usize> {
    match env.get("GATEWAY_WORKER_THREADS").as_deref().map(str::trim) {
        None | Some("") => Ok(1),
        Some("cores") => Ok(std::thread::available_parallelism().map_or(1, usize::from)),
        Some(value) => match value.parse::<usize>() {
            Ok(count) if count > 0 => Ok(count),
            _ => {
                bail!("GATEWAY_WORKER_THREADS must be a positive number or `cores`, not {value:?}")
            }
        },
    }
}

/// [`worker_threads`] from the process environment.
#[allow(
    clippy::disallowed_methods,
    reason = "read before the runtime starts, so outside Config::load"
)]
pub fn worker_threads_from_environment() -> anyhow::Result<usize> {
    worker_threads(&Env::process())
}

/// Checks an instance base URL: plain `http://host:port` with no path (the gateway appends the
/// request's own path).
pub fn instance_uri(url: &str) -> anyhow::Result<Uri> {
    let uri: Uri = url
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{url:?}: only http:// upstreams are supported");
    }
    ensure!(uri.authority().is_some(), "{url:?} has no host");
    ensure!(
        matches!(uri.path(), "" | "/"),
        "{url:?} must not have a path"
    );
    Ok(uri)
}

fn parse_quota(value: &str) -> anyhow::Result<Quota> {
    if value == "off" {
        return Ok(Quota {
            per_second: 0.0,
            burst: 0,
        });
    }
    let (rate, burst) = value.split_once(':').context("missing `:`")?;
    let per_second: f64 = rate.trim().parse().context("rate")?;
    ensure!(per_second.is_finite() && per_second >= 0.0, "negative rate");
    Ok(Quota {
        per_second,
        burst: burst.trim().parse().context("burst")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    fn no_env() -> Env {
        Env::from_pairs([])
    }

    #[test]
    fn the_shipped_file_spells_out_the_defaults() -> anyhow::Result<()> {
        let file = include_str!("../../../deploy/gateway/gateway.toml");
        let from_file = Config::from_sources(Some(file), &no_env())?;
        assert_eq!(from_file, Config::default());
        Ok(())
    }

    #[test]
    fn environment_wins_over_the_file_and_lists_several_instances() -> anyhow::Result<()> {
        let file = r#"
            port = 9000
            [services.product-service]
            urls = ["http://127.0.0.1:1"]
            [[routes]]
            prefix = "/api/products"
            service = "product-service"
            auth = "required_for_writes"
        "#;
        let config = Config::from_sources(
            Some(file),
            &env_of(&[
                ("PORT", "8088"),
                (
                    "PRODUCT_SERVICE_URL",
                    "http://127.0.0.1:8082, http://127.0.0.1:8182",
                ),
                ("GATEWAY_RATE_LIMIT_PER_IP", "5:10"),
                ("GATEWAY_RATE_LIMIT_STRICT", "off"),
                ("ZIPKIN_ENDPOINT", "off"),
            ]),
        )?;
        assert_eq!(config.port, 8088);
        assert_eq!(
            config.services["product-service"].urls,
            ["http://127.0.0.1:8082", "http://127.0.0.1:8182"]
        );
        assert_eq!(config.routes.len(), 1);
        assert_eq!(
            config.limits.per_ip,
            Quota {
                per_second: 5.0,
                burst: 10
            }
        );
        assert!(!config.limits.strict.is_enabled());
        assert_eq!(config.zipkin_endpoint, None);
        Ok(())
    }

    #[test]
    fn one_worker_unless_told_otherwise() -> anyhow::Result<()> {
        assert_eq!(worker_threads(&no_env())?, 1);
        assert_eq!(
            worker_threads(&env_of(&[("GATEWAY_WORKER_THREADS", "3")]))?,
            3
        );
        assert!(worker_threads(&env_of(&[("GATEWAY_WORKER_THREADS", "cores")]))? >= 1);
        assert!(worker_threads(&env_of(&[("GATEWAY_WORKER_THREADS", "0")])).is_err());
        assert!(worker_threads(&env_of(&[("GATEWAY_WORKER_THREADS", "many")])).is_err());
        Ok(())
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let unknown_service = r#"
            [[routes]]
            prefix = "/api/x"
            service = "nowhere"
        "#;
        let error = Config::from_sources(Some(unknown_service), &no_env())
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(error.contains("unknown service"), "{error}");

        let https = env_of(&[("USER_SERVICE_URL", "https://users.example")]);
        assert!(Config::from_sources(None, &https).is_err());
        let with_path = env_of(&[("USER_SERVICE_URL", "http://127.0.0.1:8081/api")]);
        assert!(Config::from_sources(None, &with_path).is_err());
        let typo = "prot = 1";
        assert!(Config::from_sources(Some(typo), &no_env()).is_err());
        let bad_quota = env_of(&[("GATEWAY_RATE_LIMIT_PER_USER", "lots")]);
        assert!(Config::from_sources(None, &bad_quota).is_err());
    }

    #[test]
    fn the_storefront_directory_comes_from_the_file_or_the_environment() -> anyhow::Result<()> {
        assert_eq!(Config::default().web_root, None);
        let file = r#"web_root = "/srv/shop""#;
        let from_file = Config::from_sources(Some(file), &no_env())?;
        assert_eq!(from_file.web_root.as_deref(), Some("/srv/shop"));
        let env = env_of(&[("GATEWAY_WEB_ROOT", "/usr/share/ferroshop/web")]);
        let from_env = Config::from_sources(Some(file), &env)?;
        assert_eq!(
            from_env.web_root.as_deref(),
            Some("/usr/share/ferroshop/web")
        );
        let off = env_of(&[("GATEWAY_WEB_ROOT", "off")]);
        assert_eq!(Config::from_sources(Some(file), &off)?.web_root, None);
        Ok(())
    }
}
