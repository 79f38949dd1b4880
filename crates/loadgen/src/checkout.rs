//! The checkout saga under load, end to end through the gateway: create an order, wait for
//! the stock reservation (`AWAITING_PAYMENT`), pay, wait for `PAID`.
//!
//! Each order's time is split into the steps of the saga, so a report can tell which hop is
//! the bottleneck: the create call, the reservation (order.created -> product-service ->
//! inventory.reserved -> order-service), the payment call (payment-service -> psp-sim), and
//! the settlement (payment.succeeded -> order-service). Asynchronous steps are observed as a
//! storefront observes them: each buyer follows its order's live status stream
//! (`GET /api/orders/{id}/events`, Server-Sent Events pushed by order-service), so a step is
//! seen the moment it commits and the buyers put no polling load on the platform. Should a
//! stream fail, the buyer falls back to polling every `poll_interval`.
//!
//! Setup talks to user-service and product-service directly: registering users and adding
//! stock is not what is measured, and the gateway's stricter limits on register and login
//! would only slow it down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::audit::{self, AuditReport, OrderRecord, ProductRecord};
use crate::progress::{Counters, Progress};
use crate::stats::{Latencies, LatencySummary};

/// How the orders pick their product.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Popularity {
    /// Every product equally often.
    Uniform,
    /// Zipf's law with this exponent: the k-th most popular product is ordered in proportion
    /// to 1/k^s (s = 1 over 200 products: the first takes about 17% of the orders, the first
    /// ten about 51%), the shape of real shops' sales.
    Zipf(f64),
}

