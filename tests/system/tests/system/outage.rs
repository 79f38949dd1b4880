//! Dependency outages: PostgreSQL, Kafka, the MongoDB-wire server, and then the payment
//! provider with the SMTP server together, each gone for 30 s while requests keep arriving.
//!
//! The platform runs on private instances of the infrastructure (`testkit::deps`), so
//! stopping them disturbs no other test. Throughout, a client sends a round of requests every
//! 250 ms through the gateway (a product, a new order, the latest order, a payment for an order
//! awaiting one, the profile, the notification history), each with a 2 s client timeout. Every
//! answer must come within those 2 s and be a success, a 4xx, or a 503 problem document with
//! `Retry-After`: no hang, no 500, no 502/504. The services that need the dependency turn
//! `/health/ready` red while it is away and green after. Once everything is back, every order
//! the platform accepted (201) is paid and must reach `PAID` with exactly one charge kept at
//! the provider, and exactly one receipt per order is recorded and delivered.
//!
//! The outages run one after another on one platform: two at once would blur which dependency
//! an answer suffered from; the provider and the SMTP server touch different requests (the
//! payment call, the mail sender), so they share their 30 s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use testkit::deps::{self, Dependency};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::api::{Api, GOOD_CARD, User};
use crate::platform::{Deps, Platform};

/// How long each dependency stays away.
const OUTAGE: Duration = Duration::from_secs(30);
/// The answer bound of the issue: a request that takes longer counts as a hang.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// From the dependency's return until every service is ready again.
const RECOVERY: Duration = Duration::from_secs(120);

/// One request's outcome.
#[derive(Debug, Clone)]
struct Sample {
    label: &'static str,
    /// `None`: no answer within [`ANSWER_WITHIN`] (or the connection failed).
    status: Option<StatusCode>,
    elapsed: Duration,
    retry_after: bool,
    problem_json: bool,
}

impl Sample {
    /// Why this answer breaks the contract, if it does.
    fn fault(&self) -> Option<String> {
        match self.status {
            None => Some(format!(
                "{}: no answer within {ANSWER_WITHIN:?} (after {:?})",
                self.label, self.elapsed
            )),
            Some(StatusCode::SERVICE_UNAVAILABLE) if !self.retry_after || !self.problem_json => {
                Some(format!(
                    "{}: 503 without {}",
                    self.label,
                    if self.retry_after {
                        "application/problem+json"
                    } else {
                        "Retry-After"
                    }
                ))
            }
            Some(status)
                if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE =>
            {
                Some(format!("{}: {status}", self.label))
            }
            _ => None,
        }
    }
}

/// Charges the provider keeps (succeeded, not refunded) among `charges`.
fn kept(charges: &[Value]) -> usize {
    charges
        .iter()
        .filter(|c| c["status"] == "succeeded")
        .filter(|c| {
            !(c["refunded"].as_bool().unwrap_or(false)
                || c["amount_refunded"].as_i64().unwrap_or(0) > 0)
        })
        .count()
}

/// What the client has done so far.
#[derive(Default)]
struct Ledger {
    /// Orders the platform accepted (201), in order.
    accepted: Vec<Uuid>,
    /// Orders whose payment was answered with a success, with the key used.
    paid: BTreeMap<Uuid, String>,
    /// The key each order's payment is (re)tried with: one per order, so a retry after a lost
    /// answer can never charge twice.
    keys: BTreeMap<Uuid, String>,
}

