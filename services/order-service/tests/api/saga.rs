//! The saga as order-service plays it: reservation answers from the real product-service,
//! payment events as payment-service publishes them (its contract, put on the broker here),
//! redelivery, expiry with several replicas, and the replica rebuilt from the log.

use std::time::Duration;

use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{
    DEADLINE, Stack, TestResult, eventually, spawn_stack, spawn_stack_with, succeeded,
};

async fn count(stack: &Stack, sql: &'static str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(&stack.pool).await?)
}

/// Moves to `PAID` recorded in the orders' history: one per order paid, however often its
/// payment was delivered.
async fn paid_history_rows(stack: &Stack) -> anyhow::Result<i64> {
    count(
        stack,
        "SELECT count(*) FROM order_history WHERE status = 'PAID'",
    )
    .await
}

#[tokio::test]
async fn one_short_line_of_three_rejects_the_order_and_reserves_nothing() -> TestResult {
    let stack = spawn_stack().await;
    let plenty = stack.product(10, 100, "EUR").await?;
    let enough = stack.product(3, 100, "EUR").await?;
    let scarce = stack.product(1, 100, "EUR").await?;
    let customer = stack.customer();
    let id = stack
        .placed(&customer, &[(plenty, 2), (enough, 3), (scarce, 2)])
        .await?;
    let order = stack.wait_for_status(&customer, id, "REJECTED").await?;
    assert_eq!(order["status_reason"], "out_of_stock");
    assert!(order.get("expires_at").is_none());
    for (product, stock) in [(plenty, 10), (enough, 3), (scarce, 1)] {
        assert_eq!(stack.stock(product).await?, (stock, 0, 0));
    }
    assert_eq!(
        stack.order_event_types(id, 2).await?,
        ["order.created.v1", "order.rejected.v1"]
    );
    let reply = stack.cancel(&customer, id).await?;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    Ok(())
}

#[tokio::test]
async fn a_redelivered_payment_pays_once_and_the_stock_is_sold() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let customer = stack.customer();
    let id = stack.placed(&customer, &[(kettle, 2)]).await?;
    stack
        .wait_for_status(&customer, id, "AWAITING_PAYMENT")
        .await?;

    let payment = succeeded(id, customer.id, 5_998);
    let payment_id = payment.data.payment_id;
    // The same event (same id) twice, as after a producer retry or a consumer crash.
    stack.produce(id, vec![payment.clone(), payment]).await?;
    let order = stack.wait_for_status(&customer, id, "PAID").await?;
    assert_eq!(order["payment_id"], serde_json::json!(payment_id));
    eventually(DEADLINE, || async {
        let stock = stack.stock(kettle).await?;
        anyhow::ensure!(stock == (8, 0, 2), "stock {stock:?}");
        Ok(())
    })
    .await?;
    let types = stack.order_event_types(id, 3).await?;
    assert_eq!(
        types,
        [
            "order.created.v1",
            "order.awaiting_payment.v1",
            "order.paid.v1"
        ]
    );
    let paid = stack
        .order_events()
        .await?
        .into_iter()
        .find(|record| record.event.event_type == "order.paid.v1")
        .ok_or_else(|| anyhow::anyhow!("no order.paid"))?;
    assert_eq!(paid.event.data["total"]["amount"], 5_998);
    assert_eq!(paid.event.data["user_id"], serde_json::json!(customer.id));

    // A paid order cannot be cancelled, and a second, different payment event changes nothing.
    assert_eq!(
        stack.cancel(&customer, id).await?.status,
        StatusCode::CONFLICT
    );
    stack
        .produce(id, vec![succeeded(id, customer.id, 5_998)])
        .await?;
    let processed = count(&stack, "SELECT count(*) FROM processed_events").await;
    eventually(DEADLINE, || async {
        let n = count(&stack, "SELECT count(*) FROM processed_events").await?;
        // reserved + two distinct payment events
        anyhow::ensure!(n >= 3, "{n} processed ({processed:?} before)");
        Ok(())
    })
    .await?;
    assert_eq!(paid_history_rows(&stack).await?, 1);
    Ok(())
}

