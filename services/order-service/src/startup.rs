//! Wiring: database and migrations, token keys, Kafka topics, the outbox relay, the three
//! consumers (product and customer replicas, saga), the expiry job, the workflow worker
//! (refund and review steps), the review starter, admission control, the status feed and the HTTP server, run
//! and stopped in order by `web::Lifecycle`.

use std::time::Duration;

use anyhow::Context as _;
use auth::{KeySource, TokenVerifier};
use contracts::topics::{self, Topic};
use messaging::kafka::Producer;
use messaging::{CatchUpGate, ConsumerHealth, EventConsumer, OutboxRelay, TopicSpec};
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;
use web::{Lifecycle, Readiness};

use crate::admission::Admission;
use crate::api::{self, AppState};
use crate::config::Config;
use crate::events::customers::{self, CustomerReplica};
use crate::events::expiry::ExpiryJob;
use crate::events::replica::{self, ProductReplica};
use crate::events::saga::{self as saga_events, SagaCommits, SagaEvents};
use crate::placing::Placing;
use crate::refunds::RefundSettings;
use crate::review::ReviewStarter;
use crate::risk::{RiskSettings, RiskTable};
use crate::saga::SagaSettings;
use crate::status_feed::StatusFeed;

/// A built, not yet running, order-service.
pub struct Application {
    lifecycle: Lifecycle,
    pool: PgPool,
}

impl Application {
    /// Verifies tokens with user-service's JWKS (`JWKS_URL`).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let keys =
            KeySource::remote(&config.tokens.jwks_url).context("building the JWKS client")?;
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

        let kafka = config.kafka.clone();
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
            approval_reminder: config.refund_approval_reminder.clone(),
        };
        let risk_table = RiskTable::default();
        let risk_table_refresh = config.risk_table_refresh;
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
        // Cancelled as shutdown begins, so open status streams end and the server can drain.
        let closing = CancellationToken::new();
        let feed = StatusFeed::new(closing.clone());
        let admission = Admission::new(config.admission);
        let admission_probes = config
            .admission_watch_groups
            .iter()
            .map(|group| {
                kafka.group_probe(
                    &topics.qualified(group),
                    &topics.qualified(topics::ORDER_EVENTS),
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let state = AppState {
            pool: pool.clone(),
            verifier: TokenVerifier::new(
                keys,
                &config.tokens.jwt.issuer,
                &config.tokens.jwt.audience,
            ),
            saga: saga.clone(),
            feed: feed.clone(),
            engine: engine.clone(),
            refunds: refund_settings,
            placing: Placing {
                pool: pool.clone(),
                saga: saga.clone(),
                risk_table: risk_table.clone(),
                engine: engine.clone(),
                risk,
            },
            admission: admission.clone(),
        };
        let consumers = ConsumerHealth::new();
        // The replicas price and address orders: not ready while they replay the log.
        let replicas_caught_up = [replica::settings(&topics), customers::settings(&topics)]
            .iter()
            .map(|settings| kafka.catch_up_gate(settings))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let router = web::documented_service_router::<api::ApiDoc>(
            "order-service",
            config.server.request_timeout,
            api::router(state),
            readiness(
                pool.clone(),
                producer.clone(),
                consumers.clone(),
                replicas_caught_up,
                topics.qualified(contracts::topics::ORDER_EVENTS),
            ),
        )?;
        let mut lifecycle =
            Lifecycle::bind(&config.server.host, config.server.port, router).await?;
        let replica =
            EventConsumer::new(&kafka, replica::settings(&topics))?.reporting_to(&consumers);
        let replica_handler = ProductReplica(pool.clone());
        let saga_consumers = EventConsumer::group(
            &kafka,
            &saga_events::settings(&topics).with_in_flight(config.saga_in_flight),
            config.saga_consumers,
            &consumers,
        )?;
        let customer_consumer =
            EventConsumer::new(&kafka, customers::settings(&topics))?.reporting_to(&consumers);
        let customer_handler = CustomerReplica(pool.clone());
        let expiry = ExpiryJob {
            pool: pool.clone(),
            settings: saga.clone(),
            interval: config.expiry_interval,
        };
        lifecycle
            .worker("product replica consumer", |stop| {
                replica.run(replica_handler, stop)
            })
            .worker("customer replica consumer", |stop| {
                customer_consumer.run(customer_handler, stop)
            })
            .worker("review starter", |stop| review_starter.run(stop))
            .worker("risk table refresh", move |stop| {
                risk_table.run(engine, risk_table_refresh, stop)
            })
            .worker("expiry job", |stop| expiry.run(stop))
            .worker("admission control", {
                let pool = pool.clone();
                |stop| admission.run(pool, admission_probes, stop)
            })
            .worker("workflow worker", |stop| workflow_worker.run(stop));
        // One set of writers for every saga consumer, so records of all of them share commits.
        let saga_commits = (config.saga_batch_max > 1)
            .then(|| SagaCommits::new(pool.clone(), saga.clone(), config.saga_batch_max));
        for consumer in saga_consumers {
            let handler = SagaEvents {
                pool: pool.clone(),
                settings: saga.clone(),
                commits: saga_commits.clone(),
            };
            lifecycle.worker("saga consumer", |stop| consumer.run(handler, stop));
        }
        let feed_pool = pool.clone();
        lifecycle
            .worker("status feed", |stop| feed.run(feed_pool, stop))
            .cancel_on_shutdown(closing);
        if config.run_outbox_relay {
            let relay = OutboxRelay::new(pool.clone(), producer);
            lifecycle.relay("outbox relay", |stop| relay.run(stop));
        }
        let closed = pool.clone();
        lifecycle.close_at_end(async move { closed.close().await });
        Ok(Self { lifecycle, pool })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.lifecycle.port()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` resolves: open status streams end, in-flight requests finish,
    /// then the consumers finish the record in hand and commit their offsets and the jobs and
    /// the workflow worker their pass or task, then the relay publishes what all of that
    /// committed (bounded), then the pool closes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.lifecycle.run_until_stopped(shutdown).await
    }
}

/// The dependencies, the consumers (red while one holds an event it cannot process yet) and
/// the replicas (red until they have replayed the log as it stood at start).
fn readiness(
    pool: PgPool,
    producer: Producer,
    consumers: ConsumerHealth,
    replicas: Vec<CatchUpGate>,
    kafka_topic: String,
) -> Readiness {
    Readiness::new()
        .with_check("consumers", move || std::future::ready(consumers.check()))
        .with_check("replicas", messaging::kafka::catch_up_check(replicas))
        .with_postgres(pool)
        .with_check(
            "kafka",
            messaging::kafka::broker_check(producer, kafka_topic),
        )
}
