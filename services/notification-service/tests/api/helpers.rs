//! `spawn_app()`, the `TestApp` that speaks the API and publishes events, and the read-back
//! helpers: Mailpit's HTTP API for mail, sms-sim's admin API for SMS, the database for state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth::Role;
use contracts::product::Money;
use contracts::user::UserRegistered;
use contracts::{CloudEvent, EventData};
use messaging::KafkaConfig;
use messaging::kafka::Producer;
use notification_service::Application;
use notification_service::config::{Config, DeliveryConfig, SmsConfig, SmtpConfig};
use rdkafka::producer::FutureRecord;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use testkit::tokens::TestIssuer;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub type TestResult = anyhow::Result<()>;
pub use testkit::eventually;
pub use testkit::http::Reply;
pub use testkit::spans::flush as flush_spans;
pub use testkit::stack::{kafka_brokers as brokers, zipkin_url};
const SMS_TOKEN: &str = "test-sms-token";

use testkit::stack::env_or;

pub fn mailpit_url() -> String {
    env_or("MAILPIT_URL", "http://127.0.0.1:8025")
}

pub fn smtp_host() -> String {
    env_or("SMTP_HOST", "127.0.0.1")
}

pub fn smtp_port() -> u16 {
    env_or("SMTP_PORT", "1025").parse().unwrap_or(1025)
}

/// A fresh database for this test (see `testkit::postgres`).
pub async fn fresh_database() -> anyhow::Result<String> {
    testkit::postgres::fresh_database("notifications").await
}

/// A simulated SMS gateway of the test's own (sms-sim on port 0, over HTTP).
pub async fn spawn_sms_sim() -> anyhow::Result<String> {
    let sim = sms_sim::Application::build(sms_sim::Config {
        host: "127.0.0.1".into(),
        port: 0,
        api_token: SMS_TOKEN.into(),
    })
    .await?;
    let address = format!("http://127.0.0.1:{}", sim.port());
    tokio::spawn(sim.run_until_stopped(std::future::pending()));
    Ok(address)
}

pub fn test_config(database_url: &str, topic_prefix: &str, sms_url: &str) -> Config {
    Config {
        server: web::ServerConfig::for_tests(Duration::from_secs(10)),
        database_url: database_url.to_owned().into(),
        kafka: KafkaConfig::new(brokers()),
        topic_prefix: topic_prefix.to_owned(),
        tokens: testkit::tokens::static_keys_verifier(),
        smtp: SmtpConfig {
            host: smtp_host(),
            port: smtp_port(),
            username: None,
            password: None,
            from: "ferroshop <no-reply@ferroshop.local>".into(),
            timeout: Duration::from_secs(5),
        },
        sms: SmsConfig {
            base_url: sms_url.to_owned(),
            api_token: SMS_TOKEN.to_owned().into(),
            timeout: Duration::from_secs(5),
        },
        delivery: DeliveryConfig {
            concurrency: 4,
            max_attempts: 4,
            retry_base: Duration::from_millis(100),
            lease: Duration::from_secs(30),
            max_queue: 10_000,
            poll_interval: Duration::from_millis(200),
        },
        consumers_per_group: 1,
        run_consumers: true,
        run_senders: true,
        workflow_engine_url: testkit::stack::workflow_engine_url(),
        workflow_namespace: workflow::default_namespace(topic_prefix),
        // Only the reminder tests work the engine's tasks.
        run_workflow_worker: false,
        admin_emails: Vec::new(),
    }
}

pub struct TestApp {
    pub database_url: String,
    pub address: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub topic_prefix: String,
    pub sms_url: String,
    issuer: TestIssuer,
    producer: Producer,
}

/// A customer as the tests know them: their contact and a token to call the API as them.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    testkit::spans::install("notification-service", true);
    let database_url = fresh_database()
        .await
        .unwrap_or_else(|error| panic!("cannot create a test database: {error:#}"));
    let sms_url = spawn_sms_sim()
        .await
        .unwrap_or_else(|error| panic!("cannot start sms-sim: {error:#}"));
    let topic_prefix = format!("test-{}.", Uuid::new_v4().simple());
    start(&database_url, &topic_prefix, &sms_url, adjust).await
}

/// Another process of `app`'s deployment: the same database, topics and SMS gateway.
pub async fn spawn_replica(app: &TestApp, adjust: impl FnOnce(&mut Config)) -> TestApp {
    start(&app.database_url, &app.topic_prefix, &app.sms_url, adjust).await
}