impl Popularity {
    /// Cumulative shares of `count` products, ending at 1.
    fn cumulative(self, count: usize) -> Vec<f64> {
        let weights: Vec<f64> = (1..=count.max(1))
            .map(|rank| match self {
                Self::Uniform => 1.0,
                Self::Zipf(exponent) => 1.0 / (rank as f64).powf(exponent),
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        weights
            .iter()
            .map(|weight| {
                sum += weight / total;
                sum
            })
            .collect()
    }

    pub fn describe(self) -> String {
        match self {
            Self::Uniform => "uniform".to_owned(),
            Self::Zipf(exponent) => format!("zipf s={exponent}"),
        }
    }
}

/// A fixed, well-spread number in [0, 1) for order `n` (splitmix64), so a run's product
/// choices are random-looking but the same in every run.
fn unit_interval(n: usize) -> f64 {
    let mut z = (n as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// How orders are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CheckoutPace {
    /// This many order flows at once, each starting the next as soon as one ends: the
    /// throughput the saga sustains.
    Concurrent(usize),
    /// Orders started at fixed times, this many per second, latency measured from the due time.
    Rate(f64),
}

#[derive(Debug, Clone)]
pub struct CheckoutConfig {
    /// Base URL the orders and payments go through (the gateway).
    pub gateway_url: String,
    /// user-service, for registering and signing in the benchmark's users and the admin.
    pub user_service_url: String,
    /// product-service, for picking products and adding stock.
    pub product_service_url: String,
    pub admin_email: String,
    pub admin_password: String,
    /// Customers the orders are spread over (per-user rate limits apply at the gateway).
    pub users: usize,
    /// Products the orders are spread over (each product's stock is one contended record).
    pub products: usize,
    /// Units added to each product before the run so no order is rejected for stock.
    pub stock_per_product: i64,
    pub popularity: Popularity,
    /// After the run: check the platform's invariants over every order it created (see
    /// [`crate::audit`]); needs the provider simulator's URL and API key.
    pub audit: Option<audit::AuditConfig>,
    pub pace: CheckoutPace,
    pub duration: Duration,
    /// How often an order is asked for its status while waiting.
    pub poll_interval: Duration,
    /// An order not `PAID` within this counts as failed.
    pub order_timeout: Duration,
    pub show_progress: bool,
    /// Told when the order flows start (setup, customers and stock, is done) and when the
    /// last of them has finished (before the audit): `cargo xtask chaos` starts killing
    /// processes only at the start, so setup itself never fails on a kill, and `cargo xtask
    /// bench` counts CPU time and the infrastructure's work between the two, so neither setup
    /// nor the audit is charged to the orders.
    pub window: Option<std::sync::mpsc::Sender<WindowEdge>>,
    /// Retry what a crash or restart on the platform's side makes fail transiently (no answer,
    /// 502/503/504 on the payment or a status read), as a real client would: the payment with
    /// the same `Idempotency-Key`, so a retry can never charge twice. Off for measurements.
    pub retry_transient: bool,
}

/// What a checkout run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutReport {
    /// `sustained` or `fixed-rate`.
    pub mode: String,
    pub concurrency: Option<usize>,
    pub target_rate: Option<f64>,
    pub duration_secs: f64,
    pub poll_interval_ms: f64,
    pub users: usize,
    pub products: usize,
    /// Orders started during the run.
    pub started: u64,
    pub paid: u64,
    /// Orders that reached `PAID` before the end of the run, per second of run.
    pub paid_per_sec: f64,
    pub rejected: u64,
    pub cancelled: u64,
    /// Orders order-service refused at once because it was busy (503 `busy`, nothing placed):
    /// admission control shedding what the shop cannot reserve in time.
    #[serde(default)]
    pub shed: u64,
    /// Orders that ended in an error: an unexpected answer, a declined payment, a timeout.
    pub failed: u64,
    /// create -> `PAID` (fixed rate: from the time the order was due).
    pub total: LatencySummary,
    /// `POST /api/orders` until its answer.
    pub create_call: LatencySummary,
    /// Order created until `AWAITING_PAYMENT` is seen (the stock reservation over Kafka).
    pub reservation: LatencySummary,
    /// `POST /api/payments` until its answer (the provider call), retries included.
    pub payment_call: LatencySummary,
    /// Payment answered until `PAID` is seen (payment.succeeded over Kafka).
    pub settlement: LatencySummary,
    /// Failure reasons and how often each happened.
    pub failures: BTreeMap<String, u64>,
    pub first_failure: Option<String>,
    /// How the orders picked their product.
    #[serde(default)]
    pub popularity: String,
    /// Share of the orders that went to the most popular product.
    #[serde(default)]
    pub top_product_share: f64,
    /// The invariants checked after the run, if asked for.
    #[serde(default)]
    pub audit: Option<AuditReport>,
}

/// A signed-in customer.
#[derive(Debug, Clone)]
pub(crate) struct Customer {
    pub(crate) token: String,
    /// Where their mail goes (the audit counts receipts in the SMTP server's inbox).
    pub(crate) email: String,
}

/// The clients and fixtures every order flow shares.
struct Shop {
    api: Api,
    config: CheckoutConfig,
    customers: Vec<Customer>,
    products: Vec<String>,
    /// Cumulative popularity of `products`, in their order.
    cumulative: Vec<f64>,
    /// Every order created, for the audit.
    created: Mutex<Vec<OrderRecord>>,
}

impl Shop {
    /// Records that the client saw order `id`'s payment succeed (the audit then expects it
    /// `PAID`, or `CANCELLED` and refunded).
    fn note_payment_succeeded(&self, id: &str) {
        let mut created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(order) = created.iter_mut().rev().find(|order| order.id == id) {
            order.payment_succeeded = true;
        }
    }

    /// The product order `n` buys.
    fn product_of(&self, n: usize) -> usize {
        let u = unit_interval(n);
        self.cumulative
            .partition_point(|share| *share <= u)
            .min(self.products.len().saturating_sub(1))
    }
}

/// How one order ended.
#[derive(Debug)]
enum Outcome {
    Paid(Timings),
    Rejected,
    Cancelled,
    /// order-service refused to take the order: it was busy (503, type `busy`). Nothing was
    /// placed; a client comes back after `Retry-After`.
    Shed,
    Failed(String, String),
}

/// Problem type of order-service's admission control (its `admission` module).
pub(crate) const BUSY: &str = "https://ferroshop.dev/problems/busy";

/// Whether a create answer is order-service refusing the order because it is busy.
pub(crate) fn is_busy(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE && body["type"].as_str() == Some(BUSY)
}

/// How long a refused buyer waits before the next order: order-service's `Retry-After` for a
/// busy refusal is its late-order wait rounded up, 2 s by default.
pub(crate) const BUSY_PAUSE: Duration = Duration::from_secs(2);

/// When each step of one order ended.
#[derive(Debug, Clone, Copy)]
struct Timings {
    due: Instant,
    created: Instant,
    awaiting: Instant,
    payment_answered: Instant,
    paid: Instant,
}

/// A thin JSON client over hyper-util's pooled client (keep-alive connections reused
/// across the order flows).
#[derive(Clone)]
pub(crate) struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Api {
    pub(crate) fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            // Below the gateway's idle close, as `web::CLIENT_POOL_IDLE_TIMEOUT` explains.
            .pool_idle_timeout(Duration::from_secs(4))
            .build(connector);
        Self { client, timeout }
    }

    /// A call authorised with a bearer credential that is not a user's (the provider's API
    /// key).
    pub(crate) async fn call_with_bearer(
        &self,
        method: Method,
        url: &str,
        bearer: &str,
    ) -> Result<(StatusCode, Value)> {
        self.call(method, url, Some(bearer), None, None).await
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(url)
            .header("accept", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(body).context("encoding the request body")?)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .with_context(|| format!("building {method} {url}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .with_context(|| format!("{method} {url}"))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .with_context(|| format!("reading the answer to {method} {url}"))?
                .to_bytes();
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
            };
            anyhow::Ok((status, value))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .with_context(|| format!("{method} {url}: no answer within {:?}", self.timeout))?
    }
}

/// An order's live status stream (`GET /api/orders/{id}/events`).
pub(crate) struct StatusStream {
    body: hyper::body::Incoming,
    buffer: String,
}

impl StatusStream {
    /// The next status pushed, or `None` when the server ended the stream.
    async fn next_status(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = "";
                let mut data = "";
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data = value.trim();
                    }
                }
                if name == "status" {
                    let event: Value =
                        serde_json::from_str(data).context("decoding a status event")?;
                    return Ok(Some(
                        event["status"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
                continue; // keep-alive comment
            }
            match self.body.frame().await {
                Some(frame) => {
                    let frame = frame.context("reading the status stream")?;
                    if let Ok(data) = frame.into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                None => return Ok(None),
            }
        }
    }

    /// Reads until a status in `wanted` or a terminal one; the last status seen, or `None` if
    /// the stream ended or `deadline` passed first.
    pub(crate) async fn until(
        &mut self,
        wanted: &[&str],
        deadline: Instant,
    ) -> Result<Option<String>> {
        loop {
            let next = tokio::time::timeout_at(deadline, self.next_status()).await;
            match next {
                Ok(Ok(Some(status))) => {
                    if wanted.contains(&status.as_str())
                        || status == REJECTED
                        || status == CANCELLED
                    {
                        return Ok(Some(status));
                    }
                }
                Ok(Ok(None)) | Err(_) => return Ok(None),
                Ok(Err(error)) => return Err(error),
            }
        }
    }
}

impl Api {
    /// Opens the live status stream of the order at `order_url`; `None` if it is refused
    /// (the buyer then polls).
    pub(crate) async fn status_stream(
        &self,
        order_url: &str,
        token: Option<&str>,
    ) -> Option<StatusStream> {
        let mut request = Request::builder()
            .uri(format!("{order_url}/events"))
            .header("accept", "text/event-stream");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::new())).ok()?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .ok()?
            .ok()?;
        (response.status() == StatusCode::OK).then(|| StatusStream {
            body: response.into_body(),
            buffer: String::new(),
        })
    }
}

/// Waits for a status in `wanted` (or a terminal one) on the stream, falling back to polling
/// when there is no stream or it ends early.
async fn follow(
    shop: &Shop,
    stream: &mut Option<StatusStream>,
    order_url: &str,
    token: Option<&str>,
    wanted: &[&str],
    deadline: Instant,
) -> Result<String> {
    if let Some(live) = stream.as_mut() {
        match live.until(wanted, deadline).await {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            // The stream broke (a gateway or order-service restart): poll instead.
            Err(_) if shop.config.retry_transient => {}
            Err(e) => return Err(e),
        }
        *stream = None;
    }
    wait_for_status(shop, order_url, token, wanted, deadline).await
}

/// Waits as long as a 429's `Retry-After` would ask, bounded; used only during setup.
async fn pause_after_429() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

pub(crate) async fn sign_in(
    api: &Api,
    users_url: &str,
    email: &str,
    password: &str,
) -> Result<String> {
    for _attempt in 0..30 {
        let (status, body) = api
            .call(
                Method::POST,
                &format!("{users_url}/api/users/login"),
                None,
                None,
                Some(&json!({"email": email, "password": password})),
            )
            .await?;
        match status {
            StatusCode::OK => {
                return body["access_token"]
                    .as_str()
                    .map(str::to_owned)
                    .context("the login answer has no access_token");
            }
            StatusCode::TOO_MANY_REQUESTS => pause_after_429().await,
            other => bail!("signing in as {email}: {other} {body}"),
        }
    }
    bail!("signing in as {email}: still rate limited after 30 tries")
}

async fn register_customer(
    api: &Api,
    users_url: &str,
    index: usize,
    run: &str,
) -> Result<Customer> {
    let email = format!("bench-{run}-{index}@example.com");
    let password = CUSTOMER_PASSWORD;
    for _attempt in 0..30 {
        let (status, body) = api
            .call(
                Method::POST,
                &format!("{users_url}/api/users/register"),
                None,
                None,
                Some(&json!({"email": email, "password": password, "name": format!("Bench Customer {index}")})),
            )
            .await?;
        match status {
            StatusCode::CREATED | StatusCode::OK | StatusCode::CONFLICT => {
                let token = sign_in(api, users_url, &email, password).await?;
                return Ok(Customer {
                    token,
                    email: email.clone(),
                });
            }
            StatusCode::TOO_MANY_REQUESTS => pause_after_429().await,
            other => bail!("registering {email}: {other} {body}"),
        }
    }
    bail!("registering {email}: still rate limited after 30 tries")
}

/// Registers and signs in `count` (at least one) fresh customers of run `run_id`.
/// Registration hashes a password (Argon2, on purpose slow): all at once, not one by one.
pub(crate) async fn register_customers(
    api: &Api,
    users_url: &str,
    count: usize,
    run_id: &str,
) -> Result<Vec<Customer>> {
    let mut registrations = JoinSet::new();
    for index in 0..count.max(1) {
        let (api, users_url, run_id) = (api.clone(), users_url.to_owned(), run_id.to_owned());
        registrations
            .spawn(async move { register_customer(&api, &users_url, index, &run_id).await });
    }
    let mut customers = Vec::new();
    while let Some(joined) = registrations.join_next().await {
        customers.push(joined.context("a registration task panicked")??);
    }
    Ok(customers)
}

/// Picks up to `products` active products in stock, page by page, and adds
/// `stock_per_product` units to each.
async fn stock_products(
    api: &Api,
    config: &CheckoutConfig,
    admin_token: &str,
) -> Result<Vec<String>> {
    let products_url = &config.product_service_url;
    let mut ids: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    while ids.len() < config.products {
        let page = match &cursor {
            Some(cursor) => format!("&cursor={cursor}"),
            None => String::new(),
        };
        let (status, body) = api
            .call(
                Method::GET,
                &format!("{products_url}/api/products?in_stock=true&limit=100{page}"),
                None,
                None,
                None,
            )
            .await?;
        if status != StatusCode::OK {
            bail!("listing products: {status} {body}");
        }
        if let Some(items) = body["items"].as_array() {
            ids.extend(
                items
                    .iter()
                    .filter(|p| p["active"].as_bool().unwrap_or(true))
                    .filter_map(|p| p["id"].as_str().map(str::to_owned))
                    .take(config.products - ids.len()),
            );
        }
        match body["next_cursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    if ids.is_empty() {
        bail!("no product in stock at {products_url}; run `cargo xtask seed` first");
    }
    for id in &ids {
        let (status, body) = api
            .call(
                Method::POST,
                &format!("{products_url}/api/products/{id}/stock"),
                Some(admin_token),
                None,
                Some(&json!({"delta": config.stock_per_product, "reason": "checkout benchmark"})),
            )
            .await?;
        if !status.is_success() {
            bail!("adding stock to {id}: {status} {body}");
        }
    }
    Ok(ids)
}

/// The edges of a checkout run's measured window (see [`CheckoutConfig::window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEdge {
    FlowsStarted,
    FlowsFinished,
}

impl WindowEdge {
    /// The line `loadgen --json` prints on stdout at this edge, before its report line.
    pub fn marker(self) -> &'static str {
        match self {
            Self::FlowsStarted => "{\"window\":\"flows started\"}",
            Self::FlowsFinished => "{\"window\":\"flows finished\"}",
        }
    }

