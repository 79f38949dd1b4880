//! `spawn_app()` and the `TestApp` that speaks the API, produces order events and reads what
//! psp-sim and Kafka saw.

use std::time::Duration;

use auth::Role;
use contracts::EventData;
use contracts::order::{OrderAwaitingPayment, OrderCreated, OrderItem};
use contracts::product::Money;
use contracts::topics::{ORDER_EVENTS, PAYMENT_EVENTS};
use messaging::KafkaConfig;
use mongodb::bson::{Document, doc};
use payment_service::Application;
use payment_service::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::tokens::TestIssuer;
use uuid::Uuid;

pub type TestResult = anyhow::Result<()>;
pub use messaging::testing::EventRecord as Record;
pub use testkit::eventually;
pub use testkit::http::Reply;
pub use testkit::spans::flush as flush_spans;
pub use testkit::stack::{kafka_brokers as brokers, mongodb_url, zipkin_url};
pub const DEADLINE: Duration = Duration::from_secs(30);

pub const GOOD_CARD: &str = "4242424242424242";
pub const DECLINED_CARD: &str = "4000000000000002";
pub const POOR_CARD: &str = "4000000000009995";
pub const ERROR_CARD: &str = "4000000000000119";
pub const SLOW_CARD: &str = "4000000000003220";

/// Settings of the psp-sim a test runs against.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub slow_delay: Duration,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: mongodb::Database,
    pub topic_prefix: String,
    pub psp_url: String,
    pub issuer: TestIssuer,
    pub user_id: Uuid,
    pub token: String,
    /// The MongoDB commands this app (not the test) has sent.
    pub commands: payment_service::store::commands::CommandCounts,
}

/// A fresh database for this test (see `testkit::mongo`).
pub async fn fresh_database() -> anyhow::Result<String> {
    testkit::mongo::fresh_database("payments").await
}

pub fn test_config(database: &str, topic_prefix: &str, psp_url: &str) -> Config {
    Config {
        server: web::ServerConfig::for_tests(Duration::from_secs(30)),
        mongodb_url: mongodb_url().into(),
        database: database.to_owned(),
        kafka: KafkaConfig::new(brokers()),
        topic_prefix: topic_prefix.to_owned(),
        tokens: testkit::tokens::static_keys_verifier(),
        psp_url: psp_url.to_owned(),
        psp_api_key: payment_service::config::DEFAULT_PSP_API_KEY.into(),
        psp_timeout: Duration::from_millis(2_000),
        psp_max_attempts: 3,
        breaker_threshold: 50,
        breaker_open_for: Duration::from_secs(10),
        order_wait: Duration::from_millis(1_000),
        replica_poll: Duration::from_millis(100),
        // Generous: a test about something else must not meet the budget on a busy machine
        // (the budget's own test sets it short).
        request_budget: Duration::from_secs(20),
        reconcile_interval: Duration::from_millis(200),
        reconcile_stale_after: Duration::from_secs(60),
        fingerprint_key: "test-fingerprint-key".into(),
        run_outbox_relay: true,
        run_order_consumer: true,
        order_consumers: 3,
        order_in_flight: 8,
        run_reconciler: true,
        relay_poll_interval: Duration::from_millis(200),
        workflow_engine_url: testkit::stack::workflow_engine_url(),
        workflow_namespace: workflow::default_namespace(topic_prefix),
        run_workflow_worker: true,
        max_declines: payment_service::domain::decline_throttle::DEFAULT_MAX_DECLINES,
        decline_window: payment_service::domain::decline_throttle::DEFAULT_WINDOW,
    }
}

/// Starts psp-sim in this process on its own port; returns its URL.
pub async fn spawn_sim(settings: SimSettings) -> String {
    let config = psp_sim::config::Config {
        server: web::ServerConfig::for_tests(Duration::from_secs(30) + settings.slow_delay),
        api_key: psp_sim::config::DEFAULT_API_KEY.into(),
        latency: Duration::ZERO,
        failure_rate: 0.0,
        slow_delay: settings.slow_delay,
    };
    let sim = psp_sim::Application::build(config)
        .await
        .unwrap_or_else(|error| panic!("psp-sim failed to start: {error:#}"));
    let url = format!("http://127.0.0.1:{}", sim.port());
    tokio::spawn(sim.run_until_stopped(std::future::pending()));
    url
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_sim(
        SimSettings {
            slow_delay: Duration::from_secs(5),
        },
        adjust,
    )
    .await
}

