//! Wiring: database and migrations, token keys, Kafka topics, the outbox relay, the three
//! consumers (product and customer replicas, saga), the expiry job, the workflow worker
//! (refund and review steps), the review starter and the HTTP server.

use std::time::Duration;

use anyhow::Context as _;
use auth::{KeySource, TokenVerifier};
use contracts::topics::{self, Topic};
use messaging::kafka::Producer;
use messaging::{ConsumerHealth, EventConsumer, KafkaConfig, OutboxRelay, TopicSpec};
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use web::{Readiness, ServiceInfo};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::events::customers::{self, CustomerReplica};
use crate::events::expiry::ExpiryJob;
use crate::events::replica::{self, ProductReplica};
use crate::events::saga::{self as saga_events, SagaEvents};
use crate::refunds::RefundSettings;
use crate::review::ReviewStarter;
use crate::risk::RiskSettings;
use crate::saga::SagaSettings;
use crate::status_feed::StatusFeed;

/// A built, not yet running, order-service.
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: axum::Router,
    relay: Option<OutboxRelay>,
    replica: (EventConsumer, ProductReplica),
    customers: (EventConsumer, CustomerReplica),
    review_starter: ReviewStarter,
    saga: (EventConsumer, SagaEvents),
    expiry: ExpiryJob,
    workflow_worker: workflow::Worker,
    feed: StatusFeed,
    /// Cancelled as shutdown begins, so open status streams end and the HTTP server can drain.
    closing: CancellationToken,
    pool: PgPool,
}