    /// The edge a line of `loadgen --json` marks, if it is a marker.
    pub fn from_marker(line: &str) -> Option<Self> {
        [Self::FlowsStarted, Self::FlowsFinished]
            .into_iter()
            .find(|edge| edge.marker() == line.trim())
    }
}

fn tell(config: &CheckoutConfig, edge: WindowEdge) {
    if let Some(window) = &config.window {
        // Nobody listening any more is not our problem: the run goes on.
        let _ = window.send(edge);
    }
}

/// Registers the customers, stocks the products, then runs the order flows.
pub async fn run(config: CheckoutConfig) -> Result<CheckoutReport> {
    // Setup waits longer than the flows: concurrent registrations queue for Argon2 on a busy
    // machine.
    let setup = Api::new(Duration::from_secs(60));
    let api = setup.clone();
    let setup_api = setup.clone();
    let admin_token = sign_in(
        &api,
        &config.user_service_url,
        &config.admin_email,
        &config.admin_password,
    )
    .await
    .context("signing in as the admin")?;
    let products = stock_products(&api, &config, &admin_token).await?;
    // Each product's units before the run (available + reserved + sold), for the audit.
    let mut stocked = Vec::new();
    if config.audit.is_some() {
        for id in &products {
            stocked.push(ProductRecord {
                id: id.clone(),
                units_before: audit::units(&api, &config.product_service_url, id).await?,
            });
        }
    }
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let customers =
        register_customers(&api, &config.user_service_url, config.users, &run_id).await?;
    let shop = Arc::new(Shop {
        api: Api {
            timeout: Duration::from_secs(10),
            ..setup
        },
        config: config.clone(),
        cumulative: config.popularity.cumulative(products.len()),
        customers,
        products,
        created: Mutex::new(Vec::new()),
    });

    let counters = Arc::new(Counters::default());
    let label = match config.pace {
        CheckoutPace::Concurrent(n) => format!("checkout x{n}"),
        CheckoutPace::Rate(rate) => format!("checkout {rate}/s"),
    };
    let progress = config
        .show_progress
        .then(|| Progress::start(&label, "orders", config.duration, counters.clone()));
    let start = Instant::now();
    let end = start + config.duration;
    tell(&config, WindowEdge::FlowsStarted);
    let mut flows = JoinSet::new();
    match config.pace {
        CheckoutPace::Concurrent(concurrency) => {
            for worker in 0..concurrency.max(1) {
                let shop = shop.clone();
                let counters = counters.clone();
                flows.spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut n = worker;
                    while Instant::now() < end {
                        let outcome = order_flow(&shop, n, Instant::now()).await;
                        count(&counters, &outcome);
                        if matches!(outcome, Outcome::Shed) {
                            // As told by `Retry-After`.
                            tokio::time::sleep(BUSY_PAUSE).await;
                        }
                        if shop.config.retry_transient && matches!(outcome, Outcome::Failed(..)) {
                            // A platform restarting answers at once with 503: pause rather
                            // than turn the failure into a storm of new orders.
                            tokio::time::sleep(TRANSIENT_PAUSE * 5).await;
                        }
                        outcomes.push(outcome);
                        n += concurrency;
                    }
                    outcomes
                });
            }
        }
        CheckoutPace::Rate(rate) => {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("the order rate must be a positive number");
            }
            let interval = Duration::from_secs_f64(1.0 / rate);
            let mut n = 0usize;
            loop {
                let due = start + interval.mul_f64(n as f64);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let shop = shop.clone();
                let counters = counters.clone();
                flows.spawn(async move {
                    let outcome = order_flow(&shop, n, due).await;
                    count(&counters, &outcome);
                    vec![outcome]
                });
                n += 1;
            }
        }
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = flows.join_next().await {
        outcomes.extend(joined.context("an order flow panicked")?);
    }
    tell(&config, WindowEdge::FlowsFinished);
    if let Some(progress) = progress {
        progress.finish();
    }
    let mut report = summarise(&config, &shop, outcomes, end)?;
    if let Some(audit_config) = &config.audit {
        let created =
            std::mem::take(&mut *shop.created.lock().unwrap_or_else(PoisonError::into_inner));
        // Access tokens live 15 minutes; a long chaos run and its settling outlast them.
        let mut customers = Vec::with_capacity(shop.customers.len());
        for customer in &shop.customers {
            let token = sign_in(
                &setup_api,
                &config.user_service_url,
                &customer.email,
                CUSTOMER_PASSWORD,
            )
            .await
            .unwrap_or_else(|_| customer.token.clone());
            customers.push(Customer {
                token,
                email: customer.email.clone(),
            });
        }
        report.audit = Some(
            audit::run(
                &shop.api,
                audit_config,
                &config.gateway_url,
                &config.product_service_url,
                &customers,
                &stocked,
                &created,
            )
            .await?,
        );
    }
    Ok(report)
}

