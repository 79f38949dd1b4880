//! Wiring: database, templates, Kafka topics, the two consumers, the sender pool and the HTTP
//! server, started and stopped in an order that loses nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auth::{KeySource, TokenVerifier};
use contracts::topics::{self, Topic};
use messaging::kafka::Producer;
use messaging::{EventConsumer, KafkaConfig, TopicSpec};
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use web::{Readiness, ServiceInfo};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::delivery::dead_letter::DeadLetters;
use crate::delivery::dispatcher::Dispatcher;
use crate::delivery::mail::Mailer;
use crate::delivery::queue::Queue;
use crate::delivery::sms::HttpSmsGateway;
use crate::domain::templates::Templates;
use crate::events::{self, handler::NotificationEvents};
use crate::store;

/// Attempts for a record whose handler fails transiently (the database) before it is
/// dead-lettered by the consumer.
const HANDLER_ATTEMPTS: u32 = 8;

/// A built, not yet running, notification-service.
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: axum::Router,
    consumers: Vec<(EventConsumer, NotificationEvents)>,
    dispatcher: Option<Dispatcher<HttpSmsGateway>>,
    queue: Arc<Queue>,
    stop_consumers: CancellationToken,
    pool: PgPool,
}

impl Application {
    /// Verifies tokens with user-service's JWKS (`JWKS_URL`).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let keys = KeySource::Remote {
            url: config.jwks_url.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .context("building the JWKS client")?,
        };
        Self::build_with_keys(config, keys).await
    }

    /// Connects to everything, creates topics, and binds the listener. `keys` verify access
    /// tokens (tests pass a static set instead of user-service's JWKS).
    pub async fn build_with_keys(config: Config, keys: KeySource) -> anyhow::Result<Self> {
        let delivery = config.delivery.clone();
        let pool = store::connect(config.database_url.expose_secret()).await?;
        let templates = Arc::new(Templates::load().context("loading the message templates")?);

        let kafka = KafkaConfig {
            brokers: config.kafka_brokers.clone(),
        };
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
        kafka
            .ensure_topics(&specs)
            .await
            .context("creating Kafka topics (KAFKA_BROKERS)")?;
        let producer: Producer = kafka.producer()?;

        let queue = Arc::new(Queue::new(pool.clone(), delivery.max_queue));
        let stop_consumers = CancellationToken::new();
        let handler = NotificationEvents {
            pool: pool.clone(),
            templates,
            queue: queue.clone(),
            shutdown: stop_consumers.clone(),
        };
        let mut consumers = Vec::new();
        if config.run_consumers {
            for _ in 0..config.consumers_per_group {
                let contacts = events::contacts_settings(&topics, HANDLER_ATTEMPTS);
                let notices = events::notices_settings(&topics, HANDLER_ATTEMPTS);
                consumers.push((EventConsumer::new(&kafka, contacts)?, handler.clone()));
                consumers.push((EventConsumer::new(&kafka, notices)?, handler.clone()));
            }
        }
        let dispatcher = match config.run_senders {
            true => Some(Dispatcher {
                pool: store::senders_pool(
                    config.database_url.expose_secret(),
                    delivery.concurrency,
                )
                .await?,
                mailer: Mailer::new(&config.smtp, delivery.concurrency)?,
                sms: Arc::new(HttpSmsGateway::new(&config.sms)?),
                dead_letters: DeadLetters::new(producer.clone()),
                queue: queue.clone(),
                send_timeout: config.smtp.timeout.max(config.sms.timeout) + Duration::from_secs(1),
                settings: delivery,
            }),
            false => None,
        };

        let state = AppState {
            pool: pool.clone(),
            verifier: TokenVerifier::new(keys, &config.jwt_issuer, &config.jwt_audience),
        };
        let openapi = <api::ApiDoc as utoipa::OpenApi>::openapi()
            .to_json()
            .context("rendering the OpenAPI document")?;
        let router = web::service_router(
            ServiceInfo {
                name: "notification-service",
                openapi_json: openapi,
                request_timeout: config.request_timeout,
            },
            api::router(state),
            readiness(pool.clone(), producer),
        );
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            port,
            router,
            consumers,
            dispatcher,
            queue,
            stop_consumers,
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

    /// Serves until `shutdown` resolves. Then, in order: in-flight requests finish; the
    /// consumers finish the record in hand and commit their offsets; the senders finish the
    /// message in hand (whatever is still queued stays in PostgreSQL for the next start).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop_senders = CancellationToken::new();
        let consumers: Vec<_> = self
            .consumers
            .into_iter()
            .map(|(consumer, handler)| {
                tokio::spawn(consumer.run(handler, self.stop_consumers.clone()))
            })
            .collect();
        let senders = self
            .dispatcher
            .map(|dispatcher| tokio::spawn(dispatcher.run(stop_senders.clone())));
        let queue = self.queue.clone();
        let reporter = tokio::spawn({
            let stop = stop_senders.clone();
            async move { queue.report(stop).await }
        });

        let result = web::serve(self.listener, self.router, shutdown)
            .await
            .context("HTTP server failed");
        self.stop_consumers.cancel();
        for consumer in consumers {
            if let Err(error) = consumer.await {
                tracing::error!(%error, "consumer task failed");
            }
        }
        stop_senders.cancel();
        if let Some(senders) = senders
            && let Err(error) = senders.await
        {
            tracing::error!(%error, "sender pool failed");
        }
        let _ = reporter.await;
        self.pool.close().await;
        result
    }
}

fn readiness(pool: PgPool, producer: Producer) -> Readiness {
    Readiness::new()
        .with_postgres(pool)
        .with_check("kafka", move || {
            let producer = producer.clone();
            async move { messaging::kafka::broker_reachable(&producer).await }
        })
}
