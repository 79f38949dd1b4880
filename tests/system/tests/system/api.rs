//! A client of the platform as a customer sees it: the gateway's HTTP API. Plus read-only
//! views the tests check against: the SMTP inbox (Mailpit's API), Zipkin's API, and the
//! payment provider simulator's own records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::sse::EventStream;
use uuid::Uuid;

use crate::platform::{ADMIN_EMAIL, ADMIN_PASSWORD, PSP_API_KEY};

pub use testkit::eventually;

pub const DEADLINE: Duration = Duration::from_secs(60);
pub const GOOD_CARD: &str = "4242424242424242";
pub const DECLINED_CARD: &str = "4000000000000002";
pub const SLOW_CARD: &str = "4000000000003220";

pub use testkit::http::Reply;

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

#[derive(Clone)]
pub struct Api {
    pub gateway: String,
    pub psp: String,
    pub client: reqwest::Client,
}

/// A W3C `traceparent` starting a new sampled trace; returns it and its trace id.
pub fn new_trace() -> (String, String) {
    let trace_id = Uuid::new_v4().simple().to_string();
    let span_id = &Uuid::new_v4().simple().to_string()[..16];
    (format!("00-{trace_id}-{span_id}-01"), trace_id)
}

fn string(value: &Value) -> anyhow::Result<String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("expected a string, got {value}"))
}

impl Api {
    /// A client for a gateway that closes idle connections after its default 10 s header read
    /// timeout.
    pub fn new(gateway: &str, psp: &str) -> Self {
        Self::for_idle_close(gateway, psp, Duration::from_secs(10))
    }

