//! `spawn_stack()`: an order-service and a product-service sharing fresh topics, each with its
//! own fresh database, and a client that speaks both APIs.

use std::time::Duration;

use auth::Role;
use auth::config::{DEFAULT_AUDIENCE as AUDIENCE, DEFAULT_ISSUER as ISSUER};
use contracts::topics::ORDER_EVENTS;
use contracts::{CloudEvent, EventData};
use messaging::KafkaConfig;
use order_service::Application;
use order_service::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::tokens::TestIssuer;
use uuid::Uuid;

pub use messaging::testing::EventRecord;
pub use testkit::eventually;
pub use testkit::http::Reply;
pub use testkit::stack::{kafka_brokers as brokers, mongodb_url};

pub type TestResult = anyhow::Result<()>;

pub const DEADLINE: Duration = Duration::from_secs(60);

/// A fresh database for this test (see `testkit::postgres`).
pub async fn fresh_database() -> anyhow::Result<String> {
    testkit::postgres::fresh_database("orders").await
}

pub fn order_config(database_url: &str, topic_prefix: &str) -> Config {
    Config {
        server: web::ServerConfig::for_tests(Duration::from_secs(30)),
        database_url: database_url.to_owned().into(),
        kafka: KafkaConfig::new(brokers()),
        topic_prefix: topic_prefix.to_owned(),
        tokens: testkit::tokens::static_keys_verifier(),
        payment_timeout: Duration::from_secs(900),
        reservation_timeout: Duration::from_secs(900),
        expiry_interval: Duration::from_millis(200),
        saga_consumers: 3,
        saga_in_flight: 8,
        saga_batch_max: 32,
        run_outbox_relay: true,
        workflow_engine_url: testkit::stack::workflow_engine_url(),
        workflow_namespace: workflow::default_namespace(topic_prefix),
        refund_window_days: 14,
        refund_approval_timeout: "P3D".into(),
        refund_approval_reminder: "P2D".into(),
        max_open_orders_per_user: order_service::domain::open_orders::DEFAULT_MAX_OPEN,
        review_amount: 1_000_000,
        risk_check_timeout: Duration::from_secs(2),
        risk_table_refresh: Duration::from_millis(500),
        review_timeout: "P2D".into(),
        review_start_interval: Duration::from_millis(100),
        admission: order_service::admission::AdmissionSettings {
            max_wait: order_service::admission::AdmissionSettings::DEFAULT_MAX_WAIT,
            max_late: order_service::admission::AdmissionSettings::DEFAULT_MAX_LATE,
            check_interval: Duration::from_millis(100),
            max_backlog: order_service::admission::AdmissionSettings::DEFAULT_MAX_BACKLOG,
        },
        admission_watch_groups: Vec::new(),
    }
}

/// Deploys `workflow/models/order-risk.dmn` and `order-review.bpmn` to the shared engine,
/// once per test binary (deploy-changed-only: identical files make no new version). The
/// engine deploys the repository's models when it starts; this makes the tests independent
/// of when the running engine was last built.
pub async fn deploy_review_models() -> anyhow::Result<()> {
    static DEPLOYED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DEPLOYED
        .get_or_try_init(|| async {
            let engine = workflow::EngineClient::new(&testkit::stack::workflow_engine_url())?;
            engine
                .deploy(
                    "ferroshop-order-review",
                    vec![
                        (
                            "order-risk.dmn".into(),
                            include_bytes!("../../../../workflow/models/order-risk.dmn").to_vec(),
                        ),
                        (
                            "order-review.bpmn".into(),
                            include_bytes!("../../../../workflow/models/order-review.bpmn")
                                .to_vec(),
                        ),
                    ],
                    true,
                )
                .await?;
            anyhow::Ok(())
        })
        .await
        .map(drop)
}

pub struct Stack {
    pub orders: String,
    pub products: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub database_url: String,
    pub topic_prefix: String,
    issuer: TestIssuer,
    pub admin_token: String,
}

pub struct Customer {
    pub id: Uuid,
    pub token: String,
}

pub async fn spawn_stack() -> Stack {
    spawn_stack_with(|_| {}).await
}

