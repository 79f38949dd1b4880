//! The HTTP API: preferences and history, only ever the caller's, and bad input as problems.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn preferences_default_to_mail_only_and_can_be_changed() -> TestResult {
    let app = spawn_app().await;
    let (user, _) = app.new_user("en", None)?;
    let reply = app.get_as(&user, "/api/notifications/preferences").await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["email"], true);
    assert_eq!(reply.body["sms"], false);
    assert!(reply.body["updated_at"].is_null());

    let reply = app
        .put_preferences(&user, json!({"email": false, "sms": true}))
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let reply = app.get_as(&user, "/api/notifications/preferences").await?;
    assert_eq!(
        (reply.body["email"].clone(), reply.body["sms"].clone()),
        (json!(false), json!(true))
    );
    assert!(reply.body["updated_at"].is_string());
    Ok(())
}

#[tokio::test]
async fn bad_preference_requests_are_problems_naming_the_field() -> TestResult {
    let app = spawn_app().await;
    let (user, _) = app.new_user("en", None)?;
    let reply = app
        .put_preferences(&user, json!({"email": "yes", "sms": true}))
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.body["errors"][0]["field"], "email");
    let reply = app.put_preferences(&user, json!({"email": true})).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "sms");
    let reply = app
        .put_preferences(&user, json!({"email": true, "sms": true, "fax": true}))
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);

    let not_json = app
        .send(
            app.client
                .put(app.url("/api/notifications/preferences"))
                .bearer_auth(&user.token)
                .header("content-type", "application/json")
                .body("{nope"),
        )
        .await?;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);

    let anonymous = app
        .send(app.client.get(app.url("/api/notifications/preferences")))
        .await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let forged = app
        .send(
            app.client
                .get(app.url("/api/notifications"))
                .bearer_auth("not.a.token"),
        )
        .await?;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn the_history_shows_the_callers_messages_only() -> TestResult {
    let app = spawn_app().await;
    let user = app.register("en", None).await?;
    let (stranger, _) = app.new_user("en", None)?;
    app.wait_for_status(&user, "email", "welcome", "sent", Duration::from_secs(30))
        .await?;

    let reply = app.get_as(&user, "/api/notifications").await?;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let items = reply.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{reply:?}");
    let item = &items[0];
    assert_eq!(item["channel"], "email");
    assert_eq!(item["template"], "welcome");
    assert_eq!(item["status"], "sent");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["recipient"], user.email.as_str());
    assert!(item["created_at"].is_string() && item["sent_at"].is_string());

    let other = app.get_as(&stranger, "/api/notifications").await?;
    assert_eq!(other.body["items"], json!([]));

    let reply = app.get_as(&user, "/api/notifications?limit=0").await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "limit");
    let reply = app.get_as(&user, "/api/notifications?limit=many").await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body["type"],
        "https://ferroshop.dev/problems/bad-request"
    );
    Ok(())
}

#[tokio::test]
async fn platform_endpoints_answer() -> TestResult {
    let app = spawn_app().await;
    for path in ["/health/live", "/health/ready", "/metrics", "/openapi.json"] {
        let response = app.client.get(app.url(path)).send().await?;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(metrics.contains("notification_queue_depth"), "{metrics}");
    Ok(())
}
