//! The order replica from `order.events`: only orders awaiting payment can be paid, the
//! replica is rebuilt from the log by a service started late, and redelivered events change
//! nothing.

use contracts::order::{OrderAwaitingPayment, OrderCancelled, OrderPaid, OrderRejected};
use contracts::topics::ORDER_EVENTS;
use mongodb::bson::{Document, doc};
use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{
    GOOD_CARD, TestResult, card, created, eur, order_event, produce, spawn_app, spawn_app_with,
    spawn_replica,
};

#[tokio::test]
async fn orders_that_are_not_awaiting_payment_are_refused_with_409() -> TestResult {
    let app =
        spawn_app_with(|config| config.order_wait = std::time::Duration::from_millis(300)).await;
    let user = app.user_id;

    let reserving = Uuid::now_v7();
    app.order_event(reserving, created(reserving, user, 100))
        .await?;
    app.wait_for_replica(reserving, "pending").await?;
    let early = app.pay("a", reserving, card(GOOD_CARD)).await?;
    assert_eq!(early.status, StatusCode::CONFLICT, "{early:?}");
    assert!(
        early.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not yet ready")),
        "{early:?}"
    );

    let paid = app.awaiting_order(100).await?;
    app.order_event(
        paid,
        OrderPaid {
            order_id: paid,
            user_id: user,
            total: eur(100),
            payment_id: Uuid::now_v7(),
        },
    )
    .await?;
    let cancelled = app.awaiting_order(100).await?;
    app.order_event(
        cancelled,
        OrderCancelled {
            order_id: cancelled,
            user_id: user,
            reason: "customer_request".into(),
        },
    )
    .await?;
    let rejected = Uuid::now_v7();
    app.order_event(rejected, created(rejected, user, 100))
        .await?;
    app.order_event(
        rejected,
        OrderRejected {
            order_id: rejected,
            user_id: user,
            reason: "out_of_stock".into(),
        },
    )
    .await?;
    for (order, status) in [
        (paid, "paid"),
        (cancelled, "cancelled"),
        (rejected, "rejected"),
    ] {
        app.wait_for_replica(order, status).await?;
        let reply = app
            .pay(&format!("k-{status}"), order, card(GOOD_CARD))
            .await?;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{status}: {reply:?}");
        assert!(app.psp_charges(order).await?.is_empty());
    }
    Ok(())
}

#[tokio::test]
async fn a_late_service_builds_its_replica_from_the_log_and_ignores_redeliveries() -> TestResult {
    // The events are on the topic before payment-service first starts.
    let first = spawn_app_with(|config| config.run_order_consumer = false).await;
    let user = first.user_id;
    let order = Uuid::now_v7();
    let awaiting = order_event(
        order,
        OrderAwaitingPayment {
            order_id: order,
            user_id: user,
        },
    )?;
    let records = [
        order_event(order, created(order, user, 1234))?,
        awaiting.clone(),
        // The same record delivered again, as after a producer retry or a replay.
        awaiting.clone(),
    ];
    produce(&first.topic(ORDER_EVENTS), &records).await?;

    let late = spawn_replica(&first, |_| {}).await;
    late.wait_for_replica(order, "awaiting_payment").await?;
    let document = late
        .db
        .collection::<Document>("orders")
        .find_one(doc! {"_id": order.to_string()})
        .await?
        .ok_or_else(|| anyhow::anyhow!("no replica document"))?;
    assert_eq!(document.get_document("total")?.get_i64("amount")?, 1234);
    assert_eq!(document.get_array("events")?.len(), 2, "{document}");

    // An older event arriving again after a newer one does not move the order back.
    late.order_event(order, created(order, user, 1234)).await?;
    let body = serde_json::json!({"order_id": order, "card": card(GOOD_CARD)});
    let paid = late.pay_as(&first.token, "k", &body).await?;
    assert_eq!(paid.body["status"], "succeeded", "{paid:?}");
    assert_eq!(paid.body["amount"]["amount"], 1234);
    Ok(())
}

