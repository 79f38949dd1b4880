//! Registration: the happy path and every bad input.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use crate::helpers::{PASSWORD, TestResult, spawn_app, unique_email};

#[tokio::test]
async fn register_creates_a_customer_without_leaking_the_hash() -> TestResult {
    let app = spawn_app().await;
    let email = unique_email();
    let reply = app
        .post(
            "/api/users/register",
            json!({"email": email, "password": PASSWORD, "name": " Ada ", "phone": "+49 151 12345678", "locale": "zh-cn"}),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["email"], email);
    assert_eq!(reply.body["name"], "Ada");
    assert_eq!(reply.body["phone"], "+4915112345678");
    assert_eq!(reply.body["locale"], "zh-CN");
    assert_eq!(reply.body["role"], "customer");
    assert!(reply.body.get("password_hash").is_none());
    assert!(!reply.body.to_string().contains("argon2"));
    Ok(())
}

#[tokio::test]
async fn invalid_fields_are_all_named_in_one_problem() -> TestResult {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/api/users/register",
            json!({"email": "not-an-email", "password": "short", "name": "  ", "phone": "12", "locale": "xx"}),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.headers[CONTENT_TYPE], "application/problem+json");
    let mut named = reply.fields();
    named.sort();
    assert_eq!(named, ["email", "locale", "name", "password", "phone"]);
    assert_eq!(reply.body["status"], 422);
    assert!(
        reply.body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/validation"))
    );
    Ok(())
}

#[tokio::test]
async fn malformed_bodies_get_a_4xx_problem_never_a_500() -> TestResult {
    let app = spawn_app().await;
    let url = app.url("/api/users/register");

    let syntax = app
        .send(
            app.client
                .post(&url)
                .header(CONTENT_TYPE, "application/json")
                .body("{\"email\":"),
        )
        .await?;
    assert_eq!(syntax.status, StatusCode::BAD_REQUEST);
    assert_eq!(syntax.headers[CONTENT_TYPE], "application/problem+json");

    let wrong_type = app
        .post(
            "/api/users/register",
            json!({"email": 5, "password": PASSWORD, "name": "A"}),
        )
        .await?;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong_type.fields(), ["email"]);

    let missing = app
        .post(
            "/api/users/register",
            json!({"email": unique_email(), "name": "A"}),
        )
        .await?;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.fields(), ["password"]);

    let unknown = app
        .post(
            "/api/users/register",
            json!({"email": unique_email(), "password": PASSWORD, "name": "A", "role": "admin"}),
        )
        .await?;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "self-promotion must be refused"
    );

    let no_content_type = app.send(app.client.post(&url).body("{}")).await?;
    assert_eq!(no_content_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = app
        .send(
            app.client
                .post(&url)
                .header(CONTENT_TYPE, "application/json")
                .body(format!("{{\"name\":\"{}\"}}", "x".repeat(200_000))),
        )
        .await?;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(huge.headers[CONTENT_TYPE], "application/problem+json");

    let not_object = app.post("/api/users/register", json!([1, 2])).await?;
    assert_eq!(not_object.status, StatusCode::UNPROCESSABLE_ENTITY);
    Ok(())
}

#[tokio::test]
async fn a_taken_email_is_a_conflict_whatever_its_case() -> TestResult {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email).await?.status, StatusCode::CREATED);
    let again = app.register(&email.to_uppercase()).await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.headers[CONTENT_TYPE], "application/problem+json");
    Ok(())
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_create_one_account() -> TestResult {
    let app = spawn_app().await;
    let email = unique_email();
    let attempts = futures::future::join_all((0..5).map(|_| app.register(&email))).await;
    let statuses: Vec<StatusCode> = attempts
        .into_iter()
        .map(|r| r.map(|r| r.status))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        4,
        "{statuses:?}"
    );
    Ok(())
}