pub async fn spawn_stack_with(adjust: impl FnOnce(&mut Config)) -> Stack {
    deploy_review_models()
        .await
        .unwrap_or_else(|error| panic!("deploying the review models: {error:#}"));
    let mut stack = spawn_catalog().await;
    stack.start_orders(adjust).await;
    stack
}

/// Only product-service, on fresh topics; `start_orders` adds order-service later.
pub async fn spawn_catalog() -> Stack {
    testkit::spans::install("order-service", false);
    let database_url = fresh_database()
        .await
        .unwrap_or_else(|error| panic!("cannot create a test database: {error:#}"));
    let topic_prefix = format!("test-{}.", Uuid::new_v4().simple());
    let issuer = TestIssuer::new().unwrap_or_else(|error| panic!("issuer: {error:#}"));

    // The real product-service, on the same topics.
    let catalog_db = testkit::mongo::fresh_database("catalog")
        .await
        .unwrap_or_else(|error| panic!("cannot name a catalog database: {error:#}"));
    let mut product_config = product_service::config::Config::from_env()
        .unwrap_or_else(|error| panic!("product config: {error:#}"));
    product_config.server.port = 0;
    product_config.mongodb_url = mongodb_url().into();
    product_config.database = catalog_db;
    product_config.kafka.brokers = brokers();
    product_config.topic_prefix = topic_prefix.clone();
    product_config.server.zipkin_endpoint = None;
    product_config.tokens.jwt.issuer = ISSUER.into();
    product_config.tokens.jwt.audience = AUDIENCE.into();
    product_config.relay_poll_interval = Duration::from_millis(200);
    let products = product_service::Application::build_with_keys(product_config, issuer.keys())
        .await
        .unwrap_or_else(|error| panic!("product-service failed to start: {error:#}"));
    let products_port = products.port();
    tokio::spawn(products.run_until_stopped(std::future::pending()));

    let pool =
        PgPool::connect_lazy(&database_url).unwrap_or_else(|error| panic!("pool: {error:#}"));
    let admin_token = issuer
        .token(Uuid::now_v7(), Role::Admin, "admin@example.com")
        .unwrap_or_else(|error| panic!("token: {error:#}"));
    Stack {
        orders: String::new(),
        products: format!("http://127.0.0.1:{products_port}"),
        client: reqwest::Client::new(),
        pool,
        database_url,
        topic_prefix,
        issuer,
        admin_token,
    }
}

/// Starts an order-service; returns its address and pool.
async fn start_order_service(config: Config, issuer: &TestIssuer) -> (String, PgPool) {
    let app = Application::build_with_keys(config, issuer.keys())
        .await
        .unwrap_or_else(|error| panic!("order-service failed to start: {error:#}"));
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    (address, pool)
}

pub fn address() -> Value {
    json!({"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London",
           "postal_code": "SW1Y 4JH", "country": "GB"})
}

impl Stack {
    pub fn customer(&self) -> Customer {
        let id = Uuid::now_v7();
        let token = self
            .issuer
            .token(id, Role::Customer, &format!("{id}@example.com"))
            .unwrap_or_else(|error| panic!("token: {error:#}"));
        Customer { id, token }
    }

    /// Starts this stack's order-service (its database, its topics).
    pub async fn start_orders(&mut self, adjust: impl FnOnce(&mut Config)) {
        let mut config = order_config(&self.database_url, &self.topic_prefix);
        adjust(&mut config);
        self.orders = start_order_service(config, &self.issuer).await.0;
    }

    /// Another order-service replica: same database and topics.
    pub async fn replica(&self, adjust: impl FnOnce(&mut Config)) -> String {
        let mut config = order_config(&self.database_url, &self.topic_prefix);
        adjust(&mut config);
        start_order_service(config, &self.issuer).await.0
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        testkit::http::send(request).await
    }