pub async fn spawn_app_with_sim(sim: SimSettings, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let database = fresh_database()
        .await
        .unwrap_or_else(|error| panic!("cannot name a test database: {error:#}"));
    let topic_prefix = format!("test-{}.", Uuid::new_v4().simple());
    let psp_url = spawn_sim(sim).await;
    start(&database, &topic_prefix, &psp_url, adjust).await
}

/// Another replica of `app`'s deployment: the same database, topics and provider.
pub async fn spawn_replica(app: &TestApp, adjust: impl FnOnce(&mut Config)) -> TestApp {
    start(app.db.name(), &app.topic_prefix, &app.psp_url, adjust).await
}

pub async fn start(
    database: &str,
    topic_prefix: &str,
    psp_url: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    testkit::spans::install("payment-service", true);
    let mut config = test_config(database, topic_prefix, psp_url);
    adjust(&mut config);
    // One key per test process: every app (and replica) accepts the tokens of the others.
    let issuer = TestIssuer::shared().unwrap_or_else(|error| panic!("issuer: {error:#}"));
    let app = Application::build_with_keys(config, issuer.keys())
        .await
        .unwrap_or_else(|error| panic!("payment-service failed to start: {error:#}"));
    let port = app.port();
    let db = app.database().clone();
    let commands = app.mongodb_commands();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let user_id = Uuid::now_v7();
    let token = issuer
        .token(user_id, Role::Customer, "payer@example.com")
        .unwrap_or_else(|error| panic!("token: {error:#}"));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        db,
        topic_prefix: topic_prefix.to_owned(),
        psp_url: psp_url.to_owned(),
        issuer,
        user_id,
        token,
        commands,
    }
}

pub fn card(number: &str) -> Value {
    json!({"number": number, "exp_month": 12, "exp_year": 2035, "cvc": "123"})
}

/// `data` as an order-service event about `order_id`: the key and the CloudEvent's bytes.
pub fn order_event<T: EventData>(order_id: Uuid, data: T) -> anyhow::Result<(String, Vec<u8>)> {
    messaging::testing::keyed_event("/order-service", order_id, data)
}

pub fn eur(amount: i64) -> Money {
    Money {
        amount,
        currency: "EUR".into(),
    }
}