async fn start(
    database_url: &str,
    topic_prefix: &str,
    sms_url: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(database_url, topic_prefix, sms_url);
    adjust(&mut config);

    let issuer = TestIssuer::new().unwrap_or_else(|error| panic!("issuer: {error:#}"));
    let app = Application::build_with_keys(config, issuer.keys())
        .await
        .unwrap_or_else(|error| panic!("notification-service failed to start: {error:#}"));
    let port = app.port();
    let pool = app.pool().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let producer = KafkaConfig::new(brokers())
        .producer()
        .unwrap_or_else(|error| panic!("producer: {error:#}"));
    TestApp {
        database_url: database_url.to_owned(),
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        pool,
        topic_prefix: topic_prefix.to_owned(),
        sms_url: sms_url.to_owned(),
        issuer,
        producer,
    }
}

/// A unique phone number per call (tests share no recipients).
pub fn unique_phone() -> String {
    let digits = Uuid::new_v4().as_u128() % 10_000_000_000;
    format!("+1{digits:010}")
}

pub fn eur(amount: i64) -> Money {
    Money {
        amount,
        currency: "EUR".into(),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn topic(&self, logical: &str) -> String {
        format!("{}{logical}", self.topic_prefix)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        testkit::http::send(request).await
    }

    pub async fn get_as(&self, user: &TestUser, path: &str) -> anyhow::Result<Reply> {
        self.send(self.client.get(self.url(path)).bearer_auth(&user.token))
            .await
    }

    pub async fn put_preferences(&self, user: &TestUser, body: Value) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .put(self.url("/api/notifications/preferences"))
                .bearer_auth(&user.token)
                .json(&body),
        )
        .await
    }

    /// Opts `user` in to SMS.
    pub async fn opt_in_to_sms(&self, user: &TestUser) -> TestResult {
        let reply = self
            .put_preferences(user, serde_json::json!({"email": true, "sms": true}))
            .await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "preferences: {reply:?}");
        Ok(())
    }

    /// Publishes `data` as user-service / order-service would: a CloudEvent keyed by
    /// `subject`, on its topic under this test's prefix.
    pub async fn publish<T: EventData>(
        &self,
        subject: Uuid,
        data: T,
    ) -> anyhow::Result<CloudEvent> {
        let event = CloudEvent::new("/tests", subject.to_string(), data).into_untyped()?;
        self.publish_event(T::TOPIC, &event, &HashMap::new())
            .await?;
        Ok(event)
    }

    /// Publishes an existing envelope (e.g. a second time) with the given record headers.
    pub async fn publish_event(
        &self,
        logical_topic: &str,
        event: &CloudEvent,
        headers: &HashMap<String, String>,
    ) -> TestResult {
        let payload = serde_json::to_vec(event)?;
        let topic = self.topic(logical_topic);
        let record = FutureRecord::to(&topic)
            .key(&event.subject)
            .payload(&payload)
            .headers(messaging::headers::to_record_headers(headers));
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|error| anyhow::anyhow!("publishing to {topic}: {error}"))?;
        Ok(())
    }

    /// A user as the contact replica will learn of them, with a token to call the API.
    pub fn new_user(
        &self,
        locale: &str,
        phone: Option<String>,
    ) -> anyhow::Result<(TestUser, UserRegistered)> {
        let id = Uuid::now_v7();
        let email = format!("{}@test.local", Uuid::new_v4().simple());
        let name = format!("Ada {}", &id.simple().to_string()[24..]);
        let token = self.issuer.token(id, Role::Customer, &email)?;
        let registered = UserRegistered {
            user_id: id,
            email: email.clone(),
            name: name.clone(),
            phone,
            locale: locale.into(),
            role: "customer".into(),
            method: Default::default(),
        };
        Ok((
            TestUser {
                id,
                email,
                name,
                token,
            },
            registered,
        ))
    }

    /// Publishes `user.registered` for a new user.
    pub async fn register(&self, locale: &str, phone: Option<String>) -> anyhow::Result<TestUser> {
        let (user, registered) = self.new_user(locale, phone)?;
        self.publish(user.id, registered).await?;
        Ok(user)
    }

    /// (channel, template, status, attempts) of the user's messages, oldest first.
    pub async fn messages_of(
        &self,
        user: &TestUser,
    ) -> anyhow::Result<Vec<(String, String, String, i32)>> {
        Ok(sqlx::query_as(
            "SELECT channel, template, status, attempts FROM messages WHERE user_id = $1 ORDER BY id",
        )
        .bind(user.id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Waits until the user's message for `template` on `channel` is `status`.
    pub async fn wait_for_status(
        &self,
        user: &TestUser,
        channel: &str,
        template: &str,
        status: &str,
        deadline: Duration,
    ) -> TestResult {
        eventually(deadline, || async {
            let rows = self.messages_of(user).await?;
            anyhow::ensure!(
                rows.iter()
                    .any(|(c, t, s, _)| c == channel && t == template && s == status),
                "no {channel} {template} {status} yet: {rows:?}"
            );
            Ok(())
        })
        .await
    }

    /// What the test's sms-sim received for `number`: (messages, requests).
    pub async fn sms_to(&self, number: &str) -> anyhow::Result<(Vec<Value>, u64)> {
        let body: Value = self
            .client
            .get(format!(
                "{}/admin/messages?to={}",
                self.sms_url,
                number.replace('+', "%2B")
            ))
            .send()
            .await?
            .json()
            .await?;
        Ok((
            body["messages"].as_array().cloned().unwrap_or_default(),
            body["requests"].as_u64().unwrap_or(0),
        ))
    }

    pub async fn sms_failure(&self, body: Value) -> TestResult {
        let response = self
            .client
            .post(format!("{}/admin/failure", self.sms_url))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "sms-sim: {}",
            response.status()
        );
        Ok(())
    }
}

/// Mailpit's HTTP API.
pub struct Mailpit {
    client: reqwest::Client,
    base: String,
}

/// A mail as Mailpit lists it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub id: String,
    pub message_id: String,
    pub subject: String,
    pub to: Vec<String>,
}

