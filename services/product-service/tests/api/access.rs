//! Writes need an admin: 401 without a valid token, 403 for customers. Reads are public.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestResult, product_body, spawn_app, string};

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<StatusCode> {
    let mut request = app.client.request(method, app.url(path)).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(app.send(request).await?.status)
}

#[tokio::test]
async fn every_write_is_for_admins_only() -> TestResult {
    let app = spawn_app().await;
    let created = app.created(&product_body("AUTH-1")).await?;
    let id = string(&created["id"])?;
    let writes = [
        (
            Method::POST,
            "/api/products".to_owned(),
            product_body("AUTH-2"),
        ),
        (
            Method::PATCH,
            format!("/api/products/{id}"),
            json!({"version": 1, "name": "x"}),
        ),
        (Method::DELETE, format!("/api/products/{id}"), Value::Null),
        (
            Method::POST,
            format!("/api/products/{id}/stock"),
            json!({"delta": 1, "reason": "restock"}),
        ),
    ];
    for (method, path, body) in &writes {
        let anonymous = call(&app, method.clone(), path, None, body).await?;
        assert_eq!(anonymous, StatusCode::UNAUTHORIZED, "{method} {path}");
        let forged = call(&app, method.clone(), path, Some("not.a.jwt"), body).await?;
        assert_eq!(forged, StatusCode::UNAUTHORIZED, "{method} {path}");
        let customer = call(&app, method.clone(), path, Some(&app.customer_token), body).await?;
        assert_eq!(customer, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // Nothing changed.
    let read = app.get(&format!("/api/products/{id}")).await?;
    assert_eq!(read.body, created);
    assert_eq!(
        app.get("/api/products").await?.body["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    Ok(())
}