fn count(counters: &Counters, outcome: &Outcome) {
    match outcome {
        Outcome::Paid(_) => counters.count_ok(),
        Outcome::Rejected | Outcome::Cancelled | Outcome::Shed => counters.count_non_2xx(),
        Outcome::Failed(..) => counters.count_error(),
    }
}

fn summarise(
    config: &CheckoutConfig,
    shop: &Shop,
    outcomes: Vec<Outcome>,
    end: Instant,
) -> Result<CheckoutReport> {
    let mut total = Latencies::new()?;
    let mut create_call = Latencies::new()?;
    let mut reservation = Latencies::new()?;
    let mut payment_call = Latencies::new()?;
    let mut settlement = Latencies::new()?;
    let (mut paid, mut paid_in_time, mut rejected, mut cancelled, mut shed, mut failed) =
        (0, 0, 0, 0, 0, 0);
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut first_failure = None;
    let started = outcomes.len() as u64;
    for outcome in outcomes {
        match outcome {
            Outcome::Paid(t) => {
                paid += 1;
                if t.paid <= end {
                    paid_in_time += 1;
                }
                total.record(t.paid - t.due);
                create_call.record(t.created - t.due);
                reservation.record(t.awaiting - t.created);
                payment_call.record(t.payment_answered - t.awaiting);
                settlement.record(t.paid - t.payment_answered);
            }
            Outcome::Rejected => rejected += 1,
            Outcome::Cancelled => cancelled += 1,
            Outcome::Shed => shed += 1,
            Outcome::Failed(reason, detail) => {
                failed += 1;
                *failures.entry(reason).or_default() += 1;
                first_failure.get_or_insert(detail);
            }
        }
    }
    let secs = config.duration.as_secs_f64();
    let top_product_share = config
        .popularity
        .cumulative(shop.products.len())
        .first()
        .copied()
        .unwrap_or_default();
    Ok(CheckoutReport {
        popularity: config.popularity.describe(),
        top_product_share,
        audit: None,
        mode: match config.pace {
            CheckoutPace::Concurrent(_) => "sustained".into(),
            CheckoutPace::Rate(_) => "fixed-rate".into(),
        },
        concurrency: match config.pace {
            CheckoutPace::Concurrent(n) => Some(n),
            CheckoutPace::Rate(_) => None,
        },
        target_rate: match config.pace {
            CheckoutPace::Concurrent(_) => None,
            CheckoutPace::Rate(rate) => Some(rate),
        },
        duration_secs: secs,
        poll_interval_ms: config.poll_interval.as_secs_f64() * 1_000.0,
        users: shop.customers.len(),
        products: shop.products.len(),
        started,
        paid,
        paid_per_sec: if secs > 0.0 {
            paid_in_time as f64 / secs
        } else {
            0.0
        },
        rejected,
        cancelled,
        shed,
        failed,
        total: total.summary(),
        create_call: create_call.summary(),
        reservation: reservation.summary(),
        payment_call: payment_call.summary(),
        settlement: settlement.summary(),
        failures,
        first_failure,
    })
}

