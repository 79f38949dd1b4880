//! Wiring: MongoDB and its indexes, token keys, Kafka, the provider client, the outbox relay,
//! the `order.events` consumer, the reconciler and the HTTP server.

use anyhow::Context as _;
use auth::{KeySource, TokenVerifier};
use contracts::topics::{self, Topic};
use messaging::kafka::Producer;
use messaging::mongo::{OutboxRelay, RelayWake};
use messaging::{ConsumerHealth, EventConsumer, TopicSpec};
use mongodb::Database;
use secrecy::ExposeSecret as _;
use web::{Lifecycle, Readiness};

use crate::api::{self, AppState};
use crate::charging::Charging;
use crate::config::Config;
use crate::events::{self, orders::OrderEvents};
use crate::psp::{PspClient, PspSettings};
use crate::reconciler::Reconciler;
use crate::refunds::Refunds;
use crate::store::commands::CommandCounts;
use crate::store::{self, orders::Orders, payments::Payments};

/// A built, not yet running, payment-service.
pub struct Application {
    lifecycle: Lifecycle,
    db: Database,
    commands: CommandCounts,
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
        let commands = CommandCounts::default();
        let db = store::connect(
            config.mongodb_url.expose_secret(),
            &config.database,
            &commands,
        )
        .await?;
        store::ensure_indexes(&db).await?;

        let kafka = config.kafka.clone();
        let topics = Topic::with_prefix(config.topic_prefix.clone());
        let topic = |name: String, partitions| TopicSpec {
            name,
            partitions,
            compacted: false,
        };
        kafka
            .ensure_topics(&[
                topic(topics.qualified(topics::PAYMENT_EVENTS), 3),
                // Consumed here; created by whichever service starts first.
                topic(topics.qualified(topics::ORDER_EVENTS), 3),
                topic(
                    topics::dead_letter(&topics.qualified(topics::ORDER_EVENTS)),
                    1,
                ),
            ])
            .await
            .context("creating Kafka topics (KAFKA_BROKERS)")?;
        let producer: Producer = kafka.producer()?;

        let psp = PspClient::new(PspSettings {
            base_url: config.psp_url.clone(),
            api_key: config.psp_api_key.clone(),
            timeout: config.psp_timeout,
            max_attempts: config.psp_max_attempts,
            breaker_threshold: config.breaker_threshold,
            breaker_open_for: config.breaker_open_for,
        })?;
        let wake = RelayWake::default();
        let payments = Payments::new(&db);
        let orders = Orders::new(&db);
        let refunds = Refunds {
            payments: payments.clone(),
            orders: orders.clone(),
            psp: psp.clone(),
            topics: topics.clone(),
            relay_wake: wake.clone(),
        };
        let workflow_worker = match config.run_workflow_worker {
            true => Some(crate::refund_requests::worker(
                workflow::EngineClient::new(&config.workflow_engine_url)
                    .context("building the workflow engine client (WORKFLOW_ENGINE_URL)")?,
                refunds.clone(),
                &config.workflow_namespace,
            )),
            false => None,
        };
        let charging = Charging {
            payments,
            orders: orders.clone(),
            psp,
            refunds: refunds.clone(),
            topics: topics.clone(),
            relay_wake: wake.clone(),
            fingerprint_key: config.fingerprint_key.clone(),
            order_wait: config.order_wait,
            replica_poll: config.replica_poll,
            request_budget: config.request_budget,
        };
        let consumers = ConsumerHealth::new();
        // Payments are decided on the order replica: not ready while it replays the log.
        let replica_caught_up = kafka.catch_up_gate(&events::orders::settings(&topics))?;
        let order_consumers = match config.run_order_consumer {
            true => config.order_consumers,
            false => 0,
        };
        let order_events = EventConsumer::group(
            &kafka,
            &events::orders::settings(&topics).with_in_flight(config.order_in_flight),
            order_consumers,
            &consumers,
        )?;
        let reconciler = config.run_reconciler.then(|| Reconciler {
            charging: charging.clone(),
            interval: config.reconcile_interval,
            stale_after: config.reconcile_stale_after,
        });
        let state = AppState {
            charging,
            verifier: TokenVerifier::new(
                keys,
                &config.tokens.jwt.issuer,
                &config.tokens.jwt.audience,
            ),
            declines: std::sync::Arc::new(crate::domain::decline_throttle::DeclineThrottle::new(
                config.max_declines,
                config.decline_window,
            )),
        };
        let router = web::documented_service_router::<api::ApiDoc>(
            "payment-service",
            config.server.request_timeout,
            api::router(state),
            readiness(
                db.clone(),
                producer.clone(),
                consumers,
                replica_caught_up,
                topics.qualified(contracts::topics::PAYMENT_EVENTS),
            ),
        )?;
        let mut lifecycle =
            Lifecycle::bind(&config.server.host, config.server.port, router).await?;
        for consumer in order_events {
            let handler = OrderEvents {
                orders: orders.clone(),
                refunds: refunds.clone(),
            };
            lifecycle.worker("order events", |stop| consumer.run(handler, stop));
        }
        if let Some(reconciler) = reconciler {
            lifecycle.worker("reconciler", |stop| reconciler.run(stop));
        }
        if let Some(worker) = workflow_worker {
            lifecycle.worker("refund-payment worker", |stop| worker.run(stop));
        }
        if config.run_outbox_relay {
            // Several payments of one order share its key: keep their events in write order.
            let relay = OutboxRelay::new(&db, events::PAYMENTS, producer.clone(), wake)
                .with_poll_interval(config.relay_poll_interval)
                .ordered_by("updated_at");
            lifecycle.relay("outbox relay", |stop| relay.run(stop));
        }
        Ok(Self {
            lifecycle,
            db,
            commands,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.lifecycle.port()
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The MongoDB commands this instance has sent (see `store::commands`).
    pub fn mongodb_commands(&self) -> CommandCounts {
        self.commands.clone()
    }

    /// Serves until `shutdown` resolves: in-flight requests finish, then the consumer
    /// finishes the record in hand and commits, the reconciler its pass and the refund worker
    /// its task, and then the relay publishes what all of that committed (bounded).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.lifecycle.run_until_stopped(shutdown).await
    }
}

fn readiness(
    db: Database,
    producer: Producer,
    consumers: ConsumerHealth,
    replica: messaging::CatchUpGate,
    kafka_topic: String,
) -> Readiness {
    // The provider is not a readiness dependency: while it is down, payments answer 503
    // through the circuit breaker, and reads keep working. The order consumer is: while it
    // holds an event it cannot apply, the replica falls behind. So is the replica's first
    // replay: a payment decided on an order's stale status would be charged, then refunded.
    Readiness::new()
        .with_check("consumers", move || std::future::ready(consumers.check()))
        .with_check("replicas", messaging::kafka::catch_up_check(vec![replica]))
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