#[tokio::test]
async fn unpaid_orders_expire_once_even_with_three_replicas_and_release_their_stock() -> TestResult
{
    let short = |config: &mut order_service::config::Config| {
        config.payment_timeout = Duration::from_secs(2);
        // Only the payment wait is short: a slow reservation on a loaded machine must not
        // expire the order before it awaits payment.
        config.reservation_timeout = Duration::from_secs(120);
        config.expiry_interval = Duration::from_millis(100);
        // Ten unpaid orders of one customer: above the default limit of open orders.
        config.max_open_orders_per_user = 10;
    };
    let stack = spawn_stack_with(short).await;
    stack.replica(short).await;
    stack.replica(short).await;
    let kettle = stack.product(50, 100, "EUR").await?;
    let customer = stack.customer();
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(stack.placed(&customer, &[(kettle, 2)]).await?);
    }
    for id in &ids {
        let order = stack.wait_for_status(&customer, *id, "CANCELLED").await?;
        assert_eq!(order["status_reason"], "payment_timeout", "{order}");
    }
    eventually(DEADLINE, || async {
        let stock = stack.stock(kettle).await?;
        anyhow::ensure!(stock == (50, 0, 0), "stock {stock:?}");
        Ok(())
    })
    .await?;
    for id in &ids {
        let types = stack.order_event_types(*id, 3).await?;
        assert_eq!(
            types,
            [
                "order.created.v1",
                "order.awaiting_payment.v1",
                "order.cancelled.v1"
            ],
            "order {id}"
        );
    }
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM order_history WHERE status = 'CANCELLED'"
        )
        .await?,
        10
    );

    // A payment that lands after the expiry leaves the order cancelled (payment-service
    // refunds it).
    stack
        .produce(ids[0], vec![succeeded(ids[0], customer.id, 200)])
        .await?;
    eventually(DEADLINE, || async {
        let n = count(
            &stack,
            "SELECT count(*) FROM processed_events WHERE consumer = 'order-service.saga'",
        )
        .await?;
        anyhow::ensure!(n == 11, "{n} processed");
        Ok(())
    })
    .await?;
    assert_eq!(
        stack.order(&customer, ids[0]).await?.body["status"],
        "CANCELLED"
    );
    Ok(())
}

#[tokio::test]
async fn a_service_started_late_rebuilds_its_replica_from_the_log() -> TestResult {
    // The catalog exists and changed before order-service ever ran.
    let mut stack = crate::helpers::spawn_catalog().await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let reply = stack
        .send(
            stack
                .client
                .patch(format!("{}/api/products/{kettle}", stack.products))
                .bearer_auth(&stack.admin_token)
                .json(&serde_json::json!({"version": 1, "price": {"amount": 3_100, "currency": "EUR"}})),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // "Before" means in the log: the relay publishes the change after the PATCH answers, and
    // an order placed between the two snapshots would rightly be priced from the first.
    stack.product_event_types(kettle, 2).await?;

    stack.start_orders(|_| {}).await;
    // Ready means replayed up to where the log stood at start: both snapshots applied, so
    // the order cannot be priced from the first (a CI run placed one before the second).
    let ready = format!("{}/health/ready", stack.orders);
    let client = stack.client.clone();
    eventually(DEADLINE, move || {
        let request = client.get(&ready).send();
        async move {
            let reply = request.await?;
            let status = reply.status();
            let body: serde_json::Value = reply.json().await?;
            anyhow::ensure!(status == StatusCode::OK, "{body}");
            anyhow::ensure!(body["checks"]["replicas"]["status"] == "up", "{body}");
            Ok(())
        }
    })
    .await?;
    let customer = stack.customer();
    let orders = stack.orders.clone();
    let id = eventually_placed(&stack, &orders, &customer, kettle).await?;
    let reply = stack.order(&customer, id).await?;
    assert_eq!(reply.body["total"]["amount"], 3_100, "{reply:?}");
    Ok(())
}

/// Places an order on `orders` once its replica knows `product`.
async fn eventually_placed(
    stack: &Stack,
    orders: &str,
    customer: &crate::helpers::Customer,
    product: Uuid,
) -> anyhow::Result<Uuid> {
    let placed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = placed.clone();
    eventually(DEADLINE, move || {
        let slot = slot.clone();
        let request = stack.send(
            stack
                .client
                .post(format!("{orders}/api/orders"))
                .bearer_auth(&customer.token)
                .json(&serde_json::json!({
                    "items": [{"product_id": product, "quantity": 1}],
                    "shipping_address": crate::helpers::address(),
                })),
        );
        async move {
            let reply = request.await?;
            anyhow::ensure!(reply.status == StatusCode::CREATED, "{reply:?}");
            let id: Uuid = reply.body["id"].as_str().unwrap_or_default().parse()?;
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(id);
            }
            Ok(())
        }
    })
    .await?;
    let id = placed.lock().ok().and_then(|slot| *slot);
    id.ok_or_else(|| anyhow::anyhow!("no order placed"))
}

