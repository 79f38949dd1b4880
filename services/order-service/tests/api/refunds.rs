//! Refund requests against the real workflow engine: who may ask and when (404, 409, 422),
//! one open request per order, the process started with the order as business key and its
//! progress shown, and a 503 with nothing kept while the engine is unreachable.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Customer, DEADLINE, Reply, Stack, TestResult, eventually, spawn_stack, succeeded,
};

impl Stack {
    pub async fn request_refund_at(
        &self,
        base: &str,
        customer: &Customer,
        order: Uuid,
        body: Value,
    ) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .post(format!("{base}/api/orders/{order}/refund-requests"))
                .bearer_auth(&customer.token)
                .json(&body),
        )
        .await
    }

    pub async fn request_refund(
        &self,
        customer: &Customer,
        order: Uuid,
        body: Value,
    ) -> anyhow::Result<Reply> {
        self.request_refund_at(&self.orders, customer, order, body)
            .await
    }

    pub async fn refund_requests(&self, customer: &Customer, order: Uuid) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .get(format!(
                    "{}/api/orders/{order}/refund-requests",
                    self.orders
                ))
                .bearer_auth(&customer.token),
        )
        .await
    }

    /// A PAID order of a new customer (the payment event as payment-service publishes it).
    async fn paid_order(&self) -> anyhow::Result<(Customer, Uuid, Uuid)> {
        let (customer, id, kettle) = self.awaiting_order(2_999).await?;
        self.produce(id, vec![succeeded(id, customer.id, 2_999)])
            .await?;
        self.wait_for_status(&customer, id, "PAID").await?;
        Ok((customer, id, kettle))
    }
}

#[tokio::test]
async fn only_the_owner_of_a_paid_order_within_the_window_may_ask() -> TestResult {
    let stack = spawn_stack().await;
    let (customer, unpaid, _) = stack.awaiting_order(2_999).await?;
    let reply = stack
        .request_refund(&customer, unpaid, json!({"reason": "damaged"}))
        .await?;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{reply:?}");
    assert!(
        reply.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("AWAITING_PAYMENT"))
    );

    let (owner, paid, product) = stack.paid_order().await?;
    let stranger = stack.customer();
    let reply = stack
        .request_refund(&stranger, paid, json!({"reason": "damaged"}))
        .await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    assert_eq!(
        stack.refund_requests(&stranger, paid).await?.status,
        StatusCode::NOT_FOUND
    );
    let reply = stack
        .request_refund(&owner, Uuid::now_v7(), json!({"reason": "damaged"}))
        .await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");

    // Bad input names the field.
    let reply = stack
        .request_refund(&owner, paid, json!({"reason": "bored"}))
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.body["errors"][0]["field"], "reason");
    let reply = stack
        .request_refund(
            &owner,
            paid,
            json!({"reason": "damaged", "items": [{"product_id": Uuid::now_v7(), "quantity": 1}]}),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.body["errors"][0]["field"], "items[0].product_id");
    let reply = stack
        .request_refund(
            &owner,
            paid,
            json!({"reason": "damaged", "items": [{"product_id": product, "quantity": 2}]}),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    let reply = stack
        .request_refund(&owner, paid, json!({"reason": "damaged", "extra": 1}))
        .await?;
    assert!(reply.status.is_client_error(), "{reply:?}");

    // A replica whose return window is zero days: the payment is already too long ago.
    let closed = stack.replica(|config| config.refund_window_days = 0).await;
    let reply = stack
        .request_refund_at(&closed, &owner, paid, json!({"reason": "damaged"}))
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert!(
        reply.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("return window")),
        "{reply:?}"
    );
    // Nothing was kept by the refusals.
    let list = stack.refund_requests(&owner, paid).await?;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"], json!([]));
    Ok(())
}

