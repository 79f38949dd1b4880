//! Review of risky orders: the risk table classifies each new order once; a `review` order
//! waits `REVIEW` with its stock held until an admin approves it (AWAITING_PAYMENT) or
//! rejects it (REJECTED, stock released), or its review times out. The review amount is
//! lowered per test, so only these tests' orders are risky.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Customer, Stack, TestResult, spawn_stack, spawn_stack_with};

/// Every order at or above 50.00 is reviewed in these tests (default: 10,000.00).
const REVIEW_AMOUNT: i64 = 5_000;

async fn risky_stack(review_timeout: &str) -> Stack {
    let review_timeout = review_timeout.to_owned();
    spawn_stack_with(move |config| {
        config.review_amount = REVIEW_AMOUNT;
        config.review_timeout = review_timeout;
    })
    .await
}

impl Stack {
    async fn risk_of(&self, order: Uuid) -> anyhow::Result<(Option<String>, Option<String>)> {
        Ok(
            sqlx::query_as("SELECT risk, risk_reason FROM orders WHERE id = $1")
                .bind(order)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Waits until the held `order` appears among the approvals; returns the item.
    async fn review_of(&self, order: Uuid) -> anyhow::Result<Value> {
        self.approval("order_review", order).await
    }

    /// The engine's task for deciding the held `order`.
    async fn review_task(&self, order: Uuid) -> anyhow::Result<String> {
        let item = self.review_of(order).await?;
        Ok(item["task_id"].as_str().unwrap_or_default().to_owned())
    }

    /// A risky order of 2 units at 30.00, held in review; returns (customer, order, product).
    async fn held_order(&self) -> anyhow::Result<(Customer, Uuid, Uuid)> {
        let product = self.product(10, 3_000, "EUR").await?;
        let customer = self.customer();
        let order = self.placed(&customer, &[(product, 2)]).await?;
        let held = self.wait_for_status(&customer, order, "REVIEW").await?;
        assert_eq!(held["status_reason"], "risk_review");
        assert!(held.get("expires_at").is_none(), "{held}");
        // The reservation is held while the order waits.
        assert_eq!(self.stock(product).await?, (8, 2, 0));
        Ok((customer, order, product))
    }
}

#[tokio::test]
async fn an_ordinary_order_is_accepted_by_the_table_and_goes_straight_to_payment() -> TestResult {
    let stack = risky_stack("P2D").await;
    let (_, order, _) = stack.awaiting_order(1_000).await?;
    assert_eq!(
        stack.risk_of(order).await?,
        (Some("accept".into()), Some("low_risk".into()))
    );
    let types = stack.order_event_types(order, 2).await?;
    assert_eq!(types, ["order.created.v1", "order.awaiting_payment.v1"]);
    Ok(())
}

#[tokio::test]
async fn an_admin_approves_a_held_order_and_the_checkout_goes_on() -> TestResult {
    let stack = risky_stack("P2D").await;
    let (customer, order, product) = stack.held_order().await?;
    assert_eq!(
        stack.risk_of(order).await?,
        (Some("review".into()), Some("large_amount".into()))
    );
    let item = stack.review_of(order).await?;
    assert_eq!(item["kind"], "order_review");
    assert_eq!(item["order_review"]["risk_reason"], "large_amount");
    assert_eq!(item["order_review"]["total"]["amount"], 6_000);
    assert_eq!(item["order_review"]["shipping_country"], "GB");
    assert!(item.get("refund_request").is_none(), "{item}");
    let task = item["task_id"].as_str().unwrap_or_default().to_owned();

    // The customer cannot pay while the order is held, nor decide it.
    let as_customer = stack
        .send(
            stack
                .client
                .post(format!("{}/api/admin/approvals/{task}", stack.orders))
                .bearer_auth(&customer.token)
                .json(&json!({"decision": "approve"})),
        )
        .await?;
    assert_eq!(as_customer.status, StatusCode::FORBIDDEN, "{as_customer:?}");

    let decided = stack
        .decide(
            &task,
            json!({"decision": "approve", "comment": "known customer"}),
        )
        .await?;
    assert_eq!(decided.status, StatusCode::OK, "{decided:?}");
    assert_eq!(decided.body["order_id"], json!(order));
    assert_eq!(decided.body["review_comment"], "known customer");
    let approved = stack
        .wait_for_status(&customer, order, "AWAITING_PAYMENT")
        .await?;
    assert!(approved.get("expires_at").is_some(), "{approved}");
    assert_eq!(stack.stock(product).await?, (8, 2, 0));
    assert_eq!(
        stack.order_event_types(order, 3).await?,
        [
            "order.created.v1",
            "order.in_review.v1",
            "order.awaiting_payment.v1"
        ]
    );
    // Decided tasks are gone: a second decision is a 404.
    let again = stack.decide(&task, json!({"decision": "reject"})).await?;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{again:?}");
    Ok(())
}

#[tokio::test]
async fn an_admin_rejects_a_held_order_its_stock_returns_and_the_customer_is_told() -> TestResult {
    let stack = risky_stack("P2D").await;
    let (customer, order, product) = stack.held_order().await?;
    let task = stack.review_task(order).await?;
    let bad = stack.decide(&task, json!({"decision": "maybe"})).await?;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    let decided = stack
        .decide(
            &task,
            json!({"decision": "reject", "comment": "card testing pattern"}),
        )
        .await?;
    assert_eq!(decided.status, StatusCode::OK, "{decided:?}");
    let rejected = stack.wait_for_status(&customer, order, "REJECTED").await?;
    assert_eq!(rejected["status_reason"], "review_rejected");
    // Released.
    stack.wait_for_stock(product, (10, 0, 0)).await?;
    // order.rejected carries the reason notification-service words in the customer's mail.
    let events = stack.order_events().await?;
    let event = events
        .iter()
        .find(|r| r.event.event_type == "order.rejected.v1" && r.event.subject == order.to_string())
        .ok_or_else(|| anyhow::anyhow!("no order.rejected"))?;
    assert_eq!(event.event.data["reason"], "review_rejected");
    assert_eq!(event.event.data["user_id"], json!(customer.id));
    Ok(())
}

#[tokio::test]
async fn a_held_order_nobody_reviews_is_rejected_when_its_timer_fires() -> TestResult {
    let stack = risky_stack("PT1S").await;
    let (customer, order, product) = stack.held_order().await?;
    let rejected = stack.wait_for_status(&customer, order, "REJECTED").await?;
    assert_eq!(rejected["status_reason"], "review_timeout");
    // Released.
    stack.wait_for_stock(product, (10, 0, 0)).await?;
    Ok(())
}

#[tokio::test]
async fn a_customer_may_cancel_a_held_order_and_a_late_decision_is_refused() -> TestResult {
    let stack = risky_stack("P2D").await;
    let (customer, order, product) = stack.held_order().await?;
    let task = stack.review_task(order).await?;
    let cancelled = stack.cancel(&customer, order).await?;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["status"], "CANCELLED");
    let late = stack.decide(&task, json!({"decision": "approve"})).await?;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    // Released.
    stack.wait_for_stock(product, (10, 0, 0)).await?;
    Ok(())
}

#[tokio::test]
async fn without_the_engine_small_orders_pass_unchecked_and_large_ones_wait() -> TestResult {
    let mut stack = crate::helpers::spawn_catalog().await;
    let dead = testkit::ClosedPort::new()?;
    stack
        .start_orders(|config| {
            config.review_amount = REVIEW_AMOUNT;
            config.workflow_engine_url = dead.url();
        })
        .await;
    let small = stack.product(10, 1_000, "EUR").await?;
    let large = stack.product(10, 6_000, "EUR").await?;
    let customer = stack.customer();

    let passed = stack.placed(&customer, &[(small, 1)]).await?;
    stack
        .wait_for_status(&customer, passed, "AWAITING_PAYMENT")
        .await?;
    assert_eq!(
        stack.risk_of(passed).await?,
        (
            Some("unchecked".into()),
            Some("risk_check_unavailable".into())
        )
    );

    let held = stack.placed(&customer, &[(large, 1)]).await?;
    stack.wait_for_status(&customer, held, "REVIEW").await?;
    assert_eq!(
        stack.risk_of(held).await?,
        (Some("review".into()), Some("risk_check_unavailable".into()))
    );
    // Its process waits for the engine; the order keeps its stock meanwhile.
    let process: Option<String> =
        sqlx::query_scalar("SELECT review_process_id FROM orders WHERE id = $1")
            .bind(held)
            .fetch_one(&stack.pool)
            .await?;
    assert_eq!(process, None);
    assert_eq!(stack.stock(large).await?, (9, 1, 0));
    Ok(())
}

#[tokio::test]
async fn the_default_review_amount_leaves_ordinary_orders_alone() -> TestResult {
    let stack = spawn_stack().await;
    let (_, order, _) = stack.awaiting_order(99_999).await?;
    assert_eq!(stack.risk_of(order).await?.0.as_deref(), Some("accept"));
    Ok(())
}

/// The risk table is evaluated in-process from the engine's deployed XML: once fetched, the
/// verdicts are the table's even when the engine cannot be reached (the client below points
/// at a closed port), where the engine-only path would fall back to `unchecked`.
#[tokio::test]
async fn once_fetched_the_risk_table_decides_without_the_engine() -> TestResult {
    use order_service::risk::{RiskSettings, RiskTable, classify};
    let stack = risky_stack("P2D").await;
    let table = RiskTable::default();
    assert!(table.current().is_none());
    let engine = workflow::EngineClient::new(&testkit::stack::workflow_engine_url())?;
    assert!(
        table.refresh(&engine).await?,
        "the repository's table is inside the in-process subset"
    );
    let unreachable = workflow::EngineClient::new("http://127.0.0.1:9")?;
    let settings = RiskSettings {
        review_amount: REVIEW_AMOUNT,
        check_timeout: std::time::Duration::from_secs(1),
        review_timeout: "P2D".into(),
        start_interval: std::time::Duration::from_secs(1),
    };
    let customer = Uuid::new_v4(); // unknown to the replica: an account 0 days old
    let cases = [
        (100, "DE", "accept", "low_risk"),
        (REVIEW_AMOUNT, "DE", "review", "large_amount"),
        (REVIEW_AMOUNT / 2, "DE", "review", "new_account"),
        (REVIEW_AMOUNT / 4, "BR", "review", "shipping_country"),
    ];
    for (amount, country, risk, reason) in cases {
        let verdict = classify(
            &stack.pool,
            &table,
            &unreachable,
            &settings,
            customer,
            amount,
            country,
        )
        .await?;
        assert_eq!(
            (verdict.risk.as_str(), verdict.reason.as_str()),
            (risk, reason),
            "{amount} to {country}"
        );
    }
    // Without the table, the same unreachable engine gives the fallback's verdict.
    let fallback = classify(
        &stack.pool,
        &RiskTable::default(),
        &unreachable,
        &settings,
        customer,
        100,
        "DE",
    )
    .await?;
    assert_eq!(fallback.risk.as_str(), "unchecked");
    Ok(())
}

/// The risk check gives its database connection back before it asks the engine: with a pool
/// of one connection and an engine that accepts the call and never answers, the connection can
/// be had while the check waits. (Held through the call, the orders in flight emptied the pool
/// while the engine was slow, and every other request answered 503 "busy".)
#[tokio::test]
async fn the_risk_check_holds_no_connection_while_it_asks_the_engine() -> TestResult {
    use order_service::risk::{RiskSettings, RiskTable, classify};
    use sqlx::postgres::PgPoolOptions;
    let stack = risky_stack("P2D").await;
    let one_connection = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with((*stack.pool.connect_options()).clone())
        .await?;
    let silent_engine = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let engine = workflow::EngineClient::new(&format!("http://{}", silent_engine.local_addr()?))?;
    let settings = RiskSettings {
        review_amount: REVIEW_AMOUNT,
        check_timeout: std::time::Duration::from_secs(60),
        review_timeout: "P2D".into(),
        start_interval: std::time::Duration::from_secs(1),
    };
    // Without a table every check asks the engine.
    let table = RiskTable::default();
    let check = classify(
        &one_connection,
        &table,
        &engine,
        &settings,
        Uuid::new_v4(),
        100,
        "DE",
    );
    let meanwhile = async {
        // The engine's call has begun once its connection arrives; keep it open, unanswered.
        let (_unanswered, _) = silent_engine.accept().await?;
        let mut conn = one_connection.acquire().await?;
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await?;
        anyhow::Ok(one)
    };
    tokio::select! {
        verdict = check => anyhow::bail!("the check ended before the engine answered: {verdict:?}"),
        read = meanwhile => assert_eq!(read?, 1, "the pool's one connection was free during the call"),
    }
    Ok(())
}