    /// A product with `stock` units at `amount` in `currency`, known to order-service's replica
    /// before this returns.
    pub async fn product(&self, stock: i64, amount: i64, currency: &str) -> anyhow::Result<Uuid> {
        let sku = format!("SKU-{}", Uuid::new_v4().simple());
        let body = json!({
            "sku": sku, "name": format!("Product {sku}"), "description": "test",
            "category": "kitchen", "tags": [], "price": {"amount": amount, "currency": currency},
            "specs": {}, "images": [], "initial_stock": stock,
        });
        let reply = self
            .send(
                self.client
                    .post(format!("{}/api/products", self.products))
                    .bearer_auth(&self.admin_token)
                    .json(&body),
            )
            .await?;
        anyhow::ensure!(reply.status == StatusCode::CREATED, "product: {reply:?}");
        let id: Uuid = reply.body["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no id"))?
            .parse()?;
        if self.orders.is_empty() {
            return Ok(id);
        }
        let pool = self.pool.clone();
        eventually(DEADLINE, move || {
            let pool = pool.clone();
            async move {
                let known: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM products WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&pool)
                        .await?;
                anyhow::ensure!(known.is_some(), "product {id} not replicated yet");
                Ok(())
            }
        })
        .await?;
        Ok(id)
    }

    /// A new customer's order of one unit of a new product (10 in stock at `amount` EUR
    /// cents), once it awaits payment; returns (customer, order, product).
    pub async fn awaiting_order(&self, amount: i64) -> anyhow::Result<(Customer, Uuid, Uuid)> {
        let product = self.product(10, amount, "EUR").await?;
        let customer = self.customer();
        let order = self.placed(&customer, &[(product, 1)]).await?;
        self.wait_for_status(&customer, order, "AWAITING_PAYMENT")
            .await?;
        Ok((customer, order, product))
    }

    /// Waits until product-service shows the product's stock as `(available, reserved, sold)`.
    pub async fn wait_for_stock(&self, product: Uuid, expected: (i64, i64, i64)) -> TestResult {
        eventually(DEADLINE, || async move {
            let stock = self.stock(product).await?;
            anyhow::ensure!(
                stock == expected,
                "stock {stock:?}, waiting for {expected:?}"
            );
            Ok(())
        })
        .await
    }

    /// The product's stock `(available, reserved, sold)` from product-service.
    pub async fn stock(&self, id: Uuid) -> anyhow::Result<(i64, i64, i64)> {
        let reply = self
            .send(
                self.client
                    .get(format!("{}/api/products/{id}", self.products)),
            )
            .await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "product: {reply:?}");
        let stock = &reply.body["stock"];
        let field = |name: &str| {
            stock[name]
                .as_i64()
                .ok_or_else(|| anyhow::anyhow!("no stock.{name}"))
        };
        Ok((field("available")?, field("reserved")?, field("sold")?))
    }

    pub async fn place(&self, customer: &Customer, items: &[(Uuid, i64)]) -> anyhow::Result<Reply> {
        let items: Vec<Value> = items
            .iter()
            .map(|(id, quantity)| json!({"product_id": id, "quantity": quantity}))
            .collect();
        self.send(
            self.client
                .post(format!("{}/api/orders", self.orders))
                .bearer_auth(&customer.token)
                .json(&json!({"items": items, "shipping_address": address()})),
        )
        .await
    }

    /// Places an order and returns its id, failing unless 201.
    pub async fn placed(&self, customer: &Customer, items: &[(Uuid, i64)]) -> anyhow::Result<Uuid> {
        let reply = self.place(customer, items).await?;
        anyhow::ensure!(reply.status == StatusCode::CREATED, "place: {reply:?}");
        Ok(reply.body["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no id"))?
            .parse()?)
    }

    pub async fn order(&self, customer: &Customer, id: Uuid) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .get(format!("{}/api/orders/{id}", self.orders))
                .bearer_auth(&customer.token),
        )
        .await
    }

    pub async fn cancel(&self, customer: &Customer, id: Uuid) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .post(format!("{}/api/orders/{id}/cancel", self.orders))
                .bearer_auth(&customer.token),
        )
        .await
    }

    /// Waits until the order has `status`.
    pub async fn wait_for_status(
        &self,
        customer: &Customer,
        id: Uuid,
        status: &str,
    ) -> anyhow::Result<Value> {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
        let probe = seen.clone();
        eventually(DEADLINE, move || {
            let probe = probe.clone();
            let request = self.order(customer, id);
            async move {
                let reply = request.await?;
                let now = reply.body["status"].as_str().unwrap_or_default().to_owned();
                if let Ok(mut slot) = probe.lock() {
                    *slot = reply.body.clone();
                }
                anyhow::ensure!(now == status, "order {id} is {now}, waiting for {status}");
                Ok(())
            }
        })
        .await?;
        let body = seen.lock().map(|v| v.clone()).unwrap_or(Value::Null);
        Ok(body)
    }

    pub fn topic(&self, logical: &str) -> String {
        format!("{}{logical}", self.topic_prefix)
    }

    /// Puts events on this stack's topics as their producing service would.
    pub async fn produce<T: EventData>(
        &self,
        subject: Uuid,
        events: Vec<CloudEvent<T>>,
    ) -> TestResult {
        let records = events
            .into_iter()
            .map(|event| {
                Ok((
                    subject.to_string(),
                    serde_json::to_vec(&event.into_untyped()?)?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        messaging::testing::produce(&brokers(), &self.topic(T::TOPIC), &records).await
    }

    /// Every event this stack's order-service published, in order.
    pub async fn order_events(&self) -> anyhow::Result<Vec<EventRecord>> {
        messaging::testing::read_events(&brokers(), &self.topic(ORDER_EVENTS)).await
    }

    /// Types of the events of `order` on order.events, waiting until `count` arrived.
    pub async fn order_event_types(
        &self,
        order: Uuid,
        count: usize,
    ) -> anyhow::Result<Vec<String>> {
        self.event_types(ORDER_EVENTS, order, count).await
    }

    /// Types of the events of `order` on inventory.events, waiting until `count` arrived.
    pub async fn inventory_event_types(
        &self,
        order: Uuid,
        count: usize,
    ) -> anyhow::Result<Vec<String>> {
        self.event_types(contracts::topics::INVENTORY_EVENTS, order, count)
            .await
    }

    /// Types of the events of `product` on product.events, waiting until `count` arrived.
    pub async fn product_event_types(
        &self,
        product: Uuid,
        count: usize,
    ) -> anyhow::Result<Vec<String>> {
        self.event_types(contracts::topics::PRODUCT_EVENTS, product, count)
            .await
    }

    /// Types of the events keyed by `subject` on a topic, waiting until `count` arrived.
    async fn event_types(
        &self,
        logical: &str,
        subject: Uuid,
        count: usize,
    ) -> anyhow::Result<Vec<String>> {
        let topic = self.topic(logical);
        let found = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let slot = found.clone();
        eventually(DEADLINE, move || {
            let slot = slot.clone();
            let topic = topic.clone();
            async move {
                let types: Vec<String> = messaging::testing::read_events(&brokers(), &topic)
                    .await?
                    .into_iter()
                    .filter(|record| record.key == subject.to_string())
                    .map(|record| record.event.event_type)
                    .collect();
                let n = types.len();
                if let Ok(mut slot) = slot.lock() {
                    *slot = types;
                }
                anyhow::ensure!(n >= count, "{n} events of {subject}, waiting for {count}");
                Ok(())
            }
        })
        .await?;
        let types = found.lock().map(|v| v.clone()).unwrap_or_default();
        Ok(types)
    }
}

/// `payment.succeeded` for the order, as payment-service publishes it.
pub fn succeeded(
    order_id: Uuid,
    user_id: Uuid,
    amount: i64,
) -> CloudEvent<contracts::payment::PaymentSucceeded> {
    CloudEvent::new(
        "/payment-service",
        order_id.to_string(),
        contracts::payment::PaymentSucceeded {
            payment_id: Uuid::now_v7(),
            order_id,
            user_id,
            amount: contracts::product::Money {
                amount,
                currency: "EUR".into(),
            },
            provider_reference: "ch_test".into(),
            card_brand: "visa".into(),
            card_last4: "4242".into(),
        },
    )
}
