//! Wiring: MongoDB and its indexes, token keys, Kafka, the outbox relays, the consumers
//! (inventory, the read model's feed), the workflow worker (`restock`) and the HTTP server.

use anyhow::Context as _;
use auth::{KeySource, TokenVerifier};
use contracts::topics::{self, Topic};
use messaging::kafka::Producer;
use messaging::{ConsumerHealth, EventConsumer, KafkaConfig, TopicSpec};
use mongodb::Database;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use web::{Readiness, ServiceInfo};

use crate::api::{self, AppState};
use crate::catalog::Catalog;
use crate::catalog::feed::CatalogFeed;
use crate::config::Config;
use crate::events::outbox::{self, OutboxRelay};
use crate::inventory::consumer::{self as inventory_consumer, OrderEvents};
use crate::inventory::{Inventory, Wake};
use crate::store::reservations::Reservations;
use crate::store::{self, products::Products};

/// A built, not yet running, product-service.
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: axum::Router,
    relays: Vec<OutboxRelay>,
    inventory: Vec<(EventConsumer, OrderEvents)>,
    /// Works the `restock` step of refunds (absent with `WORKFLOW_ENGINE_URL=off`).
    restock_worker: Option<workflow::Worker>,
    catalog_feed: CatalogFeed,
    catalog: Catalog,
    db: Database,
}

impl Application {
    /// Verifies tokens with user-service's JWKS (`JWKS_URL`).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let keys = KeySource::remote(&config.jwks_url).context("building the JWKS client")?;
        Self::build_with_keys(config, keys).await
    }

    /// Connects to everything, creates indexes and topics, and binds the listener. `keys`
    /// verify access tokens (tests pass a static set instead of user-service's JWKS).
    pub async fn build_with_keys(config: Config, keys: KeySource) -> anyhow::Result<Self> {
        let db = store::connect(config.mongodb_url.expose_secret(), &config.database).await?;
        let products = Products::new(&db);
        products.ensure_indexes().await?;
        Reservations::new(&db).ensure_indexes().await?;

        let kafka = KafkaConfig {
            brokers: config.kafka_brokers.clone(),
        };
        let topics = Topic::with_prefix(config.topic_prefix.clone());
        let topic = |name: String, partitions, compacted| TopicSpec {
            name,
            partitions,
            compacted,
        };
        kafka
            .ensure_topics(&[
                // Every event is a full snapshot keyed by product: the latest per key suffices.
                topic(topics.qualified(topics::PRODUCT_EVENTS), 3, true),
                topic(topics.qualified(topics::INVENTORY_EVENTS), 3, false),
                // Consumed here; created by whichever service starts first.
                topic(topics.qualified(topics::ORDER_EVENTS), 3, false),
                topic(
                    topics::dead_letter(&topics.qualified(topics::ORDER_EVENTS)),
                    1,
                    false,
                ),
            ])
            .await
            .context("creating Kafka topics (KAFKA_BROKERS)")?;
        let producer: Producer = kafka.producer()?;

        let wake = Wake::default();
        let catalog = Catalog::new()?;
        let catalog_feed = CatalogFeed::new(&kafka, &topics, catalog.clone())?;
        let inventory_consumers = match config.run_inventory_consumer {
            true => config.inventory_consumers,
            false => 0,
        };
        let consumers = ConsumerHealth::new();
        let inventory = (0..inventory_consumers)
            .map(|_| {
                Ok((
                    EventConsumer::new(&kafka, inventory_consumer::settings(&topics))?
                        .reporting_to(&consumers),
                    OrderEvents(Inventory::new(
                        &db,
                        topics.clone(),
                        catalog.clone(),
                        wake.clone(),
                    )),
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let restock_worker = match &config.workflow_engine_url {
            Some(url) => {
                let engine = workflow::EngineClient::new(url)
                    .context("building the workflow engine client (WORKFLOW_ENGINE_URL)")?;
                let namespace = config
                    .workflow_namespace
                    .clone()
                    .unwrap_or_else(|| workflow::default_namespace(&config.topic_prefix));
                Some(crate::restock::worker(
                    engine,
                    Inventory::new(&db, topics.clone(), catalog.clone(), wake.clone()),
                    &namespace,
                ))
            }
            None => None,
        };
        let state = AppState {
            products,
            verifier: TokenVerifier::new(keys, &config.jwt_issuer, &config.jwt_audience),
            topics,
            catalog: catalog.clone(),
            relay_wake: wake.products.clone(),
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
            readiness(db.clone(), producer.clone(), catalog.clone(), consumers),
        );
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let relays = match config.run_outbox_relay {
            true => [
                (outbox::PRODUCTS, wake.products),
                (outbox::RESERVATIONS, wake.reservations),
            ]
            .into_iter()
            .map(|(outbox, wake)| {
                OutboxRelay::new(&db, outbox, producer.clone(), wake)
                    .with_poll_interval(config.relay_poll_interval)
            })
            .collect(),
            false => Vec::new(),
        };
        Ok(Self {
            listener,
            port,
            router,
            relays,
            inventory,
            restock_worker,
            catalog_feed,
            catalog,
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

    /// This replica's read model (tests look at it directly).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Serves until `shutdown` resolves: in-flight requests finish, then the consumers finish
    /// the record in hand and commit their offsets, then the relays publish what all of that
    /// committed (bounded), then this returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop_consumers = CancellationToken::new();
        let stop_relays = CancellationToken::new();
        let relays: Vec<_> = self
            .relays
            .into_iter()
            .map(|relay| tokio::spawn(relay.run(stop_relays.clone())))
            .collect();
        let mut consumers = Vec::new();
        for (consumer, handler) in self.inventory {
            consumers.push(tokio::spawn(consumer.run(handler, stop_consumers.clone())));
        }
        consumers.push(tokio::spawn(self.catalog_feed.run(stop_consumers.clone())));
        if let Some(worker) = self.restock_worker {
            consumers.push(tokio::spawn(worker.run(stop_consumers.clone())));
        }
        // Order matters: the server stops accepting and finishes in-flight requests first,
        // then the consumers stop; only then do the relays stop, after draining the events
        // both committed.
        let result = web::serve(self.listener, self.router, shutdown)
            .await
            .context("HTTP server failed");
        stop_consumers.cancel();
        for consumer in consumers {
            if let Err(error) = consumer.await {
                tracing::error!(%error, "consumer task failed");
            }
        }
        stop_relays.cancel();
        for relay in relays {
            if let Err(error) = relay.await {
                tracing::error!(%error, "outbox relay task failed");
            }
        }
        result
    }
}

/// The dependencies, the catalog read model, and the inventory consumers (red while one holds
/// an order event it cannot process yet).
fn readiness(
    db: Database,
    producer: Producer,
    catalog: Catalog,
    consumers: ConsumerHealth,
) -> Readiness {
    Readiness::new()
        .with_check("consumers", move || std::future::ready(consumers.check()))
        .with_check("catalog", move || {
            let loaded = catalog.is_loaded();
            async move {
                match loaded {
                    true => Ok(()),
                    false => Err("the catalog read model is still loading product.events".into()),
                }
            }
        })
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
