//! Health, metrics, OpenAPI, docs, unknown routes, and spans in the real Zipkin.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    PASSWORD, TestResult, eventually, flush_spans, spawn_app, unique_email, zipkin_url,
};

#[tokio::test]
async fn health_metrics_openapi_and_docs_answer() -> TestResult {
    let app = spawn_app().await;
    let live = app.send(app.client.get(app.url("/health/live"))).await?;
    assert_eq!(live.status, StatusCode::OK);
    let ready = app.send(app.client.get(app.url("/health/ready"))).await?;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["checks"]["postgres"]["status"], "up");
    assert_eq!(ready.body["checks"]["kafka"]["status"], "up");

    app.register(&unique_email()).await?;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains(
            r#"http_requests_total{method="POST",route="/api/users/register",status="201"}"#
        ),
        "{metrics}"
    );

    let openapi = app.send(app.client.get(app.url("/openapi.json"))).await?;
    assert_eq!(openapi.status, StatusCode::OK);
    for path in [
        "/api/users/register",
        "/api/users/login",
        "/api/users/refresh",
        "/api/users/me",
        "/.well-known/jwks.json",
    ] {
        assert!(
            openapi.body["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    let docs = app.client.get(app.url("/docs")).send().await?;
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await?;
    assert!(
        html.contains("openapi.json") && !html.contains("https://"),
        "docs must work offline"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() -> TestResult {
    let app = spawn_app().await;
    let missing = app.send(app.client.get(app.url("/api/nope"))).await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.headers[CONTENT_TYPE], "application/problem+json");
    let wrong_method = app
        .send(app.client.delete(app.url("/api/users/login")))
        .await?;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        wrong_method.headers[CONTENT_TYPE],
        "application/problem+json"
    );
    Ok(())
}

/// A request carrying a `traceparent` leaves spans in Zipkin under `user-service`: the HTTP
/// span and the outbox publish span, in the caller's trace.
#[tokio::test]
async fn a_registration_is_traced_into_zipkin_including_the_outbox_publish() -> TestResult {
    let app = spawn_app().await;
    let trace_id = Uuid::new_v4().simple().to_string();
    let traceparent = format!(
        "00-{trace_id}-{}-01",
        &Uuid::new_v4().simple().to_string()[..16]
    );
    let reply = app
        .send(
            app.client
                .post(app.url("/api/users/register"))
                .header("traceparent", traceparent)
                .json(&json!({"email": unique_email(), "password": PASSWORD, "name": "Traced"})),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED);
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
        let names: Vec<String> = spans
            .iter()
            .filter(|s| s["localEndpoint"]["serviceName"] == "user-service")
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        anyhow::ensure!(
            names.iter().any(|n| n == "post /api/users/register"),
            "no HTTP span yet: {names:?}"
        );
        anyhow::ensure!(
            names
                .iter()
                .any(|n| n.starts_with("publish ") && n.ends_with("user.events")),
            "no outbox publish span yet: {names:?}"
        );
        Ok(())
    })
    .await
}