/// Every benchmark customer's password.
const CUSTOMER_PASSWORD: &str = "bench-password-correct-horse";

/// The least pause before retrying a transient failure, whatever the polling interval: a
/// restarting process needs about a second.
const TRANSIENT_PAUSE: Duration = Duration::from_millis(200);

/// The status strings of order-service (see DESIGN.md).
pub(crate) const AWAITING_PAYMENT: &str = "AWAITING_PAYMENT";
pub(crate) const PAID: &str = "PAID";
pub(crate) const REJECTED: &str = "REJECTED";
pub(crate) const CANCELLED: &str = "CANCELLED";

/// One order from creation to `PAID`. `n` picks the customer and the product.
async fn order_flow(shop: &Shop, n: usize, due: Instant) -> Outcome {
    match try_order_flow(shop, n, due).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed("error".into(), format!("{e:#}")),
    }
}

async fn try_order_flow(shop: &Shop, n: usize, due: Instant) -> Result<Outcome> {
    let config = &shop.config;
    let gateway = &config.gateway_url;
    let customer_index = n % shop.customers.len();
    let customer = &shop.customers[customer_index];
    let product_index = shop.product_of(n);
    let product_id = &shop.products[product_index];
    let deadline = due + config.order_timeout;
    let token = Some(customer.token.as_str());

    let order = json!({
        "items": [{"product_id": product_id, "quantity": 1}],
        "shipping_address": {
            "name": "Bench Customer",
            "line1": "1 Load Test Lane",
            "city": "Benchford",
            "postal_code": "BE1 1NC",
            "country": "GB",
        },
    });
    let (status, body) = shop
        .api
        .call(
            Method::POST,
            &format!("{gateway}/api/orders"),
            token,
            None,
            Some(&order),
        )
        .await?;
    if is_busy(status, &body) {
        return Ok(Outcome::Shed);
    }
    if status != StatusCode::CREATED {
        return Ok(failed(&format!("create answered {status}"), &body));
    }
    let created = Instant::now();
    let order_id = body["id"]
        .as_str()
        .context("the created order has no id")?
        .to_owned();
    shop.created
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(OrderRecord {
            id: order_id.clone(),
            customer: customer_index,
            product: product_id.clone(),
            quantity: 1,
            payment_succeeded: false,
        });
    let order_url = format!("{gateway}/api/orders/{order_id}");
    let mut live = shop.api.status_stream(&order_url, token).await;

    // Reservation: PENDING until product-service has reserved the stock.
    let status = follow(
        shop,
        &mut live,
        &order_url,
        token,
        &[AWAITING_PAYMENT, PAID],
        deadline,
    )
    .await?;
    match status.as_str() {
        REJECTED => return Ok(Outcome::Rejected),
        CANCELLED => return Ok(Outcome::Cancelled),
        AWAITING_PAYMENT | PAID => {}
        other => {
            return Ok(Outcome::Failed(
                format!("stuck in {other}"),
                format!(
                    "order {order_id} still {other} after {:?}",
                    config.order_timeout
                ),
            ));
        }
    }
    let awaiting = Instant::now();

    // Payment: payment-service learns about the order from order.events and may lag
    // order-service by a moment (it waits briefly, then answers 404 or 409); nothing is charged
    // then, so retrying with a fresh key is safe, and payment-service allows one successful
    // payment per order anyway.
    let payment = json!({
        "order_id": order_id,
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
    });
    let mut key = Uuid::new_v4().to_string();
    loop {
        let answer = shop
            .api
            .call(
                Method::POST,
                &format!("{gateway}/api/payments"),
                token,
                Some(&key),
                Some(&payment),
            )
            .await;
        let (status, body) = match answer {
            Ok(answer) => answer,
            // No answer: the payment may or may not have been taken; the same key asks again
            // and gets the one result.
            Err(_) if config.retry_transient && Instant::now() < deadline => {
                tokio::time::sleep(config.poll_interval.max(TRANSIENT_PAUSE)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        match status {
            StatusCode::OK | StatusCode::CREATED | StatusCode::ACCEPTED => {
                let outcome = body["status"].as_str().unwrap_or_default();
                if matches!(outcome, "failed" | "declined") {
                    return Ok(failed("payment declined", &body));
                }
                if outcome == "succeeded" {
                    shop.note_payment_succeeded(&order_id);
                }
                break;
            }
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
                if config.retry_transient && Instant::now() < deadline =>
            {
                tokio::time::sleep(config.poll_interval.max(TRANSIENT_PAUSE)).await;
            }
            // 404/409: the order is not in payment-service's replica yet, or another payment
            // of it is in flight; unless the order got paid meanwhile, ask again.
            StatusCode::CONFLICT | StatusCode::NOT_FOUND if Instant::now() < deadline => {
                // A fresh key: the refused attempt took nothing.
                key = Uuid::new_v4().to_string();
                tokio::time::sleep(config.poll_interval).await;
                let (status, body) = shop
                    .api
                    .call(Method::GET, &order_url, token, None, None)
                    .await?;
                if status == StatusCode::OK && body["status"].as_str() == Some(PAID) {
                    break;
                }
            }
            other => return Ok(failed(&format!("payment answered {other}"), &body)),
        }
    }
    let payment_answered = Instant::now();

    let status = follow(shop, &mut live, &order_url, token, &[PAID], deadline).await?;
    if status != PAID {
        return Ok(Outcome::Failed(
            format!("not paid ({status})"),
            format!(
                "order {order_id} still {status} after {:?}",
                config.order_timeout
            ),
        ));
    }
    Ok(Outcome::Paid(Timings {
        due,
        created,
        awaiting,
        payment_answered,
        paid: Instant::now(),
    }))
}

fn failed(reason: &str, body: &Value) -> Outcome {
    Outcome::Failed(reason.to_owned(), format!("{reason}: {body}"))
}

/// Polls the order until its status is one of `wanted` or terminal, or the deadline passes;
/// returns the last status seen.
async fn wait_for_status(
    shop: &Shop,
    order_url: &str,
    token: Option<&str>,
    wanted: &[&str],
    deadline: Instant,
) -> Result<String> {
    loop {
        let answer = shop
            .api
            .call(Method::GET, order_url, token, None, None)
            .await;
        let (status, body) = match answer {
            Ok(answer) => answer,
            Err(_) if shop.config.retry_transient && Instant::now() < deadline => {
                tokio::time::sleep(shop.config.poll_interval.max(TRANSIENT_PAUSE)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let transient = shop.config.retry_transient
            && matches!(
                status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            );
        let current = if status == StatusCode::OK {
            body["status"].as_str().unwrap_or_default().to_owned()
        } else if status == StatusCode::TOO_MANY_REQUESTS || transient {
            String::new()
        } else {
            bail!("GET {order_url} answered {status}: {body}");
        };
        if wanted.contains(&current.as_str()) || current == REJECTED || current == CANCELLED {
            return Ok(current);
        }
        if Instant::now() >= deadline {
            return Ok(if current.is_empty() {
                "unknown (rate limited)".into()
            } else {
                current
            });
        }
        tokio::time::sleep(shop.config.poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::WindowEdge;

    #[test]
    fn window_markers_are_told_apart_from_each_other_and_from_reports() {
        for edge in [WindowEdge::FlowsStarted, WindowEdge::FlowsFinished] {
            assert_eq!(WindowEdge::from_marker(edge.marker()), Some(edge));
            // Each marker is a JSON line of its own, never mistaken for a report.
            assert!(serde_json::from_str::<serde_json::Value>(edge.marker()).is_ok());
        }
        assert_eq!(WindowEdge::from_marker(r#"{"paid":3}"#), None);
        assert_eq!(WindowEdge::from_marker(""), None);
    }
}