impl Application {
    /// Verifies tokens with user-service's JWKS (`JWKS_URL`).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let keys = KeySource::remote(&config.jwks_url).context("building the JWKS client")?;
        Self::build_with_keys(config, keys).await
    }

    /// Connects to everything, applies migrations, creates topics and binds the listener.
    /// `keys` verify access tokens (tests pass a static set instead of user-service's JWKS).
    pub async fn build_with_keys(config: Config, keys: KeySource) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(20)
            // Within the 2 s a client may wait: PostgreSQL away answers 503 in time.
            .acquire_timeout(Duration::from_millis(1_500))
            .connect(config.database_url.expose_secret())
            .await
            .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
        // sqlx holds an advisory lock while migrating, so replicas starting together apply
        // each migration once.
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("applying database migrations")?;

        let kafka = KafkaConfig {
            brokers: config.kafka_brokers.clone(),
        };
        let topics = Topic::with_prefix(config.topic_prefix.clone());
        let spec = |name: String, compacted| TopicSpec {
            name,
            partitions: 3,
            compacted,
        };
        let dlt = |logical| TopicSpec {
            name: topics::dead_letter(&topics.qualified(logical)),
            partitions: 1,
            compacted: false,
        };
        kafka
            .ensure_topics(&[
                spec(topics.qualified(topics::ORDER_EVENTS), false),
                // Consumed here; created by whichever service starts first.
                spec(topics.qualified(topics::PRODUCT_EVENTS), true),
                spec(topics.qualified(topics::INVENTORY_EVENTS), false),
                spec(topics.qualified(topics::PAYMENT_EVENTS), false),
                spec(topics.qualified(topics::USER_EVENTS), false),
                dlt(topics::PRODUCT_EVENTS),
                dlt(topics::USER_EVENTS),
                dlt(topics::INVENTORY_EVENTS),
                dlt(topics::PAYMENT_EVENTS),
            ])
            .await
            .context("creating Kafka topics (KAFKA_BROKERS)")?;
        let producer: Producer = kafka.producer()?;

        let saga = SagaSettings {
            topics: topics.clone(),
            payment_timeout: config.payment_timeout,
            reservation_timeout: config.reservation_timeout,
            open_orders: crate::domain::open_orders::OpenOrderLimit {
                max: config.max_open_orders_per_user,
            },
        };
        let engine = workflow::EngineClient::new(&config.workflow_engine_url)
            .context("building the workflow engine client (WORKFLOW_ENGINE_URL)")?;
        let refund_settings = RefundSettings {
            window: chrono::Duration::days(i64::from(config.refund_window_days)),
            namespace: config.workflow_namespace.clone(),
            approval_timeout: config.refund_approval_timeout.clone(),
        };
        let risk = RiskSettings {
            review_amount: config.review_amount,
            check_timeout: config.risk_check_timeout,
            review_timeout: config.review_timeout.clone(),
            start_interval: config.review_start_interval,
        };
        let workflow_worker = crate::review::with_steps(
            crate::refunds::worker(engine.clone(), pool.clone(), saga.clone(), &refund_settings),
            pool.clone(),
            saga.clone(),
        );
        let review_starter = ReviewStarter {
            pool: pool.clone(),
            engine: engine.clone(),
            risk: risk.clone(),
            namespace: config.workflow_namespace.clone(),
        };
        let closing = CancellationToken::new();
        let feed = StatusFeed::new(closing.clone());
        let state = AppState {
            pool: pool.clone(),
            verifier: TokenVerifier::new(keys, &config.jwt_issuer, &config.jwt_audience),
            saga: saga.clone(),
            feed: feed.clone(),
            engine,
            refunds: refund_settings,
            risk,
        };
        let openapi = <api::ApiDoc as utoipa::OpenApi>::openapi()
            .to_json()
            .context("rendering the OpenAPI document")?;
        let consumers = ConsumerHealth::new();
        let router = web::service_router(
            ServiceInfo {
                name: "order-service",
                openapi_json: openapi,
                request_timeout: config.request_timeout,
            },
            api::router(state),
            readiness(pool.clone(), producer.clone(), consumers.clone()),
        );
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let relay = config
            .run_outbox_relay
            .then(|| OutboxRelay::new(pool.clone(), producer));
        Ok(Self {
            listener,
            port,
            router,
            relay,
            replica: (
                EventConsumer::new(&kafka, replica::settings(&topics))?.reporting_to(&consumers),
                ProductReplica(pool.clone()),
            ),
            customers: (
                EventConsumer::new(&kafka, customers::settings(&topics))?.reporting_to(&consumers),
                CustomerReplica(pool.clone()),
            ),
            review_starter,
            saga: (
                EventConsumer::new(&kafka, saga_events::settings(&topics))?
                    .reporting_to(&consumers),
                SagaEvents {
                    pool: pool.clone(),
                    settings: saga.clone(),
                },
            ),
            expiry: ExpiryJob {
                pool: pool.clone(),
                settings: saga,
                interval: config.expiry_interval,
            },
            workflow_worker,
            feed,
            closing,
            pool,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` resolves: in-flight requests finish, then the consumers finish
    /// the record in hand and commit their offsets and the expiry job stops, then the relay
    /// publishes what all of that committed (bounded), then this returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop_workers = CancellationToken::new();
        let stop_relay = CancellationToken::new();
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(stop_relay.clone())));
        let (consumer, handler) = self.replica;
        let (saga_consumer, saga_handler) = self.saga;
        let (customer_consumer, customer_handler) = self.customers;
        let workers = [
            tokio::spawn(consumer.run(handler, stop_workers.clone())),
            tokio::spawn(saga_consumer.run(saga_handler, stop_workers.clone())),
            tokio::spawn(customer_consumer.run(customer_handler, stop_workers.clone())),
            tokio::spawn(self.review_starter.run(stop_workers.clone())),
            tokio::spawn(self.expiry.run(stop_workers.clone())),
            tokio::spawn(self.workflow_worker.run(stop_workers.clone())),
            tokio::spawn(self.feed.run(self.pool.clone(), stop_workers.clone())),
        ];
        let closing = self.closing;
        let shutdown = async move {
            shutdown.await;
            closing.cancel();
        };
        let result = web::serve(self.listener, self.router, shutdown)
            .await
            .context("HTTP server failed");
        stop_workers.cancel();
        for worker in workers {
            if let Err(error) = worker.await {
                tracing::error!(%error, "background task failed");
            }
        }
        stop_relay.cancel();
        if let Some(relay) = relay
            && let Err(error) = relay.await
        {
            tracing::error!(%error, "outbox relay task failed");
        }
        self.pool.close().await;
        result
    }
}

/// The dependencies, and the consumers (red while one holds an event it cannot process yet).
fn readiness(pool: PgPool, producer: Producer, consumers: ConsumerHealth) -> Readiness {
    Readiness::new()
        .with_check("consumers", move || std::future::ready(consumers.check()))
        .with_postgres(pool)
        .with_check("kafka", move || {
            let producer = producer.clone();
            async move { messaging::kafka::broker_reachable(&producer).await }
        })
}
