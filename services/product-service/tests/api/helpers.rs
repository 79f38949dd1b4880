//! `spawn_app()` and the `TestApp` that speaks the API.

use std::time::Duration;

use auth::Role;
use contracts::EventData;
use contracts::topics::PRODUCT_EVENTS;
use messaging::KafkaConfig;
use mongodb::bson::{Bson, Document, doc};
use product_service::Application;
use product_service::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::tokens::TestIssuer;
use uuid::Uuid;

pub type TestResult = anyhow::Result<()>;
pub use messaging::testing::EventRecord as Record;
pub use testkit::eventually;
pub use testkit::http::{Reply, string};
pub use testkit::stack::{kafka_brokers as brokers, mongodb_url};

pub use auth::config::{DEFAULT_AUDIENCE as AUDIENCE, DEFAULT_ISSUER as ISSUER};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: mongodb::Database,
    pub topic_prefix: String,
    pub admin_token: String,
    pub customer_token: String,
}

/// A fresh database for this test (see `testkit::mongo`).
pub async fn fresh_database() -> anyhow::Result<String> {
    testkit::mongo::fresh_database("catalog").await
}

pub fn test_config(database: &str, topic_prefix: &str) -> Config {
    Config {
        server: web::ServerConfig::for_tests(Duration::from_secs(30)),
        mongodb_url: mongodb_url().into(),
        database: database.to_owned(),
        kafka: KafkaConfig::new(brokers()),
        topic_prefix: topic_prefix.to_owned(),
        tokens: testkit::tokens::static_keys_verifier(),
        run_outbox_relay: true,
        run_inventory_consumer: true,
        inventory_consumers: 3,
        inventory_in_flight: 64,
        relay_poll_interval: Duration::from_millis(200),
        // Reservation snapshots coalesce as deployed (`STOCK_SNAPSHOT_HOLD_BACK_MS`), over a
        // shorter hold-back than the deployed 1 s, so the tests wait less.
        stock_snapshot_hold_back: Duration::from_millis(200),
        // The restock tests switch the worker on (restock.rs).
        workflow_engine_url: None,
        workflow_namespace: None,
    }
}

/// Polls `/health/ready` until it answers 200 (the read model loaded), within a deadline.
pub async fn wait_until_ready(address: &str) -> TestResult {
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(60), || {
        let client = client.clone();
        async move {
            let reply = client.get(format!("{address}/health/ready")).send().await?;
            anyhow::ensure!(reply.status() == StatusCode::OK, "{}", reply.text().await?);
            Ok(())
        }
    })
    .await
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let database = fresh_database()
        .await
        .unwrap_or_else(|error| panic!("cannot name a test database: {error:#}"));
    let topic_prefix = format!("test-{}.", Uuid::new_v4().simple());
    start(&database, &topic_prefix, adjust).await
}

/// Another replica of `app`'s deployment: the same database and topics.
pub async fn spawn_replica(app: &TestApp, adjust: impl FnOnce(&mut Config)) -> TestApp {
    start(app.db.name(), &app.topic_prefix, adjust).await
}

async fn start(database: &str, topic_prefix: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
    testkit::spans::install("product-service", true);
    let mut config = test_config(database, topic_prefix);
    adjust(&mut config);

    // Tokens as user-service would sign them, verified against this key's JWKS.
    let issuer = TestIssuer::new().unwrap_or_else(|error| panic!("issuer: {error:#}"));
    let token = |role| {
        issuer
            .token_for(role)
            .unwrap_or_else(|error| panic!("token: {error:#}"))
    };
    let (admin_token, customer_token) = (token(Role::Admin), token(Role::Customer));

    let app = Application::build_with_keys(config, issuer.keys())
        .await
        .unwrap_or_else(|error| panic!("product-service failed to start: {error:#}"));
    let port = app.port();
    let db = app.database().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let address = format!("http://127.0.0.1:{port}");
    // Readiness includes the read model's initial load; every test starts from a loaded one.
    wait_until_ready(&address)
        .await
        .unwrap_or_else(|error| panic!("product-service never became ready: {error:#}"));
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        topic_prefix: topic_prefix.to_owned(),
        admin_token,
        customer_token,
    }
}