/// The client sending requests while a dependency is away.
struct Load {
    api: Api,
    client: reqwest::Client,
    user: User,
    product: Uuid,
    ledger: Arc<Mutex<Ledger>>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Load {
    async fn timed(
        &self,
        label: &'static str,
        request: reqwest::RequestBuilder,
    ) -> (Sample, Value) {
        let started = Instant::now();
        let answer = request.send().await;
        let (status, retry_after, problem_json, body) = match answer {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                (
                    Some(status),
                    headers.contains_key(reqwest::header::RETRY_AFTER),
                    headers
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("application/problem+json")),
                    body,
                )
            }
            Err(_) => (None, false, false, Value::Null),
        };
        let sample = Sample {
            label,
            status,
            elapsed: started.elapsed(),
            retry_after,
            problem_json,
        };
        self.samples.lock().await.push(sample.clone());
        (sample, body)
    }

    /// One round of requests, all at once.
    async fn round(&self) {
        let token = &self.user.token;
        let latest = self.ledger.lock().await.accepted.last().copied();
        let to_pay = {
            let ledger = self.ledger.lock().await;
            ledger
                .accepted
                .iter()
                .find(|id| !ledger.paid.contains_key(id))
                .copied()
        };
        let product = self.timed(
            "GET /api/products/{id}",
            self.client
                .get(self.api.url(&format!("/api/products/{}", self.product))),
        );
        let order = self.timed(
            "POST /api/orders",
            self.client
                .post(self.api.url("/api/orders"))
                .bearer_auth(token)
                .json(&serde_json::json!({
                    "items": [{"product_id": self.product, "quantity": 1}],
                    "shipping_address": {"name": "Outage Customer", "line1": "1 Test Street",
                        "city": "Testville", "postal_code": "12345", "country": "DE"}})),
        );
        let read = async {
            match latest {
                Some(id) => Some(
                    self.timed(
                        "GET /api/orders/{id}",
                        self.client
                            .get(self.api.url(&format!("/api/orders/{id}")))
                            .bearer_auth(token),
                    )
                    .await,
                ),
                None => None,
            }
        };
        let pay = async {
            let id = to_pay?;
            let key = {
                let mut ledger = self.ledger.lock().await;
                ledger
                    .keys
                    .entry(id)
                    .or_insert_with(|| Uuid::new_v4().to_string())
                    .clone()
            };
            let (sample, body) = self
                .timed(
                    "POST /api/payments",
                    self.client
                        .post(self.api.url("/api/payments"))
                        .bearer_auth(token)
                        .header("Idempotency-Key", &key)
                        .json(&serde_json::json!({"order_id": id, "card": {
                            "number": GOOD_CARD, "exp_month": 12, "exp_year": 2035, "cvc": "123"}})),
                )
                .await;
            Some((id, key, sample, body))
        };
        let me = self.timed(
            "GET /api/users/me",
            self.client
                .get(self.api.url("/api/users/me"))
                .bearer_auth(token),
        );
        let notifications = self.timed(
            "GET /api/notifications",
            self.client
                .get(self.api.url("/api/notifications"))
                .bearer_auth(token),
        );
        let (_, (created, body), _, paid, _, _) =
            tokio::join!(product, order, read, pay, me, notifications);
        let mut ledger = self.ledger.lock().await;
        if created.status == Some(StatusCode::CREATED)
            && let Some(id) = body["id"].as_str().and_then(|id| id.parse().ok())
        {
            ledger.accepted.push(id);
        }
        if let Some((id, key, sample, body)) = paid
            && sample.status.is_some_and(|s| s.is_success())
        {
            match body["status"].as_str() {
                Some("succeeded") => {
                    ledger.paid.insert(id, key);
                }
                // Not charged (the provider was away): a result, so the next try is a new
                // payment with a new key, as a real client does.
                Some("failed") => {
                    ledger.keys.remove(&id);
                }
                _ => {}
            }
        }
    }
}

/// Runs the load until `stop` is set.
async fn keep_sending(load: Arc<Load>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let next = tokio::time::Instant::now() + Duration::from_millis(250);
        load.round().await;
        tokio::time::sleep_until(next).await;
    }
}

