//! Wiring: database, templates, Kafka topics, the two consumers, the workflow engine's
//! reminder step, the sender pool and the HTTP server, started and stopped in an order that
//! loses nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auth::{KeySource, TokenVerifier};
use contracts::topics::{self, Topic};
use messaging::kafka::Producer;
use messaging::{ConsumerHealth, EventConsumer, TopicSpec};
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use web::{Lifecycle, Readiness, StopStage};

use crate::api::{self, AppState};
use crate::approval_reminders::Reminders;
use crate::config::Config;
use crate::delivery::dead_letter::DeadLetters;
use crate::delivery::dispatcher::Dispatcher;
use crate::delivery::mail::Mailer;
use crate::delivery::queue::Queue;
use crate::delivery::sms::HttpSmsGateway;
use crate::domain::templates::Templates;
use crate::events::{self, handler::NotificationEvents};
use crate::store;

/// Attempts for a record whose handler fails transiently (the database) before the consumer
/// reports itself stalled (readiness red); it keeps retrying until the database is back.
const HANDLER_ATTEMPTS: u32 = 8;

/// A built, not yet running, notification-service.
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

    /// Connects to everything, creates topics, and binds the listener. `keys` verify access
    /// tokens (tests pass a static set instead of user-service's JWKS).
    pub async fn build_with_keys(config: Config, keys: KeySource) -> anyhow::Result<Self> {
        let delivery = config.delivery.clone();
        let pool = store::connect(config.database_url.expose_secret()).await?;
        let templates = Arc::new(Templates::load().context("loading the message templates")?);

        let kafka = config.kafka.clone();
        let topics = Topic::with_prefix(config.topic_prefix.clone());
        let mut specs = Vec::new();
        for logical in [
            topics::USER_EVENTS,
            topics::ORDER_EVENTS,
            topics::PAYMENT_EVENTS,
        ] {
            // Consumed here; created by whichever service starts first.
            specs.push(TopicSpec {
                name: topics.qualified(logical),
                partitions: 3,
                compacted: false,
            });
            specs.push(TopicSpec {
                name: topics::dead_letter(&topics.qualified(logical)),
                partitions: 1,
                compacted: false,
            });
        }
        // A reminder from the engine whose mail keeps failing is dead-lettered here.
        let reminder_topic = topics.qualified(crate::approval_reminders::SOURCE_TOPIC);
        specs.push(TopicSpec {
            name: topics::dead_letter(&reminder_topic),
            partitions: 1,
            compacted: false,
        });
        kafka
            .ensure_topics(&specs)
            .await
            .context("creating Kafka topics (KAFKA_BROKERS)")?;
        let producer: Producer = kafka.producer()?;
        let consumers = ConsumerHealth::new();

        let state = AppState {
            pool: pool.clone(),
            verifier: TokenVerifier::new(
                keys,
                &config.tokens.jwt.issuer,
                &config.tokens.jwt.audience,
            ),
        };
        let router = web::documented_service_router::<api::ApiDoc>(
            "notification-service",
            config.server.request_timeout,
            api::router(state),
            readiness(
                pool.clone(),
                producer.clone(),
                consumers.clone(),
                topics.qualified(contracts::topics::ORDER_EVENTS),
            ),
        )?;
        let mut lifecycle =
            Lifecycle::bind(&config.server.host, config.server.port, router).await?;

        let queue = Arc::new(Queue::new(pool.clone(), delivery.max_queue));
        if config.run_workflow_worker {
            let engine = workflow::EngineClient::new(&config.workflow_engine_url)
                .context("building the workflow engine client (WORKFLOW_ENGINE_URL)")?;
            let reminders = Reminders {
                pool: pool.clone(),
                templates: templates.clone(),
                queue: queue.clone(),
                admin_emails: config.admin_emails.clone().into(),
                source_topic: reminder_topic,
            };
            let worker =
                crate::approval_reminders::worker(engine, reminders, &config.workflow_namespace);
            lifecycle.worker("approval reminder worker", |stop| worker.run(stop));
        }
        let handler = NotificationEvents {
            pool: pool.clone(),
            templates,
            queue: queue.clone(),
            // A handler waiting for room in the queue gives up when the consumers stop.
            shutdown: lifecycle.stop_token(StopStage::Workers),
        };
        if config.run_consumers {
            for _ in 0..config.consumers_per_group {
                let contacts = EventConsumer::new(
                    &kafka,
                    events::contacts_settings(&topics, HANDLER_ATTEMPTS),
                )?
                .reporting_to(&consumers);
                let notices = EventConsumer::new(
                    &kafka,
                    events::notices_settings(&topics, HANDLER_ATTEMPTS),
                )?
                .reporting_to(&consumers);
                let (for_contacts, for_notices) = (handler.clone(), handler.clone());
                lifecycle
                    .worker("contact events", |stop| contacts.run(for_contacts, stop))
                    .worker("notice events", |stop| notices.run(for_notices, stop));
            }
        }
        if config.run_senders {
            let dispatcher = Dispatcher {
                pool: store::senders_pool(
                    config.database_url.expose_secret(),
                    delivery.concurrency,
                )
                .await?,
                mailer: Mailer::new(&config.smtp, delivery.concurrency)?,
                sms: Arc::new(HttpSmsGateway::new(&config.sms)?),
                dead_letters: DeadLetters::new(producer),
                queue: queue.clone(),
                send_timeout: config.smtp.timeout.max(config.sms.timeout) + Duration::from_secs(1),
                settings: delivery,
            };
            // Senders finish the message in hand after the consumers stopped feeding them;
            // whatever is still queued stays in PostgreSQL for the next start.
            lifecycle.spawn(StopStage::Deliveries, "senders", |stop| {
                dispatcher.run(stop)
            });
        }
        let reported = queue.clone();
        lifecycle.spawn(StopStage::Deliveries, "queue metrics", |stop| async move {
            reported.report(stop).await
        });
        let closing = pool.clone();
        lifecycle.close_at_end(async move { closing.close().await });
        Ok(Self { lifecycle, pool })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.lifecycle.port()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` resolves. Then, in order: in-flight requests finish; the
    /// consumers finish the record in hand and commit their offsets; the senders finish the
    /// message in hand; the pool closes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.lifecycle.run_until_stopped(shutdown).await
    }
}

/// The dependencies, and the consumers (red while one holds an event it cannot process yet).
fn readiness(
    pool: PgPool,
    producer: Producer,
    consumers: ConsumerHealth,
    kafka_topic: String,
) -> Readiness {
    Readiness::new()
        .with_check("consumers", move || std::future::ready(consumers.check()))
        .with_postgres(pool)
        .with_check(
            "kafka",
            messaging::kafka::broker_check(producer, kafka_topic),
        )
}