/// A product body with sensible defaults; `sku` must be unique per test database.
pub fn product_body(sku: &str) -> Value {
    json!({
        "sku": sku,
        "name": format!("Product {sku}"),
        "description": "A fine thing",
        "category": "kitchen",
        "tags": ["steel", "gift"],
        "price": {"amount": 1999, "currency": "EUR"},
        "specs": {"dimensions": {"height_cm": 24, "materials": ["steel", {"lid": "glass"}]}},
        "images": [{"url": "https://img.example.com/a.jpg", "alt": "front"}],
        "initial_stock": 10,
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        testkit::http::send(request).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send(self.client.get(self.url(path))).await
    }

    /// `POST path` with a JSON body, as admin.
    pub async fn post_as_admin(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(&self.admin_token)
                .json(body),
        )
        .await
    }

    /// `POST /api/products` as admin.
    pub async fn create(&self, body: &Value) -> anyhow::Result<Reply> {
        self.post_as_admin("/api/products", body).await
    }

    /// Creates a product and returns its view, failing unless 201.
    pub async fn created(&self, body: &Value) -> anyhow::Result<Value> {
        let reply = self.create(body).await?;
        anyhow::ensure!(reply.status == StatusCode::CREATED, "create: {reply:?}");
        Ok(reply.body)
    }

    pub async fn patch(&self, id: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .patch(self.url(&format!("/api/products/{id}")))
                .bearer_auth(&self.admin_token)
                .json(body),
        )
        .await
    }

    pub async fn delete(&self, id: &str) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .delete(self.url(&format!("/api/products/{id}")))
                .bearer_auth(&self.admin_token),
        )
        .await
    }

    pub async fn adjust(&self, id: &str, delta: i64, reason: &str) -> anyhow::Result<Reply> {
        let body = json!({"delta": delta, "reason": reason});
        self.post_as_admin(&format!("/api/products/{id}/stock"), &body)
            .await
    }

    /// The stored document of a product, pending events and all.
    pub async fn document(&self, id: &str) -> anyhow::Result<Document> {
        self.db
            .collection::<Document>("products")
            .find_one(doc! {"_id": id})
            .await?
            .ok_or_else(|| anyhow::anyhow!("no document {id}"))
    }

    pub async fn pending_events(&self, id: &str) -> anyhow::Result<usize> {
        Ok(self
            .document(id)
            .await?
            .get_array("pending_events")
            .map(Vec::len)
            .unwrap_or(0))
    }

    /// Waits until the relay has published everything.
    pub async fn wait_for_empty_outbox(&self) -> TestResult {
        let db = self.db.clone();
        eventually(Duration::from_secs(30), move || {
            let db = db.clone();
            async move {
                let n = product_service::events::outbox::backlog(&db).await?;
                anyhow::ensure!(n == 0, "{n} events still pending");
                Ok(())
            }
        })
        .await
    }

    /// Every record on this test's `product.events`.
    pub async fn product_events(&self) -> anyhow::Result<Vec<Record>> {
        read_topic(&self.topic(PRODUCT_EVENTS)).await
    }

    /// The physical name of a logical topic in this test.
    pub fn topic(&self, logical: &str) -> String {
        format!("{}{logical}", self.topic_prefix)
    }

    /// Puts `records` (key, payload) on this test's `topic` at once, as another service's
    /// producer would.
    pub async fn produce(&self, logical: &str, records: &[(String, Vec<u8>)]) -> TestResult {
        messaging::testing::produce(&brokers(), &self.topic(logical), records).await
    }

    /// The product's stock `(available, reserved, sold)`, after checking its books balance:
    /// `initial_stock + adjusted_total = available + reserved + sold`, and the per-order
    /// reservation records add up to `reserved`.
    pub async fn books(&self, id: &str) -> anyhow::Result<(i64, i64, i64)> {
        let document = self.document(id).await?;
        let stock = document.get_document("stock")?;
        let (available, reserved, sold) = (
            stock.get_i64("available")?,
            stock.get_i64("reserved")?,
            document.get_i64("sold")?,
        );
        let held: i64 = match document.get_document("reservations") {
            Ok(records) => records.values().filter_map(Bson::as_i64).sum(),
            Err(_) => 0,
        };
        anyhow::ensure!(
            document.get_i64("initial_stock")? + document.get_i64("adjusted_total")?
                == available + reserved + sold,
            "books of {id} do not balance: {document}"
        );
        anyhow::ensure!(held == reserved, "reservation records of {id}: {document}");
        anyhow::ensure!(
            available >= 0 && reserved >= 0,
            "negative stock: {document}"
        );
        Ok((available, reserved, sold))
    }
}

/// `data` as an order-service event about `order_id`: the key and the CloudEvent's bytes.
pub fn order_event<T: EventData>(order_id: Uuid, data: T) -> anyhow::Result<(String, Vec<u8>)> {
    messaging::testing::keyed_event("/order-service", order_id, data)
}

/// Every event currently in `topic` (duplicates included).
pub async fn read_topic(topic: &str) -> anyhow::Result<Vec<Record>> {
    messaging::testing::read_events(&brokers(), topic).await
}
