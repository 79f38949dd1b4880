//! sms-sim over HTTP: the gateway API, idempotency, failure rules and bad input.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sms_sim::{Application, Config};

type TestResult = anyhow::Result<()>;

const TOKEN: &str = "test-token";

struct TestSim {
    address: String,
    client: reqwest::Client,
}

async fn spawn_sim() -> anyhow::Result<TestSim> {
    let app = Application::build(Config {
        host: "127.0.0.1".into(),
        port: 0,
        api_token: TOKEN.into(),
    })
    .await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    Ok(TestSim {
        address,
        client: reqwest::Client::new(),
    })
}

impl TestSim {
    async fn send(&self, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .client
            .post(format!("{}/v1/messages", self.address))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await?;
        Ok((response.status(), response.json().await?))
    }

    async fn admin(&self, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .client
            .post(format!("{}{path}", self.address))
            .json(&body)
            .send()
            .await?;
        Ok((response.status(), response.json().await?))
    }

    async fn received(&self, to: &str) -> anyhow::Result<Value> {
        Ok(self
            .client
            .get(format!(
                "{}/admin/messages?to={}",
                self.address,
                to.replace('+', "%2B")
            ))
            .send()
            .await?
            .json()
            .await?)
    }
}

#[tokio::test]
async fn a_message_is_recorded_once_per_client_reference() -> TestResult {
    let sim = spawn_sim().await?;
    let body = json!({"to": "+15551230001", "text": "Your order shipped", "client_reference": "evt-1:sms"});
    let (first, accepted) = sim.send(body.clone()).await?;
    let (second, repeated) = sim.send(body).await?;
    assert_eq!(first, StatusCode::CREATED, "{accepted}");
    assert_eq!(second, StatusCode::OK, "{repeated}");
    assert_eq!(accepted["id"], repeated["id"]);
    assert_eq!(repeated["duplicate"], true);
    let received = sim.received("+15551230001").await?;
    assert_eq!(received["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(received["messages"][0]["text"], "Your order shipped");
    assert_eq!(received["requests"], 2);
    Ok(())
}

#[tokio::test]
async fn failure_rules_apply_per_recipient_and_fail_n_recovers() -> TestResult {
    let sim = spawn_sim().await?;
    let (status, _) = sim
        .admin(
            "/admin/failure",
            json!({"mode": "fail_n", "count": 2, "to": "+15551230002"}),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let body = json!({"to": "+15551230002", "text": "hello"});
    assert_eq!(
        sim.send(body.clone()).await?.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Another number is not affected by that rule.
    let other = json!({"to": "+15551230003", "text": "hello"});
    assert_eq!(sim.send(other).await?.0, StatusCode::CREATED);
    assert_eq!(
        sim.send(body.clone()).await?.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(sim.send(body).await?.0, StatusCode::CREATED);

    sim.admin(
        "/admin/failure",
        json!({"mode": "fail_always", "to": "+15551230004", "status": 400}),
    )
    .await?;
    let (status, problem) = sim
        .send(json!({"to": "+15551230004", "text": "hello"}))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    Ok(())
}

#[tokio::test]
async fn bad_requests_are_problems_naming_the_field() -> TestResult {
    let sim = spawn_sim().await?;
    let (status, problem) = sim.send(json!({"to": "12345", "text": ""})).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["to", "text"]);

    let unauthenticated = sim
        .client
        .post(format!("{}/v1/messages", sim.address))
        .json(&json!({"to": "+15551230005", "text": "x"}))
        .send()
        .await?;
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    let (status, problem) = sim
        .admin("/admin/failure", json!({"mode": "fail_n"}))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "count");
    let (status, _) = sim
        .admin("/admin/failure", json!({"mode": "sometimes"}))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    Ok(())
}