#[tokio::test]
async fn a_request_starts_the_refund_process_and_a_second_open_one_is_a_conflict() -> TestResult {
    let stack = spawn_stack().await;
    let (owner, paid, product) = stack.paid_order().await?;
    let reply = stack
        .request_refund(
            &owner,
            paid,
            json!({"reason": "damaged", "items": [{"product_id": product, "quantity": 1}]}),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body["status"], "OPEN");
    assert_eq!(reply.body["order_id"], json!(paid));
    assert_eq!(
        reply.body["amount"],
        json!({"amount": 2_999, "currency": "EUR"})
    );
    let process = reply.body["process_instance_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!process.is_empty(), "{reply:?}");

    let again = stack
        .request_refund(&owner, paid, json!({"reason": "other"}))
        .await?;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");

    // The decision table approved it (small, first refund, damaged goods); the process now
    // waits for payment-service's refund step, which no worker of this test's namespace takes.
    eventually(DEADLINE, || async {
        let list = stack.refund_requests(&owner, paid).await?;
        anyhow::ensure!(list.status == StatusCode::OK, "{list:?}");
        let steps: Vec<(String, bool)> = list.body["items"][0]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["activity"].as_str().unwrap_or_default().to_owned(),
                    s.get("ended_at").is_some(),
                )
            })
            .collect();
        anyhow::ensure!(
            steps.contains(&("decide".into(), true)) && steps.contains(&("pay-back".into(), false)),
            "steps {steps:?}"
        );
        anyhow::ensure!(
            !steps.iter().any(|(a, _)| a == "approve"),
            "went to review: {steps:?}"
        );
        Ok(())
    })
    .await?;
    let order = stack.order(&owner, paid).await?;
    assert_eq!(order.body["status"], "PAID");
    let engine = workflow::EngineClient::new(&testkit::stack::workflow_engine_url())?;
    assert_eq!(
        engine.historic_variable(&process, "orderId").await?,
        Some(json!(paid.to_string()))
    );
    Ok(())
}

#[tokio::test]
async fn without_the_engine_a_request_is_a_503_and_nothing_is_kept() -> TestResult {
    let stack = spawn_stack().await;
    let (owner, paid, _) = stack.paid_order().await?;
    let dead = testkit::ClosedPort::new()?;
    let cut_off = stack
        .replica(|config| config.workflow_engine_url = dead.url())
        .await;
    let reply = stack
        .request_refund_at(&cut_off, &owner, paid, json!({"reason": "changed_mind"}))
        .await?;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.body["status"], 503);
    assert_eq!(reply.retry_after(), Some("5"), "{reply:?}");
    // No open request was left behind: the healthy instance accepts the retry.
    let reply = stack
        .request_refund(&owner, paid, json!({"reason": "changed_mind"}))
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    Ok(())
}

impl Stack {
    pub(crate) async fn approvals(&self) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .get(format!("{}/api/admin/approvals", self.orders))
                .bearer_auth(&self.admin_token),
        )
        .await
    }

    pub(crate) async fn decide(&self, task: &str, body: Value) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .post(format!("{}/api/admin/approvals/{task}", self.orders))
                .bearer_auth(&self.admin_token)
                .json(&body),
        )
        .await
    }

    /// Waits until an approval of `kind` (`refund_request`, `order_review`) for `order`
    /// appears among the admin's approvals; returns the item.
    pub(crate) async fn approval(&self, kind: &str, order: Uuid) -> anyhow::Result<Value> {
        let found = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
        let slot = found.clone();
        eventually(DEADLINE, move || {
            let slot = slot.clone();
            async move {
                let list = self.approvals().await?;
                anyhow::ensure!(list.status == StatusCode::OK, "{list:?}");
                let item = list.body["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|item| item[kind]["order_id"] == json!(order))
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("no {kind} of {order} yet"))?;
                if let Ok(mut slot) = slot.lock() {
                    *slot = item;
                }
                Ok(())
            }
        })
        .await?;
        let item = found.lock().map(|item| item.clone()).unwrap_or(Value::Null);
        Ok(item)
    }

    /// Waits until the refund request of `order` appears among the approvals; returns its
    /// task id.
    async fn approval_of(&self, order: Uuid) -> anyhow::Result<String> {
        let item = self.approval("refund_request", order).await?;
        Ok(item["task_id"].as_str().unwrap_or_default().to_owned())
    }

    /// A PAID order with a refund request waiting for an admin ("not received" always goes
    /// to a person); returns (owner, order).
    async fn refund_for_review(&self) -> anyhow::Result<(Customer, Uuid)> {
        let (owner, paid, _) = self.paid_order().await?;
        let reply = self
            .request_refund(&owner, paid, json!({"reason": "not_received"}))
            .await?;
        anyhow::ensure!(reply.status == StatusCode::CREATED, "{reply:?}");
        Ok((owner, paid))
    }

    /// Waits until the (first) refund request of `order` has `status`.
    async fn wait_for_refund_status(
        &self,
        owner: &Customer,
        order: Uuid,
        status: &str,
    ) -> TestResult {
        eventually(DEADLINE, || async {
            let list = self.refund_requests(owner, order).await?;
            anyhow::ensure!(list.body["items"][0]["status"] == status, "{list:?}");
            Ok(())
        })
        .await
    }

    /// The `order.refund_rejected` event this stack's order-service published.
    async fn refund_rejected_event(&self) -> anyhow::Result<Value> {
        self.order_events()
            .await?
            .into_iter()
            .find(|record| record.event.event_type == "order.refund_rejected.v1")
            .map(|record| record.event.data)
            .ok_or_else(|| anyhow::anyhow!("no rejection event"))
    }
}