    /// A client for a gateway that closes a kept-alive connection idle for `idle_close` (its
    /// header read timeout): idle connections are dropped at well under half of it, as
    /// `web::CLIENT_POOL_IDLE_TIMEOUT` explains. The OWASP platform's gateway closes after
    /// 1.5 s; a client keeping 4 s sent a CI run's register into a closing connection
    /// ("connection closed before message completed").
    pub fn for_idle_close(gateway: &str, psp: &str, idle_close: Duration) -> Self {
        Self {
            gateway: gateway.to_owned(),
            psp: psp.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_idle_timeout((idle_close * 2 / 5).min(Duration::from_secs(4)))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        Reply::read_any(request.send().await?).await
    }

    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .post(self.url("/api/users/login"))
                .json(&json!({"email": email, "password": password})),
        )
        .await
    }

    /// Registers a new customer (with a phone number) and signs them in.
    pub async fn customer(&self) -> anyhow::Result<User> {
        let email = format!("c-{}@test.local", Uuid::new_v4().simple());
        let password = "correct horse battery";
        let reply = self
            .send(
                self.client
                    .post(self.url("/api/users/register"))
                    .json(&json!({
                        "email": email, "password": password, "name": "Test Customer",
                        "phone": "+15555550123",
                    })),
            )
            .await?;
        anyhow::ensure!(reply.status == StatusCode::CREATED, "register: {reply:?}");
        let id: Uuid = string(&reply.body["id"])?.parse()?;
        let reply = self.login(&email, password).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "login: {reply:?}");
        Ok(User {
            id,
            email,
            token: string(&reply.body["access_token"])?,
        })
    }

    pub async fn admin_token(&self) -> anyhow::Result<String> {
        let reply = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "admin login: {reply:?}");
        string(&reply.body["access_token"])
    }

    /// A product with `stock` units; returns its id and sku.
    pub async fn product(
        &self,
        admin: &str,
        stock: i64,
        amount: i64,
    ) -> anyhow::Result<(Uuid, String)> {
        let sku = format!("SYS-{}", Uuid::new_v4().simple());
        let reply = self
            .send(
                self.client
                    .post(self.url("/api/products"))
                    .bearer_auth(admin)
                    .json(&json!({
                        "sku": sku, "name": format!("System test product {sku}"),
                        "description": "made by the system tests", "category": "system-test",
                        "tags": ["system"], "price": {"amount": amount, "currency": "EUR"},
                        "specs": {"size": {"cm": 10}}, "images": [], "initial_stock": stock,
                    })),
            )
            .await?;
        anyhow::ensure!(reply.status == StatusCode::CREATED, "product: {reply:?}");
        Ok((string(&reply.body["id"])?.parse()?, sku))
    }

    /// `(available, reserved, sold)`.
    pub async fn stock(&self, product: Uuid) -> anyhow::Result<(i64, i64, i64)> {
        let reply = self
            .send(
                self.client
                    .get(self.url(&format!("/api/products/{product}"))),
            )
            .await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "product: {reply:?}");
        let field = |name: &str| {
            reply.body["stock"][name]
                .as_i64()
                .ok_or_else(|| anyhow::anyhow!("no stock.{name}: {reply:?}"))
        };
        Ok((field("available")?, field("reserved")?, field("sold")?))
    }

    pub async fn wait_for_stock(
        &self,
        product: Uuid,
        expected: (i64, i64, i64),
    ) -> anyhow::Result<()> {
        eventually(DEADLINE, || async {
            let stock = self.stock(product).await?;
            anyhow::ensure!(
                stock == expected,
                "stock of {product} is {stock:?}, expected {expected:?}"
            );
            Ok(())
        })
        .await
    }

    pub async fn place(
        &self,
        user: &User,
        items: &[(Uuid, i64)],
        traceparent: Option<&str>,
    ) -> anyhow::Result<Reply> {
        self.place_with_key(user, items, traceparent, None).await
    }

    /// [`Self::place`] with an `Idempotency-Key`, so that sending it again cannot place a
    /// second order.
    pub async fn place_with_key(
        &self,
        user: &User,
        items: &[(Uuid, i64)],
        traceparent: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let items: Vec<Value> = items
            .iter()
            .map(|(id, quantity)| json!({"product_id": id, "quantity": quantity}))
            .collect();
        let mut request = self
            .client
            .post(self.url("/api/orders"))
            .bearer_auth(&user.token)
            .json(&json!({"items": items, "shipping_address": {
                "name": "Test Customer", "line1": "1 Test Street", "city": "Testville",
                "postal_code": "12345", "country": "DE"}}));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    pub async fn placed(&self, user: &User, items: &[(Uuid, i64)]) -> anyhow::Result<Uuid> {
        let reply = self.place_when_known(user, items, None).await?;
        Ok(string(&reply.body["id"])?.parse()?)
    }

    /// Places an order for products that were just created: order-service learns of them from
    /// `product.events`, a moment later, and until then answers 422 "no such product" (as it
    /// would for a client that raced the catalog). Retries that answer, and a 503 (a busy
    /// database on a loaded machine: the answer says to try again, and one `Idempotency-Key`
    /// for every attempt makes the retry safe, as a real client's would be); returns the 201.
    ///
    /// A 503 promises that nothing was placed, so the retry after one must answer 201 too; only
    /// after an attempt whose answer never came (the connection failed) may the retry find the
    /// order placed under the key (200).
    pub async fn place_when_known(
        &self,
        user: &User,
        items: &[(Uuid, i64)],
        traceparent: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let placed = Arc::new(Mutex::new(None));
        let slot = placed.clone();
        let answer_lost = Arc::new(AtomicBool::new(false));
        let lost = answer_lost.clone();
        let key = Uuid::new_v4().to_string();
        let key = key.as_str();
        eventually(DEADLINE, move || {
            let slot = slot.clone();
            let lost = lost.clone();
            let request = self.place_with_key(user, items, traceparent, Some(key));
            async move {
                let reply = request
                    .await
                    .inspect_err(|_| lost.store(true, Ordering::Relaxed))?;
                if reply.status == StatusCode::UNPROCESSABLE_ENTITY
                    && reply.body.to_string().contains("no such product")
                {
                    anyhow::bail!("not yet replicated: {reply:?}");
                }
                if reply.status == StatusCode::SERVICE_UNAVAILABLE {
                    anyhow::bail!("unavailable for now: {reply:?}");
                }
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(reply);
                }
                Ok(())
            }
        })
        .await?;
        let reply = placed
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .ok_or_else(|| anyhow::anyhow!("no reply"))?;
        let placed_before = reply.status == StatusCode::OK && answer_lost.load(Ordering::Relaxed);
        anyhow::ensure!(
            reply.status == StatusCode::CREATED || placed_before,
            "place: {reply:?}"
        );
        Ok(reply)
    }

    pub async fn order(&self, user: &User, id: Uuid) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .get(self.url(&format!("/api/orders/{id}")))
                .bearer_auth(&user.token),
        )
        .await
    }

    pub async fn cancel(&self, user: &User, id: Uuid) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .post(self.url(&format!("/api/orders/{id}/cancel")))
                .bearer_auth(&user.token),
        )
        .await
    }

    /// Waits until the order has `status`; returns the order.
    pub async fn wait_for_status(
        &self,
        user: &User,
        id: Uuid,
        status: &str,
    ) -> anyhow::Result<Value> {
        let seen = Arc::new(Mutex::new(Value::Null));
        let slot = seen.clone();
        eventually(DEADLINE, move || {
            let slot = slot.clone();
            let request = self.order(user, id);
            async move {
                let reply = request.await?;
                let now = reply.body["status"].as_str().unwrap_or_default().to_owned();
                if let Ok(mut slot) = slot.lock() {
                    *slot = reply.body.clone();
                }
                anyhow::ensure!(
                    now == status,
                    "order {id} is {now:?}, waiting for {status}: {reply:?}"
                );
                Ok(())
            }
        })
        .await?;
        let order = seen.lock().map(|order| order.clone()).unwrap_or_default();
        Ok(order)
    }

    /// Opens the order's live status stream (`GET /api/orders/{id}/events`).
    pub async fn status_stream(&self, user: &User, id: Uuid) -> anyhow::Result<EventStream> {
        let response = self
            .client
            .get(self.url(&format!("/api/orders/{id}/events")))
            .bearer_auth(&user.token)
            .send()
            .await?;
        EventStream::new(response, DEADLINE)
    }

    /// `POST /api/payments`, asked again (same key) while payment-service answers that its
    /// replica of the order has not caught up: 409 "... retry shortly" (the order still
    /// reserving stock there, or this key's payment still at the provider) or 404 "no such
    /// order" (the order's `order.created` not applied yet). The API documents both as "retry";
    /// a refused attempt takes nothing, so the same key is safe. Under the whole suite's load
    /// the replica can trail order-service by more than payment-service's own wait
    /// (`ORDER_WAIT_MS`, 1 s), which a single attempt turned into a failed scenario. Any other
    /// answer, and the last one at the deadline, is returned as it is.
    pub async fn pay(
        &self,
        user: &User,
        order: Uuid,
        card: &str,
        key: &str,
        traceparent: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let attempt = || {
            let mut request = self
                .client
                .post(self.url("/api/payments"))
                .bearer_auth(&user.token)
                .header("Idempotency-Key", key)
                .json(&json!({"order_id": order, "card": {
                    "number": card, "exp_month": 12, "exp_year": 2035, "cvc": "123"}}));
            if let Some(traceparent) = traceparent {
                request = request.header("traceparent", traceparent);
            }
            self.send(request)
        };
        testkit::resend_while(DEADLINE, attempt, replica_behind).await
    }

    pub async fn payments_of(&self, user: &User, order: Uuid) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .get(self.url(&format!("/api/payments?order_id={order}")))
                .bearer_auth(&user.token),
        )
        .await
    }

    /// The provider's own record of the charges made for `order` (its `reference`).
    pub async fn provider_charges(&self, order: Uuid) -> anyhow::Result<Vec<Value>> {
        let reply = self
            .send(
                self.client
                    .get(format!("{}/v1/charges?reference={order}", self.psp))
                    .bearer_auth(PSP_API_KEY),
            )
            .await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "psp charges: {reply:?}");
        let list = match &reply.body {
            Value::Array(items) => items.clone(),
            body => body["data"].as_array().cloned().unwrap_or_default(),
        };
        Ok(list)
    }
}

