//! Typed configuration, read once from the environment and validated at start.

#![allow(
    clippy::disallowed_methods,
    reason = "the one module of this service that reads its environment"
)]

use std::time::Duration;

use anyhow::Context as _;
use secrecy::SecretString;

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// May carry credentials, hence secret.
    pub mongodb_url: SecretString,
    /// The MongoDB database this service owns (`payments`).
    pub database: String,
    pub kafka_brokers: String,
    /// Prepended to every topic name (isolates test runs sharing a broker).
    pub topic_prefix: String,
    pub zipkin_endpoint: Option<String>,
    /// user-service's JWKS, for verifying access tokens.
    pub jwks_url: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// The provider's base URL (`PSP_SIM_URL`).
    pub psp_url: String,
    pub psp_api_key: SecretString,
    /// How long one call to the provider may take (`PSP_TIMEOUT_MS`).
    pub psp_timeout: Duration,
    /// Calls per charge, the first included, while the provider times out or answers 5xx
    /// (`PSP_MAX_ATTEMPTS`).
    pub psp_max_attempts: u32,
    /// Consecutive provider failures that open the circuit breaker (`BREAKER_THRESHOLD`).
    pub breaker_threshold: u32,
    /// How long an open breaker refuses calls before it lets a trial through (`BREAKER_OPEN_MS`).
    pub breaker_open_for: Duration,
    /// How long a payment request waits for the order replica to learn a fresh order
    /// (`ORDER_WAIT_MS`, default 1000; shorter than the request budget, so the wait ends in a
    /// 404 or 409 rather than the budget's 503).
    pub order_wait: Duration,
    /// The longest `POST /api/payments` takes to answer (`PAYMENT_REQUEST_BUDGET_MS`, default
    /// 1500): then 503 with `Retry-After`, the charge under way going on in the background
    /// (see `charging`). Well under the 2 s a client may wait during an outage.
    pub request_budget: Duration,
    /// How often the reconciler looks for payments whose outcome is unknown
    /// (`RECONCILE_INTERVAL_MS`).
    pub reconcile_interval: Duration,
    /// A payment still `processing` after this long was abandoned by a crashed process and is
    /// reconciled (`RECONCILE_STALE_MS`).
    pub reconcile_stale_after: Duration,
    /// Keys the fingerprint that tells "same request" under one Idempotency-Key, so that
    /// fingerprint reveals nothing about the card (`PAYMENT_FINGERPRINT_KEY`).
    pub fingerprint_key: SecretString,
    /// Whether this process runs the outbox relay (tests switch it off to play crashes).
    pub run_outbox_relay: bool,
    /// Whether this process consumes `order.events` (`ORDER_CONSUMER=off` disables it).
    pub run_order_consumer: bool,
    /// Whether this process runs the reconciler (`RECONCILER=off` disables it).
    pub run_reconciler: bool,
    pub relay_poll_interval: Duration,
    pub request_timeout: Duration,
    /// The workflow engine whose `refund-payment` tasks this service works
    /// (`WORKFLOW_ENGINE_URL`); `WORKFLOW_WORKER=off` disables the worker.
    pub workflow_engine_url: String,
    /// Isolates this deployment's processes on a shared engine (`WORKFLOW_NAMESPACE`, default:
    /// the topic prefix, or `ferroshop` without one).
    pub workflow_namespace: String,
    pub run_workflow_worker: bool,
    /// Declined payments per account within `decline_window` before the account must wait
    /// (`PAYMENT_MAX_DECLINES`, default 5; 0 switches the throttle off).
    pub max_declines: u32,
    /// `PAYMENT_DECLINE_WINDOW_SECS`, default 900.
    pub decline_window: Duration,
}

/// The provider's API key of the local profile (psp-sim's default).
pub const DEFAULT_PSP_API_KEY: &str = "sk_test_ferroshop";
const LOCAL_FINGERPRINT_KEY: &str = "local-dev-fingerprint-key";