pub fn created(order_id: Uuid, user_id: Uuid, amount: i64) -> OrderCreated {
    OrderCreated {
        order_id,
        user_id,
        items: vec![OrderItem {
            product_id: Uuid::now_v7(),
            name: "Kettle".into(),
            quantity: 1,
            unit_price: eur(amount),
        }],
        total: eur(amount),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn token_for(&self, user: Uuid) -> String {
        self.issuer
            .token(user, Role::Customer, "other@example.com")
            .unwrap_or_else(|error| panic!("token: {error:#}"))
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        testkit::http::send(request).await
    }

    /// `POST /api/payments` as the test's user.
    pub async fn pay(&self, key: &str, order_id: Uuid, card: Value) -> anyhow::Result<Reply> {
        self.pay_as(
            &self.token,
            key,
            &json!({"order_id": order_id, "card": card}),
        )
        .await
    }

    pub async fn pay_as(&self, token: &str, key: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .post(self.url("/api/payments"))
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(body),
        )
        .await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> anyhow::Result<Reply> {
        self.send(self.client.get(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.get_as(&self.token, path).await
    }

    /// Waits until `GET /api/payments/{id}` shows `status`; returns the payment.
    pub async fn wait_for_status(&self, id: &str, status: &str) -> anyhow::Result<Value> {
        let path = format!("/api/payments/{id}");
        eventually(DEADLINE, || async {
            let reply = self.get(&path).await?;
            anyhow::ensure!(reply.body["status"] == status, "{reply:?}");
            Ok(())
        })
        .await?;
        Ok(self.get(&path).await?.body)
    }

    /// The physical name of a logical topic in this test.
    pub fn topic(&self, logical: &str) -> String {
        format!("{}{logical}", self.topic_prefix)
    }

    /// Puts `records` (key, payload) on this test's `topic`, in order.
    pub async fn produce(&self, logical: &str, records: &[(String, Vec<u8>)]) -> TestResult {
        produce(&self.topic(logical), records).await
    }

    /// Publishes an order event on this test's `order.events`.
    pub async fn order_event<T: EventData>(&self, order_id: Uuid, data: T) -> TestResult {
        self.produce(ORDER_EVENTS, &[order_event(order_id, data)?])
            .await
    }

    /// The replica's status of an order (`None` while unknown).
    pub async fn replica_status(&self, order_id: Uuid) -> anyhow::Result<Option<String>> {
        let order = self
            .db
            .collection::<Document>("orders")
            .find_one(doc! {"_id": order_id.to_string()})
            .await?;
        Ok(order.and_then(|o| o.get_str("status").ok().map(str::to_owned)))
    }

    pub async fn wait_for_replica(&self, order_id: Uuid, status: &str) -> TestResult {
        eventually(DEADLINE, || async move {
            let current = self.replica_status(order_id).await?;
            anyhow::ensure!(current.as_deref() == Some(status), "replica: {current:?}");
            Ok(())
        })
        .await
    }

    /// An order of `user` for `amount` EUR cents, awaiting payment in the replica.
    pub async fn awaiting_order_of(&self, user: Uuid, amount: i64) -> anyhow::Result<Uuid> {
        let order_id = Uuid::now_v7();
        self.produce(
            ORDER_EVENTS,
            &[
                order_event(order_id, created(order_id, user, amount))?,
                order_event(
                    order_id,
                    OrderAwaitingPayment {
                        order_id,
                        user_id: user,
                    },
                )?,
            ],
        )
        .await?;
        self.wait_for_replica(order_id, "awaiting_payment").await?;
        Ok(order_id)
    }

    /// An order of the test's user awaiting payment.
    pub async fn awaiting_order(&self, amount: i64) -> anyhow::Result<Uuid> {
        self.awaiting_order_of(self.user_id, amount).await
    }

    /// The charges psp-sim holds for an order.
    pub async fn psp_charges(&self, order_id: Uuid) -> anyhow::Result<Vec<Value>> {
        let reply = self
            .send(
                self.client
                    .get(format!("{}/v1/charges?reference={order_id}", self.psp_url))
                    .bearer_auth(psp_sim::config::DEFAULT_API_KEY),
            )
            .await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "{reply:?}");
        Ok(reply.body["data"].as_array().cloned().unwrap_or_default())
    }

    /// Succeeded charges at the provider for an order.
    pub async fn succeeded_charges(&self, order_id: Uuid) -> anyhow::Result<usize> {
        Ok(self
            .psp_charges(order_id)
            .await?
            .iter()
            .filter(|c| c["status"] == "succeeded")
            .count())
    }

    /// Every event on this test's `payment.events`.
    pub async fn payment_events(&self) -> anyhow::Result<Vec<Record>> {
        messaging::testing::read_events(&brokers(), &self.topic(PAYMENT_EVENTS)).await
    }

    /// The payment events of one order, by type, once the outbox is empty.
    pub async fn payment_event_types(&self, order_id: Uuid) -> anyhow::Result<Vec<String>> {
        self.wait_for_empty_outbox().await?;
        let events = self.payment_events().await?;
        Ok(events
            .iter()
            .filter(|record| record.key == order_id.to_string())
            .map(|record| record.event.event_type.clone())
            .collect())
    }

    pub async fn wait_for_empty_outbox(&self) -> TestResult {
        eventually(DEADLINE, || async {
            let n = payment_service::events::backlog(&self.db).await?;
            anyhow::ensure!(n == 0, "{n} events still pending");
            Ok(())
        })
        .await
    }
}

/// Puts `records` on `topic`; one order's events (one key) keep their order.
pub async fn produce(topic: &str, records: &[(String, Vec<u8>)]) -> TestResult {
    messaging::testing::produce(&brokers(), topic, records).await
}
