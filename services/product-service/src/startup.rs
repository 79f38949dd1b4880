//! Wiring: MongoDB and its indexes, token keys, Kafka, the outbox relay and the HTTP server.

use std::sync::Arc;

use anyhow::Context as _;
use auth::{KeySource, TokenVerifier};
use contracts::topics::{self, Topic};
use messaging::kafka::Producer;
use messaging::{KafkaConfig, TopicSpec};
use mongodb::Database;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use web::{Readiness, ServiceInfo};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::events::outbox::OutboxRelay;
use crate::store::locks::ProductLocks;
use crate::store::{self, products::Products};

/// A built, not yet running, product-service.
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: axum::Router,
    relay: Option<OutboxRelay>,
    db: Database,
}

impl Application {
    /// Verifies tokens with user-service's JWKS (`JWKS_URL`).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let keys = KeySource::Remote {
            url: config.jwks_url.clone(),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .context("building the JWKS client")?,
        };
        Self::build_with_keys(config, keys).await
    }

    /// Connects to everything, creates indexes and topics, and binds the listener. `keys`
    /// verify access tokens (tests pass a static set instead of user-service's JWKS).
    pub async fn build_with_keys(config: Config, keys: KeySource) -> anyhow::Result<Self> {
        let db = store::connect(config.mongodb_url.expose_secret(), &config.database).await?;
        let products = Products::new(&db);
        products.ensure_indexes().await?;

        let kafka = KafkaConfig {
            brokers: config.kafka_brokers.clone(),
        };
        let topics = Topic::with_prefix(config.topic_prefix.clone());
        kafka
            .ensure_topics(&[TopicSpec {
                name: topics.qualified(topics::PRODUCT_EVENTS),
                partitions: 3,
                // Every event is a full snapshot keyed by product: the latest per key suffices.
                compacted: true,
            }])
            .await
            .context("creating Kafka topics (KAFKA_BROKERS)")?;
        let producer: Producer = kafka.producer()?;

        let relay_wake = Arc::new(Notify::new());
        let state = AppState {
            products,
            locks: ProductLocks::new(&db),
            verifier: TokenVerifier::new(keys, &config.jwt_issuer, &config.jwt_audience),
            topics,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(config.cache_ttl)
                .build(),
            relay_wake: relay_wake.clone(),
        };
        let openapi = <api::ApiDoc as utoipa::OpenApi>::openapi()
            .to_json()
            .context("rendering the OpenAPI document")?;
        let router = web::service_router(
            ServiceInfo {
                name: "product-service",
                openapi_json: openapi,
                request_timeout: config.request_timeout,
            },
            api::router(state),
            readiness(db.clone(), producer.clone()),
        );
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let relay = config.run_outbox_relay.then(|| {
            OutboxRelay::new(&db, producer, relay_wake)
                .with_poll_interval(config.relay_poll_interval)
        });
        Ok(Self {
            listener,
            port,
            router,
            relay,
            db,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Serves until `shutdown` resolves: in-flight requests finish, then the relay publishes
    /// what they committed (bounded), then this returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(stop.clone())));
        // Order matters: the server stops accepting and finishes in-flight requests first;
        // only then does the relay stop, after draining the events those requests committed.
        let result = web::serve(self.listener, self.router, shutdown)
            .await
            .context("HTTP server failed");
        stop.cancel();
        if let Some(relay) = relay
            && let Err(error) = relay.await
        {
            tracing::error!(%error, "outbox relay task failed");
        }
        result
    }
}

fn readiness(db: Database, producer: Producer) -> Readiness {
    Readiness::new()
        .with_check("mongodb", move || {
            let db = db.clone();
            async move {
                store::ping(&db)
                    .await
                    .map_err(|error| format!("MongoDB unreachable: {error}"))
            }
        })
        .with_check("kafka", move || {
            let producer = producer.clone();
            async move { messaging::kafka::broker_reachable(&producer).await }
        })
}
