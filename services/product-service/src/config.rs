//! Typed configuration, read once from the environment and validated at start.

use std::time::Duration;

use auth::VerifierConfig;
use messaging::KafkaConfig;
use secrecy::SecretString;
use settings::Env;
use web::ServerConfig;

#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (8082), `REQUEST_TIMEOUT_SECS` (10), `ZIPKIN_ENDPOINT`.
    pub server: ServerConfig,
    /// May carry credentials, hence secret.
    pub mongodb_url: SecretString,
    /// The MongoDB database this service owns (`catalog`).
    pub database: String,
    pub kafka: KafkaConfig,
    /// Prepended to every topic name (isolates test runs sharing a broker).
    pub topic_prefix: String,
    /// user-service's JWKS and the claims required of access tokens.
    pub tokens: VerifierConfig,
    /// Whether this process runs the outbox relay (tests switch it off to play crashes).
    pub run_outbox_relay: bool,
    /// Whether this process consumes `order.events` to reserve stock (`INVENTORY_CONSUMER=off`
    /// disables it, e.g. for a catalog-only replica).
    pub run_inventory_consumer: bool,
    /// Consumers of `order.events` in this process (`INVENTORY_CONSUMERS`, 1 to 16, default
    /// 3, the topic's partition count): the reservations of orders on different partitions
    /// proceed side by side, while one order's events (one key, one partition) are still
    /// handled one after another. Concurrent writers of one product meet in its guarded update.
    pub inventory_consumers: usize,
    /// Records each of those consumers handles at once (`INVENTORY_IN_FLIGHT`, 1 to 256,
    /// default 64), never two of one order at once. The reservations of many orders then wait
    /// for the stock writer together, which takes all of one product's in one guarded update:
    /// with one record at a time per consumer a round held at most one step per consumer, and
    /// one hot product was decided at about 80 orders/s.
    pub inventory_in_flight: usize,
    /// How often the relay looks for pending events written by other replicas or left by a
    /// crash (local writes wake it at once).
    pub relay_poll_interval: Duration,
    /// How long a reservation's product snapshot waits for the product's next stock changes,
    /// to leave with them as one `product.updated` (`STOCK_SNAPSHOT_HOLD_BACK_MS`, 0 to 5,000,
    /// default 1,000; 0: at once). Catalog writes publish at once whatever this says.
    pub stock_snapshot_hold_back: Duration,
    /// The workflow engine whose `restock` tasks this service works (`WORKFLOW_ENGINE_URL`,
    /// without `/engine-rest`; default `http://127.0.0.1:8086`; `off` runs no worker).
    pub workflow_engine_url: Option<String>,
    /// Isolates this deployment's processes on a shared engine (`WORKFLOW_NAMESPACE`; `None`:
    /// derived from the topic prefix at start, as the other services do).
    pub workflow_namespace: Option<String>,
}

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
        Ok(Self {
            server: ServerConfig::from_env(env, 8082, 10)?,
            mongodb_url: env.secret_or("MONGODB_URL", "mongodb://127.0.0.1:27017"),
            database: env.string_or("MONGODB_DATABASE", "catalog"),
            kafka: KafkaConfig::from_env(env)?,
            topic_prefix: env.string_or("KAFKA_TOPIC_PREFIX", ""),
            tokens: VerifierConfig::from_env(env),
            run_outbox_relay: true,
            run_inventory_consumer: env.switch("INVENTORY_CONSUMER", true)?,
            inventory_consumers: env.number_in("INVENTORY_CONSUMERS", 3, 1..=16)?,
            inventory_in_flight: env.number_in("INVENTORY_IN_FLIGHT", 64, 1..=256)?,
            relay_poll_interval: env.millis("OUTBOX_POLL_INTERVAL_MS", 1_000)?,
            stock_snapshot_hold_back: Duration::from_millis(env.number_in(
                "STOCK_SNAPSHOT_HOLD_BACK_MS",
                1_000,
                0..=5_000,
            )?),
            workflow_engine_url: env.unless_off("WORKFLOW_ENGINE_URL", "http://127.0.0.1:8086"),
            workflow_namespace: env.get("WORKFLOW_NAMESPACE"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_local_stack() -> anyhow::Result<()> {
        let config = Config::read(&Env::from_pairs([]))?;
        assert_eq!(config.server.port, 8082);
        assert_eq!(config.server.request_timeout, Duration::from_secs(10));
        assert_eq!(config.database, "catalog");
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(config.tokens.jwt.issuer, "ferroshop-users");
        assert!(config.run_inventory_consumer);
        assert_eq!(config.inventory_consumers, 3);
        assert_eq!(config.inventory_in_flight, 64);
        assert_eq!(
            config.workflow_engine_url.as_deref(),
            Some("http://127.0.0.1:8086")
        );
        Ok(())
    }

    #[test]
    fn switches_and_bounds_are_checked_by_name() -> anyhow::Result<()> {
        let config = Config::read(&Env::from_pairs([
            ("INVENTORY_CONSUMER", "off"),
            ("WORKFLOW_ENGINE_URL", "off"),
        ]))?;
        assert!(!config.run_inventory_consumer);
        assert_eq!(config.workflow_engine_url, None);
        let refused = Config::read(&Env::from_pairs([("INVENTORY_CONSUMERS", "17")]))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            refused.starts_with("INVENTORY_CONSUMERS must be"),
            "{refused}"
        );
        Ok(())
    }
}