#[tokio::test]
async fn a_fresh_order_is_awaited_briefly_before_it_is_called_unknown() -> TestResult {
    let app = spawn_app().await;
    let order = Uuid::now_v7();
    let user = app.user_id;
    // Pay first; the order's events arrive while the request waits for the replica.
    let pay = app.pay("fresh", order, card(GOOD_CARD));
    let publish = async {
        app.order_event(order, created(order, user, 300)).await?;
        app.order_event(
            order,
            OrderAwaitingPayment {
                order_id: order,
                user_id: user,
            },
        )
        .await
    };
    let (reply, published) = tokio::join!(pay, publish);
    published?;
    let reply = reply?;
    // Either the replica caught up within ORDER_WAIT_MS (paid), or the answer says it is
    // unknown; never a 500, never a charge without an answer.
    match reply.status {
        StatusCode::CREATED => assert_eq!(reply.body["status"], "succeeded"),
        StatusCode::NOT_FOUND | StatusCode::CONFLICT => {
            assert!(app.psp_charges(order).await?.is_empty())
        }
        other => anyhow::bail!("unexpected {other}: {reply:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_undecodable_order_event_is_dead_lettered_and_the_consumer_goes_on() -> TestResult {
    let app = spawn_app().await;
    app.produce(ORDER_EVENTS, &[("x".into(), b"not json".to_vec())])
        .await?;
    let order = app.awaiting_order(100).await?;
    assert_eq!(
        app.replica_status(order).await?.as_deref(),
        Some("awaiting_payment")
    );
    // The undecodable record and the order's events may sit on different partitions, so the
    // dead letter may be written after the order is applied: wait for it.
    let dead_letters = contracts::topics::dead_letter(&app.topic(ORDER_EVENTS));
    testkit::eventually(std::time::Duration::from_secs(30), || async {
        let dead =
            messaging::testing::read_topic(&crate::helpers::brokers(), &dead_letters).await?;
        anyhow::ensure!(dead.len() == 1, "{} dead letters", dead.len());
        anyhow::ensure!(dead[0].payload == b"not json", "{:?}", dead[0].payload);
        Ok(())
    })
    .await?;
    Ok(())
}

/// Every event the replica applies is announced to the payment requests waiting on it, with
/// the order as the write left it (they decide on it at once, without reading it again); an
/// event applied before is not announced.
#[tokio::test]
async fn each_applied_order_event_is_announced_once_with_the_order_it_left() -> TestResult {
    use payment_service::domain::order_status::OrderStatus;
    use payment_service::store::orders::{OrderDoc, OrderFacts, Orders};
    let app = spawn_app().await;
    let orders = Orders::new(&app.db);
    let mut announced = orders.applied();
    let (order_id, user_id) = (Uuid::now_v7(), Uuid::now_v7());
    let total = contracts::product::Money {
        amount: 500,
        currency: "EUR".into(),
    };
    let seen = |order: Option<std::sync::Arc<OrderDoc>>| {
        order.map(|order| {
            (
                order.id.clone(),
                order.owner(),
                order.status(),
                order.total.clone(),
            )
        })
    };
    let created = OrderFacts {
        event_id: Uuid::now_v7(),
        order_id,
        user_id,
        status: OrderStatus::Pending,
        total: Some(total.clone()),
    };
    assert!(orders.apply(&created).await?);
    assert_eq!(
        seen(announced.try_next()),
        Some((
            order_id.to_string(),
            Some(user_id),
            Some(OrderStatus::Pending),
            Some(total.clone())
        ))
    );
    // The same event again: nothing applied, nothing announced.
    assert!(!orders.apply(&created).await?);
    assert!(announced.try_next().is_none());
    let awaiting = OrderFacts {
        event_id: Uuid::now_v7(),
        status: OrderStatus::AwaitingPayment,
        total: None,
        ..created
    };
    assert!(orders.apply(&awaiting).await?);
    // The total comes from `order.created`, in the document the update returned.
    assert_eq!(
        seen(announced.try_next()),
        Some((
            order_id.to_string(),
            Some(user_id),
            Some(OrderStatus::AwaitingPayment),
            Some(total.clone())
        ))
    );
    // An event out of the usual order (`order.paid` before the replica saw the order) is
    // decided on the document as read, and announced as that write left it too.
    let other = Uuid::now_v7();
    let paid_first = OrderFacts {
        event_id: Uuid::now_v7(),
        order_id: other,
        user_id,
        status: OrderStatus::Paid,
        total: None,
    };
    assert!(orders.apply(&paid_first).await?);
    assert_eq!(
        seen(announced.try_next()),
        Some((
            other.to_string(),
            Some(user_id),
            Some(OrderStatus::Paid),
            None
        ))
    );
    Ok(())
}

/// Readiness while the order log is replayed: a replica whose group has not read the log as it
/// stood at the first probe is not ready (it would decide payments on orders it has not read,
/// and charge one that was cancelled meanwhile, then refund it); it turns ready once the group
/// has, and stays so.
#[tokio::test]
async fn a_replica_is_not_ready_until_its_group_has_replayed_the_order_log() -> TestResult {
    // No consumer anywhere yet: the record waits in the log.
    let app = spawn_app_with(|config| config.run_order_consumer = false).await;
    let order = Uuid::now_v7();
    app.order_event(order, created(order, app.user_id, 100))
        .await?;
    let ready = format!("{}/health/ready", app.address);
    let readiness = |client: reqwest::Client, url: String| async move {
        let reply = client.get(url).send().await?;
        let status = reply.status();
        let body: serde_json::Value = reply.json().await?;
        anyhow::Ok((status, body))
    };
    let (status, body) = readiness(app.client.clone(), ready.clone()).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["replicas"]["status"], "down", "{body}");
    assert!(
        body["checks"]["replicas"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("replaying the log")),
        "{body}"
    );
    // A replica that consumes brings the group, and so this one, up to date.
    let _consumer = spawn_replica(&app, |_| {}).await;
    crate::helpers::eventually(crate::helpers::DEADLINE, || {
        let request = readiness(app.client.clone(), ready.clone());
        async move {
            let (status, body) = request.await?;
            anyhow::ensure!(status == StatusCode::OK, "{body}");
            anyhow::ensure!(body["checks"]["replicas"]["status"] == "up", "{body}");
            Ok(())
        }
    })
    .await?;
    Ok(())
}