impl Config {
    /// Reads conventional variables (see the service README).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let millis = |name: &str, default: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_millis(match var(name) {
                Some(value) => value
                    .parse()
                    .with_context(|| format!("{name} must be milliseconds"))?,
                None => default,
            }))
        };
        let number = |name: &str, default: u32| -> anyhow::Result<u32> {
            match var(name) {
                Some(value) => value
                    .parse()
                    .with_context(|| format!("{name} must be a whole number")),
                None => Ok(default),
            }
        };
        let switch = |name: &str| -> anyhow::Result<bool> {
            match var(name).as_deref() {
                None | Some("on") => Ok(true),
                Some("off") => Ok(false),
                Some(_) => anyhow::bail!("{name} must be on or off"),
            }
        };
        let local = var("APP_PROFILE").as_deref().unwrap_or("local") == "local";
        let fingerprint_key = match var("PAYMENT_FINGERPRINT_KEY") {
            Some(key) => key,
            None if local => LOCAL_FINGERPRINT_KEY.to_owned(),
            None => anyhow::bail!("PAYMENT_FINGERPRINT_KEY must be set outside the local profile"),
        };
        let psp_timeout = millis("PSP_TIMEOUT_MS", 2_000)?;
        let order_wait = millis("ORDER_WAIT_MS", 1_000)?;
        let request_budget = millis("PAYMENT_REQUEST_BUDGET_MS", 1_500)?;
        if order_wait >= request_budget {
            anyhow::bail!(
                "ORDER_WAIT_MS ({} ms) must be shorter than PAYMENT_REQUEST_BUDGET_MS ({} ms)",
                order_wait.as_millis(),
                request_budget.as_millis()
            );
        }
        let psp_max_attempts = number("PSP_MAX_ATTEMPTS", 3)?.max(1);
        let max_declines = number(
            "PAYMENT_MAX_DECLINES",
            crate::domain::decline_throttle::DEFAULT_MAX_DECLINES,
        )?;
        let decline_window = Duration::from_secs(u64::from(number(
            "PAYMENT_DECLINE_WINDOW_SECS",
            u32::try_from(crate::domain::decline_throttle::DEFAULT_WINDOW.as_secs())
                .unwrap_or(u32::MAX),
        )?));
        Ok(Self {
            max_declines,
            decline_window,
            host: var("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: match var("PORT") {
                Some(port) => port.parse().context("PORT must be a port number")?,
                None => 8084,
            },
            mongodb_url: SecretString::from(
                var("MONGODB_URL").unwrap_or_else(|| "mongodb://127.0.0.1:27017".into()),
            ),
            database: var("MONGODB_DATABASE").unwrap_or_else(|| "payments".into()),
            kafka_brokers: var("KAFKA_BROKERS").unwrap_or_else(|| "127.0.0.1:9092".into()),
            topic_prefix: var("KAFKA_TOPIC_PREFIX").unwrap_or_default(),
            zipkin_endpoint: Some(
                var("ZIPKIN_ENDPOINT")
                    .unwrap_or_else(|| "http://127.0.0.1:9411/api/v2/spans".into()),
            )
            .filter(|endpoint| endpoint != "off"),
            jwks_url: var("JWKS_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8081/.well-known/jwks.json".into()),
            jwt_issuer: var("JWT_ISSUER").unwrap_or_else(|| "ferroshop-users".into()),
            jwt_audience: var("JWT_AUDIENCE").unwrap_or_else(|| "ferroshop".into()),
            psp_url: var("PSP_SIM_URL").unwrap_or_else(|| "http://127.0.0.1:8090".into()),
            psp_api_key: SecretString::from(
                var("PSP_API_KEY").unwrap_or_else(|| DEFAULT_PSP_API_KEY.into()),
            ),
            psp_timeout,
            psp_max_attempts,
            breaker_threshold: number("BREAKER_THRESHOLD", 5)?.max(1),
            breaker_open_for: millis("BREAKER_OPEN_MS", 10_000)?,
            order_wait,
            request_budget,
            reconcile_interval: millis("RECONCILE_INTERVAL_MS", 1_000)?,
            reconcile_stale_after: millis("RECONCILE_STALE_MS", 60_000)?,
            fingerprint_key: SecretString::from(fingerprint_key),
            run_outbox_relay: true,
            run_order_consumer: switch("ORDER_CONSUMER")?,
            run_reconciler: switch("RECONCILER")?,
            workflow_engine_url: var("WORKFLOW_ENGINE_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8086".into()),
            workflow_namespace: var("WORKFLOW_NAMESPACE").unwrap_or_else(|| {
                workflow::default_namespace(&var("KAFKA_TOPIC_PREFIX").unwrap_or_default())
            }),
            run_workflow_worker: switch("WORKFLOW_WORKER")?,
            relay_poll_interval: millis("OUTBOX_POLL_INTERVAL_MS", 1_000)?,
            // Room for every provider attempt plus the wait for the replica.
            request_timeout: Duration::from_secs(match var("REQUEST_TIMEOUT_SECS") {
                Some(value) => value
                    .parse()
                    .context("REQUEST_TIMEOUT_SECS must be seconds")?,
                None => 30,
            }),
        })
    }
}
