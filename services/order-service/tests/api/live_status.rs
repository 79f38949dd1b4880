//! `GET /api/orders/{id}/events`: the order's status pushed as Server-Sent Events, from
//! whichever replica made the change, ending with the order.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use testkit::sse::EventStream;
use uuid::Uuid;

use crate::helpers::{Customer, DEADLINE, Stack, TestResult, spawn_stack, succeeded};

/// An order's status stream and what has arrived of it.
struct StatusStream(EventStream);

impl StatusStream {
    async fn open(
        stack: &Stack,
        base: &str,
        customer: &Customer,
        id: Uuid,
    ) -> anyhow::Result<Self> {
        let response = stack
            .client
            .get(format!("{base}/api/orders/{id}/events"))
            .bearer_auth(&customer.token)
            .send()
            .await?;
        Ok(Self(EventStream::new(response, DEADLINE)?))
    }

    /// The next `status` event's data, or `None` when the server ended the stream.
    async fn next_status(&mut self) -> anyhow::Result<Option<Value>> {
        while let Some(event) = self.0.next_event().await? {
            if event.name == "status" {
                return Ok(Some(serde_json::from_str(&event.data)?));
            }
        }
        Ok(None)
    }

    /// Reads events until one has `status`; returns every status seen on the way.
    async fn until(&mut self, status: &str) -> anyhow::Result<Vec<String>> {
        let mut seen = Vec::new();
        while let Some(event) = self.next_status().await? {
            let now = event["status"].as_str().unwrap_or_default().to_owned();
            seen.push(now.clone());
            if now == status {
                return Ok(seen);
            }
        }
        anyhow::bail!("the stream ended before {status}; saw {seen:?}")
    }
}

#[tokio::test]
async fn the_stream_pushes_each_status_change_and_ends_when_the_order_is_paid() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let customer = stack.customer();
    let id = stack.placed(&customer, &[(kettle, 1)]).await?;
    let mut stream = StatusStream::open(&stack, &stack.orders, &customer, id).await?;

    // The status now (PENDING, or AWAITING_PAYMENT if the reservation was quicker), then the
    // reservation's outcome, without asking again.
    let seen = stream.until("AWAITING_PAYMENT").await?;
    assert!(
        seen == ["PENDING", "AWAITING_PAYMENT"] || seen == ["AWAITING_PAYMENT"],
        "{seen:?}"
    );
    stack
        .produce(id, vec![succeeded(id, customer.id, 2_999)])
        .await?;
    assert_eq!(stream.until("PAID").await?, ["PAID"]);
    assert!(
        stream.next_status().await?.is_none(),
        "a paid order's stream ends"
    );
    Ok(())
}

#[tokio::test]
async fn a_change_made_by_another_replica_reaches_the_stream() -> TestResult {
    let stack = spawn_stack().await;
    let other_replica = stack.replica(|_| {}).await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let customer = stack.customer();
    let id = stack.placed(&customer, &[(kettle, 1)]).await?;
    let mut stream = StatusStream::open(&stack, &other_replica, &customer, id).await?;
    stream.until("AWAITING_PAYMENT").await?;

    // Cancelled through the first replica, heard on the stream of the second.
    let cancelled = stack.cancel(&customer, id).await?;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    let seen = stream.until("CANCELLED").await?;
    assert_eq!(seen, ["CANCELLED"]);
    Ok(())
}

#[tokio::test]
async fn a_finished_order_answers_its_final_status_and_ends() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let customer = stack.customer();
    let id = stack.placed(&customer, &[(kettle, 1)]).await?;
    stack
        .wait_for_status(&customer, id, "AWAITING_PAYMENT")
        .await?;
    stack.cancel(&customer, id).await?;
    let mut stream = StatusStream::open(&stack, &stack.orders, &customer, id).await?;
    let last = stream.next_status().await?;
    assert_eq!(
        last.as_ref().map(|event| event["status"].clone()),
        Some(Value::from("CANCELLED"))
    );
    assert_eq!(
        last.as_ref().map(|event| event["status_reason"].clone()),
        Some(Value::from("customer_request"))
    );
    assert!(stream.next_status().await?.is_none());
    Ok(())
}

#[tokio::test]
async fn another_customers_order_has_no_stream_and_a_token_is_required() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let owner = stack.customer();
    let id = stack.placed(&owner, &[(kettle, 1)]).await?;

    let stranger = stack.customer();
    let reply = stack
        .send(
            stack
                .client
                .get(format!("{}/api/orders/{id}/events", stack.orders))
                .bearer_auth(&stranger.token),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    assert_eq!(reply.body["status"], 404);

    let anonymous = stack
        .client
        .get(format!("{}/api/orders/{id}/events", stack.orders))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let unknown = stack
        .send(
            stack
                .client
                .get(format!(
                    "{}/api/orders/{}/events",
                    stack.orders,
                    Uuid::now_v7()
                ))
                .bearer_auth(&owner.token),
        )
        .await?;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    Ok(())
}
