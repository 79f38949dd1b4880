//! `GET|PATCH /api/users/me`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, TestResult, spawn_app};

async fn patch(app: &TestApp, token: &str, body: Value) -> anyhow::Result<Reply> {
    app.send(
        app.client
            .patch(app.url("/api/users/me"))
            .bearer_auth(token)
            .json(&body),
    )
    .await
}

#[tokio::test]
async fn a_user_updates_name_phone_and_locale_and_can_clear_the_phone() -> TestResult {
    let app = spawn_app().await;
    let (_, token, _) = app.signed_in_user().await?;
    let updated = patch(
        &app,
        &token,
        json!({"name": "Grace", "phone": "+14155550100", "locale": "zh-CN"}),
    )
    .await?;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["name"], "Grace");
    assert_eq!(updated.body["phone"], "+14155550100");
    assert_eq!(updated.body["locale"], "zh-CN");

    let cleared = patch(&app, &token, json!({"phone": null})).await?;
    assert_eq!(cleared.status, StatusCode::OK);
    assert_eq!(cleared.body["phone"], Value::Null);
    assert_eq!(cleared.body["name"], "Grace", "omitted fields stay");

    let me = app.me(&token).await?;
    assert_eq!(me.body["locale"], "zh-CN");
    Ok(())
}

#[tokio::test]
async fn bad_patches_are_422_naming_the_field() -> TestResult {
    let app = spawn_app().await;
    let (_, token, _) = app.signed_in_user().await?;
    let bad_phone = patch(&app, &token, json!({"phone": "12"})).await?;
    assert_eq!(bad_phone.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_phone.body["errors"][0]["field"], "phone");

    let empty = patch(&app, &token, json!({})).await?;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);

    let email_change = patch(&app, &token, json!({"email": "x@y.io"})).await?;
    assert_eq!(email_change.status, StatusCode::UNPROCESSABLE_ENTITY);

    let role_change = patch(&app, &token, json!({"role": "admin"})).await?;
    assert_eq!(role_change.status, StatusCode::UNPROCESSABLE_ENTITY);

    let unauthenticated = app
        .send(
            app.client
                .patch(app.url("/api/users/me"))
                .json(&json!({"name": "x"})),
        )
        .await?;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    Ok(())
}
