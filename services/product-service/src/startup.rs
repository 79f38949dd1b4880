//! Wiring: MongoDB and its indexes, token keys, Kafka, the outbox relays, the consumers
//! (inventory, the read model's feed), the workflow worker (`restock`) and the HTTP server,
//! run and stopped in order by `web::Lifecycle`.

use anyhow::Context as _;
use auth::{KeySource, TokenVerifier};
use contracts::topics::{self, Topic};
use messaging::kafka::Producer;
use messaging::{ConsumerHealth, EventConsumer, TopicSpec};
use mongodb::Database;
use secrecy::ExposeSecret as _;
use web::{Lifecycle, Readiness};

use crate::api::{self, AppState, AppStateParts};
use crate::catalog::Catalog;
use crate::catalog::feed::CatalogFeed;
use crate::catalog::writes::CatalogWrites;
use crate::config::Config;
use crate::events::outbox::{self, OutboxRelay};
use crate::inventory::consumer::{self as inventory_consumer, OrderEvents};
use crate::inventory::{Inventory, Wake};
use crate::store::reservations::Reservations;
use crate::store::{self, products::Products};

/// A built, not yet running, product-service.
pub struct Application {
    lifecycle: Lifecycle,
    catalog: Catalog,
    db: Database,
}

impl Application {
    /// Verifies tokens with user-service's JWKS (`JWKS_URL`).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let keys =
            KeySource::remote(&config.tokens.jwks_url).context("building the JWKS client")?;
        Self::build_with_keys(config, keys).await
    }

    /// Connects to everything, creates indexes and topics, and binds the listener. `keys`
    /// verify access tokens (tests pass a static set instead of user-service's JWKS).
    pub async fn build_with_keys(config: Config, keys: KeySource) -> anyhow::Result<Self> {
        let db = store::connect(config.mongodb_url.expose_secret(), &config.database).await?;
        let products = Products::new(&db);
        products.ensure_indexes().await?;
        Reservations::new(&db).ensure_indexes().await?;

        let kafka = config.kafka.clone();
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

        let wake = Wake {
            stock_hold_back: config.stock_snapshot_hold_back,
            ..Wake::default()
        };
        let catalog = Catalog::new()?;
        let catalog_feed = CatalogFeed::new(&kafka, &topics, catalog.clone())?;
        let inventory_consumers = match config.run_inventory_consumer {
            true => config.inventory_consumers,
            false => 0,
        };
        let consumers = ConsumerHealth::new();
        // One `Inventory` for the process, cloned into each consumer and the restock worker:
        // its clones share the per-product writer, so their steps on one product meet in one
        // round instead of racing (`inventory::writer`).
        let stock = Inventory::new(&db, topics.clone(), catalog.clone(), wake.clone());
        let inventory = EventConsumer::group(
            &kafka,
            &inventory_consumer::settings(&topics).with_in_flight(config.inventory_in_flight),
            inventory_consumers,
            &consumers,
        )?;
        let restock_worker = match &config.workflow_engine_url {
            Some(url) => {
                let engine = workflow::EngineClient::new(url)
                    .context("building the workflow engine client (WORKFLOW_ENGINE_URL)")?;
                let namespace = config
                    .workflow_namespace
                    .clone()
                    .unwrap_or_else(|| workflow::default_namespace(&config.topic_prefix));
                Some(crate::restock::worker(engine, stock.clone(), &namespace))
            }
            None => None,
        };
        let state = AppState::new(AppStateParts {
            verifier: TokenVerifier::new(
                keys,
                &config.tokens.jwt.issuer,
                &config.tokens.jwt.audience,
            ),
            catalog: catalog.clone(),
            writes: CatalogWrites {
                products,
                topics: topics.clone(),
                catalog: catalog.clone(),
                relay_wake: wake.products.clone(),
            },
            views: api::views::RenderedViews::default(),
        });
        let router = web::documented_service_router::<api::ApiDoc>(
            "product-service",
            config.server.request_timeout,
            api::router(state),
            readiness(
                db.clone(),
                producer.clone(),
                catalog.clone(),
                consumers,
                topics.qualified(contracts::topics::PRODUCT_EVENTS),
            ),
        )?;
        let mut lifecycle =
            Lifecycle::bind(&config.server.host, config.server.port, router).await?;
        for consumer in inventory {
            let handler = OrderEvents(stock.clone());
            lifecycle.worker("inventory consumer", |stop| consumer.run(handler, stop));
        }
        lifecycle.worker("catalog feed", |stop| catalog_feed.run(stop));
        if let Some(worker) = restock_worker {
            lifecycle.worker("restock worker", |stop| worker.run(stop));
        }
        if config.run_outbox_relay {
            for (name, outbox, wake) in [
                ("products outbox relay", outbox::PRODUCTS, wake.products),
                (
                    "reservations outbox relay",
                    outbox::RESERVATIONS,
                    wake.reservations,
                ),
            ] {
                let relay = OutboxRelay::new(&db, outbox, producer.clone(), wake)
                    .with_poll_interval(config.relay_poll_interval);
                lifecycle.relay(name, |stop| relay.run(stop));
            }
        }
        Ok(Self {
            lifecycle,
            catalog,
            db,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.lifecycle.port()
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// This replica's read model (tests look at it directly).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Serves until `shutdown` resolves: in-flight requests finish, then the consumers (the
    /// inventory consumers, the catalog feed, the restock worker) finish the record or task in
    /// hand and commit, then the relays publish what all of that committed (bounded).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.lifecycle.run_until_stopped(shutdown).await
    }
}

/// The dependencies, the catalog read model, and the inventory consumers (red while one holds
/// an order event it cannot process yet).
fn readiness(
    db: Database,
    producer: Producer,
    catalog: Catalog,
    consumers: ConsumerHealth,
    kafka_topic: String,
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
        .with_check(
            "kafka",
            messaging::kafka::broker_check(producer, kafka_topic),
        )
}
