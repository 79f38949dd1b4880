//! Health, metrics, OpenAPI, docs and unknown routes.

use reqwest::StatusCode;

use crate::helpers::{TestResult, product_body, spawn_app};

#[tokio::test]
async fn health_metrics_openapi_and_docs_answer() -> TestResult {
    let app = spawn_app().await;
    let ready = app.get("/health/ready").await?;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    assert_eq!(ready.body["checks"]["mongodb"]["status"], "up");
    assert_eq!(ready.body["checks"]["kafka"]["status"], "up");
    assert_eq!(ready.body["checks"]["consumers"]["status"], "up");
    assert_eq!(app.get("/health/live").await?.status, StatusCode::OK);

    app.created(&product_body("PLAT-1")).await?;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics
            .contains(r#"http_requests_total{method="POST",route="/api/products",status="201"}"#),
        "{metrics}"
    );

    let openapi = app.get("/openapi.json").await?;
    for path in [
        "/api/products",
        "/api/products/{id}",
        "/api/products/{id}/stock",
    ] {
        assert!(openapi.body["paths"].get(path).is_some(), "{path} missing");
    }
    let docs = app.client.get(app.url("/docs")).send().await?;
    assert_eq!(docs.status(), StatusCode::OK);
    assert_eq!(app.get("/api/nothing").await?.status, StatusCode::NOT_FOUND);
    Ok(())
}