/// Whether `url`'s readiness answers 200.
async fn ready(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(format!("{url}/health/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
}

/// One outage: what goes away, and which services must report it.
struct Outage {
    name: &'static str,
    /// Services whose readiness must turn red (their instances' URLs).
    red: &'static [&'static str],
}

/// Answer times and faults of one outage, for the report and the verdict.
struct Findings {
    name: &'static str,
    samples: Vec<Sample>,
    faults: Vec<String>,
}

impl Findings {
    fn summary(&self) -> String {
        let mut times: Vec<Duration> = self.samples.iter().map(|s| s.elapsed).collect();
        times.sort();
        let at = |q: f64| {
            let index = ((times.len() as f64 * q).ceil() as usize).saturating_sub(1);
            times.get(index).copied().unwrap_or_default()
        };
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        for s in &self.samples {
            let key = s
                .status
                .map_or_else(|| "no answer".to_owned(), |s| s.as_u16().to_string());
            *statuses.entry(key).or_default() += 1;
        }
        let slowest = self
            .samples
            .iter()
            .max_by_key(|s| s.elapsed)
            .map_or("-", |s| s.label);
        let over = self
            .samples
            .iter()
            .filter(|s| s.elapsed >= ANSWER_WITHIN)
            .count();
        // One line per outage, the figures docs/RELIABILITY.md records.
        format!(
            "outage {:<14} {} requests, p99 {:.0} ms, max {:.0} ms ({slowest}), {over} over \
             {:?}, statuses {:?}, {} fault(s)",
            self.name,
            self.samples.len(),
            at(0.99).as_secs_f64() * 1000.0,
            at(1.0).as_secs_f64() * 1000.0,
            ANSWER_WITHIN,
            statuses,
            self.faults.len()
        )
    }
}

/// The dependencies of the outage platform.
struct Infra {
    postgres: Dependency,
    kafka: Dependency,
    mongo: Dependency,
    smtp: Dependency,
    mailpit_api: String,
}

pub async fn run() -> anyhow::Result<()> {
    let (postgres, postgres_admin) = deps::postgres().await?;
    let (kafka, kafka_brokers) = deps::kafka().await?;
    let (mongo, mongodb_url) = deps::mongo_wire().await?;
    let (smtp, mailpit_api) = deps::mailpit().await?;
    let mut infra = Infra {
        postgres,
        kafka,
        mongo,
        smtp,
        mailpit_api,
    };
    let deps = Deps {
        kafka_brokers: Some(kafka_brokers),
        mongodb_url: Some(mongodb_url),
        postgres_admin_url: Some(postgres_admin),
        smtp_port: Some(infra.smtp.port),
        workflow_engine_url: None,
    };
    let mut platform = Platform::start_on(1, None, &deps).await?;
    let outcome = outages(&mut platform, &mut infra).await;
    if let Err(error) = &outcome {
        eprintln!(
            "dependency outages failed: {error:#}\n{}",
            platform.logs(40)
        );
    }
    outcome
}

async fn outages(platform: &mut Platform, infra: &mut Infra) -> anyhow::Result<()> {
    let api = Api::new(&platform.gateway, &platform.psp);
    let admin = api.admin_token().await?;
    let (product, _) = api.product(&admin, 100_000, 1_500).await?;
    let user = api.customer().await?;
    // The product is known to order-service's replica once an order for it is accepted.
    let first = api.place_when_known(&user, &[(product, 1)], None).await?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    if let Some(id) = first.body["id"].as_str().and_then(|id| id.parse().ok()) {
        ledger.lock().await.accepted.push(id);
    }
    let client = reqwest::Client::builder().timeout(ANSWER_WITHIN).build()?;
    let outages = [
        Outage {
            name: "postgres",
            red: &["user-service", "order-service", "notification-service"],
        },
        Outage {
            name: "mongo-wire",
            red: &["product-service", "payment-service"],
        },
        Outage {
            name: "kafka",
            red: &[
                "user-service",
                "product-service",
                "order-service",
                "payment-service",
                "notification-service",
            ],
        },
        // Neither is a readiness dependency: payments answer 503 while the provider is away,
        // mails wait in the queue.
        Outage {
            name: "psp-sim+smtp",
            red: &[],
        },
    ];
    let mut findings = Vec::new();
    // psp-sim keeps its charges in memory, so its outage (a kill) forgets them: what it kept
    // per order is read just before, while no request is in flight, and added to what it
    // keeps at the end.
    let mut kept_before_provider_restart: BTreeMap<Uuid, usize> = BTreeMap::new();
    for outage in &outages {
        if outage.name == "psp-sim+smtp" {
            for id in ledger.lock().await.accepted.clone() {
                kept_before_provider_restart.insert(id, kept(&api.provider_charges(id).await?));
            }
        }
        let samples = Arc::new(Mutex::new(Vec::new()));
        let load = Arc::new(Load {
            api: api.clone(),
            client: client.clone(),
            user: user.clone(),
            product,
            ledger: ledger.clone(),
            samples: samples.clone(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let sender = tokio::spawn(keep_sending(load, stop.clone()));
        let mut faults = Vec::new();

        let gone = tokio::time::Instant::now();
        match outage.name {
            "postgres" => infra.postgres.stop()?,
            "mongo-wire" => infra.mongo.stop()?,
            "kafka" => infra.kafka.stop()?,
            _ => {
                platform.kill("psp-sim");
                infra.smtp.stop()?;
            }
        }
        // Readiness turns red while the dependency is away.
        for service in outage.red {
            for url in platform.urls.get(*service).cloned().unwrap_or_default() {
                let turned = testkit::eventually(Duration::from_secs(20), || {
                    let (client, url) = (client.clone(), url.clone());
                    async move {
                        anyhow::ensure!(!ready(&client, &url).await, "{url} still ready");
                        Ok(())
                    }
                })
                .await;
                if turned.is_err() {
                    faults.push(format!(
                        "{service} ({url}) stayed ready while {} was away",
                        outage.name
                    ));
                }
            }
        }
        // The outage lasts its time whatever the checks took: this waits for the clock, it
        // synchronises with nothing.
        tokio::time::sleep_until(gone + OUTAGE).await;
        match outage.name {
            "postgres" => infra.postgres.start(RECOVERY).await?,
            "mongo-wire" => infra.mongo.start(RECOVERY).await?,
            "kafka" => infra.kafka.start(RECOVERY).await?,
            _ => {
                infra.smtp.start(RECOVERY).await?;
                platform.restart("psp-sim").await?;
            }
        }
        // ... and green again once it is back.
        for (service, urls) in &platform.urls {
            for url in urls {
                let back = testkit::eventually(RECOVERY, || {
                    let (client, url) = (client.clone(), url.clone());
                    async move {
                        anyhow::ensure!(ready(&client, &url).await, "{url} not ready");
                        Ok(())
                    }
                })
                .await;
                if back.is_err() {
                    faults.push(format!(
                        "{service} ({url}) not ready {RECOVERY:?} after {} returned",
                        outage.name
                    ));
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        sender.await?;
        let samples = std::mem::take(&mut *samples.lock().await);
        faults.extend(samples.iter().filter_map(Sample::fault));
        let found = Findings {
            name: outage.name,
            samples,
            faults,
        };
        eprintln!("{}", found.summary());
        findings.push(found);
    }

    // Everything is back: every accepted order completes, paid once.
    let accepted = ledger.lock().await.accepted.clone();
    let mut problems: Vec<String> = Vec::new();
    let mut paid_orders = 0;
    for id in &accepted {
        let settled = testkit::eventually(Duration::from_secs(90), || {
            let (api, user, ledger) = (api.clone(), user.clone(), ledger.clone());
            async move {
                let order = api.order(&user, *id).await?;
                let status = order.body["status"].as_str().unwrap_or_default().to_owned();
                match status.as_str() {
                    "PAID" => return Ok(()),
                    "AWAITING_PAYMENT" => {
                        // The same key as during the outage: a payment taken then is
                        // replayed; after a failed one, a new payment with a new key.
                        let key = ledger
                            .lock()
                            .await
                            .keys
                            .entry(*id)
                            .or_insert_with(|| Uuid::new_v4().to_string())
                            .clone();
                        let paid = api.pay(&user, *id, GOOD_CARD, &key, None).await?;
                        if paid.body["status"] == "failed" {
                            ledger.lock().await.keys.remove(id);
                        }
                    }
                    _ => {}
                }
                anyhow::bail!("order {id} is {status}")
            }
        })
        .await;
        if let Err(error) = settled {
            problems.push(format!("{error:#}"));
            continue;
        }
        paid_orders += 1;
        let kept = kept(&api.provider_charges(*id).await?)
            + kept_before_provider_restart.get(id).copied().unwrap_or(0);
        if kept != 1 {
            problems.push(format!("order {id} is PAID with {kept} charges kept"));
        }
    }
    // One receipt per paid order: recorded once, and delivered by the SMTP server that was away.
    let expected = paid_orders;
    let receipts = testkit::eventually(Duration::from_secs(90), || {
        let (api, user, mailpit) = (api.clone(), user.clone(), infra.mailpit_api.clone());
        async move {
            let mut recorded = 0;
            let mut before: Option<i64> = None;
            loop {
                let page = before.map(|b| format!("&before={b}")).unwrap_or_default();
                let history = api
                    .send(
                        api.client
                            .get(api.url(&format!("/api/notifications?limit=100{page}")))
                            .bearer_auth(&user.token),
                    )
                    .await?;
                let items = history.body["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                recorded += items
                    .iter()
                    .filter(|n| n["template"] == "receipt" && n["channel"] == "email")
                    .count();
                match history.body["next_before"].as_i64() {
                    Some(next) if !items.is_empty() => before = Some(next),
                    _ => break,
                }
            }
            let inbox: Value = api
                .client
                .get(format!(
                    "{mailpit}/api/v1/search?query=to%3A%22{}%22&limit=500",
                    user.email.replace('@', "%40")
                ))
                .send()
                .await?
                .json()
                .await?;
            let delivered: std::collections::BTreeSet<String> = inbox["messages"]
                .as_array()
                .map(|messages| {
                    messages
                        .iter()
                        .filter(|m| {
                            m["Subject"]
                                .as_str()
                                .is_some_and(|s| s.starts_with("Receipt for your order"))
                        })
                        .filter_map(|m| m["MessageID"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            anyhow::ensure!(
                recorded == expected && delivered.len() == expected,
                "{recorded} receipts recorded and {} delivered for {expected} paid orders",
                delivered.len()
            );
            Ok(())
        }
    })
    .await;
    if let Err(error) = receipts {
        problems.push(format!("{error:#}"));
    }

    let mut report = Vec::new();
    for found in &findings {
        report.push(found.summary());
        report.extend(found.faults.iter().take(10).map(|f| format!("  {f}")));
    }
    report.extend(problems.iter().take(20).cloned());
    eprintln!("{}", report.join("\n"));
    let faults: usize = findings.iter().map(|f| f.faults.len()).sum();
    anyhow::ensure!(
        faults == 0 && problems.is_empty(),
        "{faults} answer/readiness fault(s), {} settlement problem(s) over {} accepted orders:\n{}",
        problems.len(),
        accepted.len(),
        report.join("\n")
    );
    Ok(())
}