#[tokio::test]
async fn an_admin_rejects_a_reviewed_request_and_the_customer_is_told_why() -> TestResult {
    let stack = spawn_stack().await;
    let (owner, paid) = stack.refund_for_review().await?;
    let task = stack.approval_of(paid).await?;

    // Customers may not decide, and bad decisions name the field.
    let as_customer = stack
        .send(
            stack
                .client
                .get(format!("{}/api/admin/approvals", stack.orders))
                .bearer_auth(&owner.token),
        )
        .await?;
    assert_eq!(as_customer.status, StatusCode::FORBIDDEN, "{as_customer:?}");
    let reply = stack.decide(&task, json!({"decision": "maybe"})).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.body["errors"][0]["field"], "decision");
    let reply = stack
        .decide(&Uuid::new_v4().to_string(), json!({"decision": "approve"}))
        .await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");

    let reply = stack
        .decide(
            &task,
            json!({"decision": "reject", "comment": "The parcel was signed for."}),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // Decided once: the task is gone.
    let again = stack.decide(&task, json!({"decision": "approve"})).await?;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{again:?}");

    stack
        .wait_for_refund_status(&owner, paid, "REJECTED")
        .await?;
    assert_eq!(stack.order(&owner, paid).await?.body["status"], "PAID");
    let types = stack.order_event_types(paid, 4).await?;
    assert_eq!(
        types.last().map(String::as_str),
        Some("order.refund_rejected.v1"),
        "{types:?}"
    );
    let rejected = stack.refund_rejected_event().await?;
    assert_eq!(rejected["comment"], "The parcel was signed for.");
    assert_eq!(rejected["reason"], "not_received");
    // Closed: a new request may be filed.
    let reply = stack
        .request_refund(&owner, paid, json!({"reason": "other"}))
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    Ok(())
}

#[tokio::test]
async fn an_admin_approves_a_reviewed_request_and_the_refund_goes_ahead() -> TestResult {
    let stack = spawn_stack().await;
    let (owner, paid) = stack.refund_for_review().await?;
    let task = stack.approval_of(paid).await?;
    let reply = stack.decide(&task, json!({"decision": "approve"})).await?;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // The process moved on to payment-service's refund step.
    eventually(DEADLINE, || async {
        let list = stack.refund_requests(&owner, paid).await?;
        let steps: Vec<String> = list.body["items"][0]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["activity"].as_str().map(str::to_owned))
            .collect();
        anyhow::ensure!(
            steps.contains(&"approve".to_owned()) && steps.contains(&"pay-back".to_owned()),
            "steps {steps:?}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_approval_nobody_decides_is_rejected_when_its_timer_fires() -> TestResult {
    let stack = crate::helpers::spawn_stack_with(|config| {
        config.refund_approval_timeout = "PT1S".into();
    })
    .await;
    let (owner, paid) = stack.refund_for_review().await?;
    stack
        .wait_for_refund_status(&owner, paid, "REJECTED")
        .await?;
    let rejected = stack.refund_rejected_event().await?;
    assert_eq!(rejected["comment"], "approval_timeout");
    assert_eq!(stack.order(&owner, paid).await?.body["status"], "PAID");
    Ok(())
}

#[tokio::test]
async fn a_request_abandoned_before_its_process_started_does_not_block_the_order() -> TestResult {
    let stack = spawn_stack().await;
    let (owner, paid, _) = stack.paid_order().await?;
    // As a crash between storing the request and starting its process leaves it.
    let insert = |age: &'static str| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO refund_requests (id, order_id, user_id, reason, amount, currency, status, created_at) \
             VALUES ($1, $2, $3, 'damaged', 2999, 'EUR', 'OPEN', now() - interval '{age}')"
        )))
        .bind(Uuid::now_v7())
        .bind(paid)
        .bind(owner.id)
    };
    insert("10 seconds").execute(&stack.pool).await?;
    // Recent: it may still be starting, so it counts as open.
    let reply = stack
        .request_refund(&owner, paid, json!({"reason": "damaged"}))
        .await?;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{reply:?}");
    sqlx::query("DELETE FROM refund_requests")
        .execute(&stack.pool)
        .await?;
    insert("10 minutes").execute(&stack.pool).await?;
    let reply = stack
        .request_refund(&owner, paid, json!({"reason": "damaged"}))
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let list = stack.refund_requests(&owner, paid).await?;
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(1),
        "{list:?}"
    );
    Ok(())
}
