//! `spawn_sim()` and the `TestSim` that speaks the provider's API.

use std::time::Duration;

use psp_sim::Application;
use psp_sim::config::{Config, DEFAULT_API_KEY};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub type TestResult = anyhow::Result<()>;
pub use testkit::http::Reply;

pub struct TestSim {
    pub address: String,
    pub client: reqwest::Client,
}

pub fn config() -> Config {
    Config {
        server: web::ServerConfig::for_tests(Duration::from_secs(30)),
        api_key: DEFAULT_API_KEY.into(),
        latency: Duration::ZERO,
        failure_rate: 0.0,
        slow_delay: Duration::from_millis(400),
    }
}

pub async fn spawn_sim() -> TestSim {
    spawn_sim_with(|_| {}).await
}

pub async fn spawn_sim_with(adjust: impl FnOnce(&mut Config)) -> TestSim {
    let mut config = config();
    adjust(&mut config);
    let app = Application::build(config)
        .await
        .unwrap_or_else(|error| panic!("psp-sim failed to start: {error:#}"));
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestSim {
        address,
        client: reqwest::Client::new(),
    }
}

pub fn charge_body(card: &str, amount: i64, reference: &str) -> Value {
    json!({
        "amount": amount,
        "currency": "EUR",
        "reference": reference,
        "card": {"number": card, "exp_month": 12, "exp_year": 2035, "cvc": "123"},
    })
}

impl TestSim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        testkit::http::send(request).await
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(DEFAULT_API_KEY)
                .header("Idempotency-Key", key)
                .json(body),
        )
        .await
    }

    pub async fn charge(&self, key: &str, body: &Value) -> anyhow::Result<Reply> {
        self.post("/v1/charges", key, body).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send(self.client.get(self.url(path)).bearer_auth(DEFAULT_API_KEY))
            .await
    }

    /// The charges with `reference`.
    pub async fn charges_of(&self, reference: &str) -> anyhow::Result<Vec<Value>> {
        let reply = self
            .get(&format!("/v1/charges?reference={reference}"))
            .await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "{reply:?}");
        Ok(reply.body["data"].as_array().cloned().unwrap_or_default())
    }
}
