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
    /// The MongoDB database this service owns (`catalog`).
    pub database: String,
    pub kafka_brokers: String,
    /// Prepended to every topic name (isolates test runs sharing a broker).
    pub topic_prefix: String,
    pub zipkin_endpoint: Option<String>,
    /// user-service's JWKS, for verifying access tokens.
    pub jwks_url: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
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
    /// How often the relay looks for pending events written by other replicas or left by a
    /// crash (local writes wake it at once).
    pub relay_poll_interval: Duration,
    pub request_timeout: Duration,
    /// The workflow engine whose `restock` tasks this service works (`WORKFLOW_ENGINE_URL`,
    /// without `/engine-rest`; default `http://127.0.0.1:8086`; `off` runs no worker).
    pub workflow_engine_url: Option<String>,
    /// Isolates this deployment's processes on a shared engine (`WORKFLOW_NAMESPACE`; `None`:
    /// derived from the topic prefix at start, as the other services do).
    pub workflow_namespace: Option<String>,
}

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
        let switch = |name: &str| -> anyhow::Result<bool> {
            match var(name).as_deref() {
                None | Some("on") => Ok(true),
                Some("off") => Ok(false),
                Some(_) => anyhow::bail!("{name} must be on or off"),
            }
        };
        Ok(Self {
            host: var("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: match var("PORT") {
                Some(port) => port.parse().context("PORT must be a port number")?,
                None => 8082,
            },
            mongodb_url: SecretString::from(
                var("MONGODB_URL").unwrap_or_else(|| "mongodb://127.0.0.1:27017".into()),
            ),
            database: var("MONGODB_DATABASE").unwrap_or_else(|| "catalog".into()),
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
            run_outbox_relay: true,
            run_inventory_consumer: switch("INVENTORY_CONSUMER")?,
            inventory_consumers: match var("INVENTORY_CONSUMERS") {
                Some(value) => match value.parse::<usize>() {
                    Ok(n) if (1..=16).contains(&n) => n,
                    _ => anyhow::bail!("INVENTORY_CONSUMERS must be a number from 1 to 16"),
                },
                None => 3,
            },
            relay_poll_interval: millis("OUTBOX_POLL_INTERVAL_MS", 1_000)?,
            workflow_engine_url: Some(
                var("WORKFLOW_ENGINE_URL").unwrap_or_else(|| "http://127.0.0.1:8086".into()),
            )
            .filter(|url| url != "off"),
            workflow_namespace: var("WORKFLOW_NAMESPACE"),
            request_timeout: Duration::from_secs(match var("REQUEST_TIMEOUT_SECS") {
                Some(value) => value
                    .parse()
                    .context("REQUEST_TIMEOUT_SECS must be seconds")?,
                None => 10,
            }),
        })
    }
}
