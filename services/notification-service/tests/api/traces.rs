//! The send continues the event's trace: the `send email` span is a child of the consume span,
//! which adopted the record's `traceparent`.

use std::collections::HashMap;
use std::time::Duration;

use contracts::order::OrderCancelled;
use contracts::{CloudEvent, EventData};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn the_send_span_continues_the_events_trace() -> TestResult {
    let app = spawn_app().await;
    let user = app.register("en", None).await?;
    let order = Uuid::now_v7();
    let event = CloudEvent::new(
        "/tests",
        order.to_string(),
        OrderCancelled {
            order_id: order,
            user_id: user.id,
            reason: "customer_request".into(),
        },
    )
    .into_untyped()?;
    let trace_id = Uuid::new_v4().simple().to_string();
    let headers = HashMap::from([(
        "traceparent".to_owned(),
        format!("00-{trace_id}-00f067aa0ba902b7-01"),
    )]);
    app.publish_event(OrderCancelled::TOPIC, &event, &headers)
        .await?;
    app.wait_for_status(
        &user,
        "email",
        "order_cancelled",
        "sent",
        Duration::from_secs(30),
    )
    .await?;

    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), || async {
        flush_spans().await;
        let spans: Vec<Value> = client
            .get(format!("{}/api/v2/trace/{trace_id}", zipkin_url()))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let named = |prefix: &str| {
            spans
                .iter()
                .find(|span| span["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
                .cloned()
        };
        let consume =
            named("consume ").ok_or_else(|| anyhow::anyhow!("no consume span: {spans:?}"))?;
        let send = named("send email").ok_or_else(|| anyhow::anyhow!("no send span: {spans:?}"))?;
        anyhow::ensure!(consume["parentId"] == "00f067aa0ba902b7", "{consume}");
        anyhow::ensure!(send["parentId"] == consume["id"], "{send} / {consume}");
        anyhow::ensure!(
            send["localEndpoint"]["serviceName"] == "notification-service",
            "{send}"
        );
        Ok(())
    })
    .await
}