/// The saga's shared commit (`events::saga::SagaCommits`) cut off by a crash: the batch's
/// work is done in its transaction, which is dropped instead of committed (what PostgreSQL
/// sees when the process dies before the commit). Nothing of it remains; the records, then
/// delivered again (one of them twice), move each order once. A batch that did commit and is
/// delivered again changes nothing either.
#[tokio::test]
async fn a_batch_cut_off_before_its_commit_leaves_nothing_and_its_redelivery_moves_each_order_once()
-> TestResult {
    let stack = spawn_stack().await;
    let settings = order_service::saga::SagaSettings {
        topics: contracts::topics::Topic::with_prefix(stack.topic_prefix.clone()),
        payment_timeout: Duration::from_secs(900),
        reservation_timeout: Duration::from_secs(900),
        open_orders: order_service::domain::open_orders::OpenOrderLimit { max: 5 },
    };
    let mut orders = Vec::new();
    for amount in [1_000, 2_000, 3_000, 4_000] {
        let (customer, order, _) = stack.awaiting_order(amount).await?;
        let payment = succeeded(order, customer.id, amount);
        orders.push((customer, order, payment));
    }
    let step =
        |order: Uuid, event: &contracts::CloudEvent<contracts::payment::PaymentSucceeded>| {
            let step = order_service::events::saga::SagaStep {
                event_id: event.id,
                order_id: order,
                trigger: order_service::domain::status::Trigger::PaymentSucceeded,
                payment_id: Some(event.data.payment_id),
                cause: "payment.succeeded.v1".to_owned(),
            };
            (step, tracing::Span::none())
        };
    let (cut_off, committed) = orders.split_at(3);
    let batch: Vec<_> = cut_off
        .iter()
        .map(|(_, order, event)| step(*order, event))
        .collect();
    let paid_in_batch = "SELECT count(*) FROM orders WHERE status = 'PAID'";

    let mut crashed = stack.pool.begin().await?;
    order_service::events::saga::apply_batch(&mut crashed, &settings, &batch).await?;
    let inside: i64 = sqlx::query_scalar(paid_in_batch)
        .fetch_one(&mut *crashed)
        .await?;
    assert_eq!(inside, 3, "the batch moved its orders in its transaction");
    drop(crashed);
    assert_eq!(count(&stack, paid_in_batch).await?, 0);
    let saga_processed =
        "SELECT count(*) FROM processed_events WHERE consumer = 'order-service.saga'";
    // The four reservations only.
    assert_eq!(count(&stack, saga_processed).await?, 4);
    assert_eq!(paid_history_rows(&stack).await?, 0);
    for (customer, order, _) in cut_off {
        let reply = stack.order(customer, *order).await?;
        assert_eq!(reply.body["status"], "AWAITING_PAYMENT", "{reply:?}");
    }

    // The last order's batch commits; its record is then delivered again with the others.
    let (_, last, last_event) = &committed[0];
    let mut done = stack.pool.begin().await?;
    order_service::events::saga::apply_batch(&mut done, &settings, &[step(*last, last_event)])
        .await?;
    done.commit().await?;

    for (index, (_, order, event)) in orders.iter().enumerate() {
        let copies = if index == 0 { 2 } else { 1 };
        stack.produce(*order, vec![event.clone(); copies]).await?;
    }
    for (customer, order, event) in &orders {
        let paid = stack.wait_for_status(customer, *order, "PAID").await?;
        assert_eq!(paid["payment_id"], serde_json::json!(event.data.payment_id));
    }
    eventually(DEADLINE, || async {
        let n = count(&stack, saga_processed).await?;
        // Four reservations and four distinct payment events.
        anyhow::ensure!(n == 8, "{n} processed");
        Ok(())
    })
    .await?;
    assert_eq!(paid_history_rows(&stack).await?, 4);
    for (_, order, _) in &orders {
        assert_eq!(
            stack.order_event_types(*order, 3).await?,
            [
                "order.created.v1",
                "order.awaiting_payment.v1",
                "order.paid.v1"
            ]
        );
    }
    Ok(())
}
