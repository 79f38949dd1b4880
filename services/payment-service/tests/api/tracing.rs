//! One trace from the caller through payment-service, its call to the provider, the provider
//! itself and the event's publication.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{GOOD_CARD, TestResult, card, eventually, flush_spans, spawn_app, zipkin_url};

#[tokio::test]
async fn a_payment_and_its_provider_call_are_one_trace_in_zipkin() -> TestResult {
    let app = spawn_app().await;
    let order = app.awaiting_order(100).await?;
    let trace_id = Uuid::new_v4().simple().to_string();
    let traceparent = format!(
        "00-{trace_id}-{}-01",
        &Uuid::new_v4().simple().to_string()[..16]
    );
    let reply = app
        .send(
            app.client
                .post(app.url("/api/payments"))
                .bearer_auth(&app.token)
                .header("Idempotency-Key", "traced")
                .header("traceparent", traceparent)
                .json(&json!({"order_id": order, "card": card(GOOD_CARD)})),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    app.wait_for_empty_outbox().await?;

    let client = reqwest::Client::new();
    let url = format!("{}/api/v2/trace/{trace_id}", zipkin_url());
    eventually(Duration::from_secs(30), || async {
        flush_spans().await;
        let response = client.get(&url).send().await?;
        anyhow::ensure!(
            response.status() == StatusCode::OK,
            "trace not in Zipkin yet"
        );
        let spans: Vec<Value> = response.json().await?;
        let has =
            |name: &str, kind: &str| spans.iter().any(|s| s["name"] == name && s["kind"] == kind);
        anyhow::ensure!(
            has("post /api/payments", "SERVER"),
            "no HTTP span: {spans:?}"
        );
        // The client span of the call and psp-sim's server span (psp-sim runs in this test
        // process, so it reports under the same service name).
        anyhow::ensure!(has("post /v1/charges", "CLIENT"), "no provider call span");
        anyhow::ensure!(
            has("post /v1/charges", "SERVER"),
            "psp-sim's span did not join"
        );
        anyhow::ensure!(
            spans.iter().any(|s| s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("publish ") && n.ends_with("payment.events"))),
            "no outbox publish span"
        );
        Ok(())
    })
    .await
}
