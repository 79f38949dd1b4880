//! Typed configuration, read once from the environment and validated at start.

use std::time::Duration;

use auth::VerifierConfig;
use messaging::KafkaConfig;
use secrecy::SecretString;
use settings::Env;
use web::ServerConfig;

#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (8084), `REQUEST_TIMEOUT_SECS` (30: room for every provider attempt
    /// plus the wait for the replica), `ZIPKIN_ENDPOINT`.
    pub server: ServerConfig,
    /// May carry credentials, hence secret.
    pub mongodb_url: SecretString,
    /// The MongoDB database this service owns (`payments`).
    pub database: String,
    pub kafka: KafkaConfig,
    /// Prepended to every topic name (isolates test runs sharing a broker).
    pub topic_prefix: String,
    /// user-service's JWKS and the claims required of access tokens.
    pub tokens: VerifierConfig,
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
    /// The longest a waiting payment request goes without reading the order again when no
    /// announcement of it comes (`ORDER_REPLICA_POLL_MS`, default 100): the order's consumer
    /// may run in another replica, whose writes this one learns only by reading.
    pub replica_poll: Duration,
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
    /// Consumers of `order.events` in this process (`ORDER_CONSUMERS`, 1 to 16, default 3: one
    /// per partition of the topic). The order replica must keep up with the checkout, or
    /// payments wait for orders the replica has not seen yet: with one consumer its lag grew
    /// by about 60 records a second under the benchmark's 50 orders/s, and every payment then
    /// answered 409 or 503.
    pub order_consumers: usize,
    /// Records each of those consumers handles at once (`ORDER_IN_FLIGHT`, 1 to 64, default
    /// 8), never two of one order at once, so an order's replica write does not queue behind
    /// other orders' in its partition while its payment waits for it.
    pub order_in_flight: usize,
    /// Whether this process runs the reconciler (`RECONCILER=off` disables it).
    pub run_reconciler: bool,
    pub relay_poll_interval: Duration,
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
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place this service reads its environment"
    )]
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(&Env::process())
    }

    /// The configuration `env` describes.
    pub fn read(env: &Env) -> anyhow::Result<Self> {
        let local = env.string_or("APP_PROFILE", "local") == "local";
        let fingerprint_key = match env.secret("PAYMENT_FINGERPRINT_KEY") {
            Some(key) => key,
            None if local => SecretString::from(LOCAL_FINGERPRINT_KEY),
            None => anyhow::bail!("PAYMENT_FINGERPRINT_KEY must be set outside the local profile"),
        };
        let topic_prefix = env.string_or("KAFKA_TOPIC_PREFIX", "");
        let order_wait = env.millis("ORDER_WAIT_MS", 1_000)?;
        let request_budget = env.millis("PAYMENT_REQUEST_BUDGET_MS", 1_500)?;
        anyhow::ensure!(
            order_wait < request_budget,
            "ORDER_WAIT_MS ({} ms) must be shorter than PAYMENT_REQUEST_BUDGET_MS ({} ms)",
            order_wait.as_millis(),
            request_budget.as_millis()
        );
        Ok(Self {
            server: ServerConfig::from_env(env, 8084, 30)?,
            mongodb_url: env.secret_or("MONGODB_URL", "mongodb://127.0.0.1:27017"),
            database: env.string_or("MONGODB_DATABASE", "payments"),
            kafka: KafkaConfig::from_env(env)?,
            tokens: VerifierConfig::from_env(env),
            psp_url: env.string_or("PSP_SIM_URL", "http://127.0.0.1:8090"),
            psp_api_key: env.secret_or("PSP_API_KEY", DEFAULT_PSP_API_KEY),
            psp_timeout: env.millis("PSP_TIMEOUT_MS", 2_000)?,
            psp_max_attempts: env.number("PSP_MAX_ATTEMPTS", 3)?.max(1),
            breaker_threshold: env.number("BREAKER_THRESHOLD", 5)?.max(1),
            breaker_open_for: env.millis("BREAKER_OPEN_MS", 10_000)?,
            order_wait,
            replica_poll: env.millis("ORDER_REPLICA_POLL_MS", 100)?,
            request_budget,
            reconcile_interval: env.millis("RECONCILE_INTERVAL_MS", 1_000)?,
            reconcile_stale_after: env.millis("RECONCILE_STALE_MS", 60_000)?,
            fingerprint_key,
            run_outbox_relay: true,
            run_order_consumer: env.switch("ORDER_CONSUMER", true)?,
            order_consumers: env.number_in("ORDER_CONSUMERS", 3, 1..=16)?,
            order_in_flight: env.number_in("ORDER_IN_FLIGHT", 8, 1..=64)?,
            run_reconciler: env.switch("RECONCILER", true)?,
            workflow_engine_url: env.string_or("WORKFLOW_ENGINE_URL", "http://127.0.0.1:8086"),
            workflow_namespace: env
                .get("WORKFLOW_NAMESPACE")
                .unwrap_or_else(|| workflow::default_namespace(&topic_prefix)),
            topic_prefix,
            run_workflow_worker: env.switch("WORKFLOW_WORKER", true)?,
            relay_poll_interval: env.millis("OUTBOX_POLL_INTERVAL_MS", 1_000)?,
            max_declines: env.number(
                "PAYMENT_MAX_DECLINES",
                crate::domain::decline_throttle::DEFAULT_MAX_DECLINES,
            )?,
            decline_window: env.seconds(
                "PAYMENT_DECLINE_WINDOW_SECS",
                crate::domain::decline_throttle::DEFAULT_WINDOW.as_secs(),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_local_stack() -> anyhow::Result<()> {
        let config = Config::read(&Env::from_pairs([]))?;
        assert_eq!(config.server.port, 8084);
        assert_eq!(config.server.request_timeout, Duration::from_secs(30));
        assert_eq!(config.psp_timeout, Duration::from_secs(2));
        assert!(config.run_order_consumer && config.run_reconciler);
        assert_eq!(config.order_consumers, 3);
        assert_eq!(config.order_in_flight, 8);
        Ok(())
    }

    #[test]
    fn outside_the_local_profile_the_fingerprint_key_is_required() {
        let env = Env::from_pairs([("APP_PROFILE", "production")]);
        let refused = Config::read(&env)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(refused.starts_with("PAYMENT_FINGERPRINT_KEY"), "{refused}");
    }

    #[test]
    fn attempts_are_at_least_one_and_switches_name_themselves() -> anyhow::Result<()> {
        let config = Config::read(&Env::from_pairs([("PSP_MAX_ATTEMPTS", "0")]))?;
        assert_eq!(config.psp_max_attempts, 1);
        let refused = Config::read(&Env::from_pairs([("RECONCILER", "maybe")]))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            refused.starts_with("RECONCILER must be on or off"),
            "{refused}"
        );
        Ok(())
    }
}