impl Default for Mailpit {
    fn default() -> Self {
        Self {
            client: reqwest::Client::new(),
            base: mailpit_url(),
        }
    }
}

impl Mailpit {
    /// Mails whose `To` contains `fragment` (an address, or a per-test domain).
    pub async fn search(&self, fragment: &str) -> anyhow::Result<Vec<Mail>> {
        let query = format!("to:\"{fragment}\"");
        let mut mails = Vec::new();
        let mut start = 0;
        loop {
            let url = format!(
                "{}/api/v1/search?query={}&start={start}&limit=500",
                self.base,
                encode(&query)
            );
            let page: Value = self
                .client
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let messages = page["messages"].as_array().cloned().unwrap_or_default();
            let count = messages.len();
            for message in messages {
                mails.push(Mail {
                    id: message["ID"].as_str().unwrap_or_default().to_owned(),
                    message_id: message["MessageID"].as_str().unwrap_or_default().to_owned(),
                    subject: message["Subject"].as_str().unwrap_or_default().to_owned(),
                    to: message["To"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|to| to["Address"].as_str().map(str::to_owned))
                        .collect(),
                });
            }
            if count < 500 {
                return Ok(mails);
            }
            start += count;
        }
    }

    /// Deletes mails by their Mailpit ids (only ever this test's own).
    pub async fn delete(&self, ids: &[String]) -> TestResult {
        self.client
            .delete(format!("{}/api/v1/messages", self.base))
            .json(&serde_json::json!({ "IDs": ids }))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// The full message (`Text`, `HTML`, `Subject`, `MessageID`, ...).
    pub async fn message(&self, id: &str) -> anyhow::Result<Value> {
        Ok(self
            .client
            .get(format!("{}/api/v1/message/{id}", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Waits until at least `count` mails to `fragment` arrived; returns them.
    pub async fn wait_for(
        &self,
        fragment: &str,
        count: usize,
        deadline: Duration,
    ) -> anyhow::Result<Vec<Mail>> {
        eventually(deadline, || async {
            let found = self.search(fragment).await?.len();
            anyhow::ensure!(found >= count, "{found} of {count} mails to {fragment}");
            Ok(())
        })
        .await?;
        self.search(fragment).await
    }

    /// The one mail to `address` whose subject contains `subject`; fails unless exactly one.
    pub async fn the_mail(&self, address: &str, subject: &str) -> anyhow::Result<Value> {
        let mails: Vec<Mail> = self
            .search(address)
            .await?
            .into_iter()
            .filter(|mail| mail.subject.contains(subject))
            .collect();
        anyhow::ensure!(
            mails.len() == 1,
            "expected one mail {subject:?} to {address}, got {mails:?}"
        );
        self.message(&mails[0].id).await
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A TCP forwarder in front of Mailpit's SMTP port that the test switches off and on, to play
/// an SMTP server that is down for a while (the shared Mailpit itself must never be stopped).
pub struct SmtpSwitch {
    pub port: u16,
    on: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl SmtpSwitch {
    pub async fn start(on: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(AtomicBool::new(on));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let upstream = format!("{}:{}", smtp_host(), smtp_port());
        let acceptor = tokio::spawn({
            let state = state.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !state.load(Ordering::SeqCst) {
                        // "Down": the connection is closed before the greeting.
                        drop(inbound);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let forward = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    if let Ok(mut open) = connections.lock() {
                        open.push(forward);
                    }
                }
            }
        });
        Ok(Self {
            port,
            on: state,
            connections,
            acceptor,
        })
    }

    /// Switches the "server" on or off; off also cuts the connections that are open.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
        if !on && let Ok(mut open) = self.connections.lock() {
            for connection in open.drain(..) {
                connection.abort();
            }
        }
    }
}

impl Drop for SmtpSwitch {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.set(false);
    }
}