/// The SMTP server's inbox, through its HTTP API.
pub struct Inbox {
    base: String,
    client: reqwest::Client,
}

impl Inbox {
    pub fn new() -> Self {
        Self {
            base: std::env::var("MAILPIT_URL").unwrap_or_else(|_| "http://127.0.0.1:8025".into()),
            client: reqwest::Client::new(),
        }
    }

    /// Messages to `address`: (subject, plain-text body).
    pub async fn messages_to(&self, address: &str) -> anyhow::Result<Vec<(String, String)>> {
        let search: Value = self
            .client
            .get(format!(
                "{}/api/v1/search?limit=50&query=to:%22{}%22",
                self.base,
                address.replace('@', "%40")
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut found = Vec::new();
        for message in search["messages"].as_array().into_iter().flatten() {
            let id = message["ID"].as_str().unwrap_or_default();
            let full: Value = self
                .client
                .get(format!("{}/api/v1/message/{id}", self.base))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            found.push((
                full["Subject"].as_str().unwrap_or_default().to_owned(),
                full["Text"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        Ok(found)
    }

    /// Waits until `address` received a message whose subject or text contains each of `words`
    /// (case-insensitive); returns how many such messages there are.
    pub async fn wait_for(&self, address: &str, words: &[&str]) -> anyhow::Result<usize> {
        let count = Arc::new(Mutex::new(0));
        let slot = count.clone();
        eventually(DEADLINE, move || {
            let slot = slot.clone();
            let messages = self.messages_to(address);
            async move {
                let messages = messages.await?;
                let matching = messages
                    .iter()
                    .filter(|(subject, text)| {
                        let all = format!("{subject}\n{text}").to_lowercase();
                        words.iter().all(|word| all.contains(&word.to_lowercase()))
                    })
                    .count();
                if let Ok(mut slot) = slot.lock() {
                    *slot = matching;
                }
                let subjects: Vec<&String> = messages.iter().map(|(subject, _)| subject).collect();
                anyhow::ensure!(
                    matching > 0,
                    "no mail to {address} with {words:?}; have {subjects:?}"
                );
                Ok(())
            }
        })
        .await?;
        let n = *count.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(n)
    }
}

/// Service names in a Zipkin trace.
pub async fn trace_services(trace_id: &str) -> anyhow::Result<Vec<String>> {
    let zipkin = testkit::stack::zipkin_url();
    let response = reqwest::get(format!("{zipkin}/api/v2/trace/{trace_id}")).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "trace {trace_id}: {}",
        response.status()
    );
    let spans: Vec<Value> = response.json().await?;
    let mut services: Vec<String> = spans
        .iter()
        .filter_map(|span| {
            span["localEndpoint"]["serviceName"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    services.sort();
    services.dedup();
    Ok(services)
}

/// Whether a payment answer says payment-service's order replica has not caught up yet (see
/// [`Api::pay`]).
fn replica_behind(reply: &Reply) -> bool {
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    match reply.status {
        StatusCode::CONFLICT => detail.ends_with("retry shortly"),
        StatusCode::NOT_FOUND => detail == "no such order",
        _ => false,
    }
}
