//! How many MongoDB writes a paid order costs payment-service (issue 12: the MongoDB-wire
//! server's cost is set by the writes per order). Counted from the driver's command monitoring
//! of the app's own client (`store::commands`), so the test's reads are not in the counts, and
//! a count is deterministic where a time is not. If a change adds a write to the path, this
//! fails: either the write goes, or the count here and in the README's table changes with a
//! reason.

use std::time::Duration;

use contracts::order::{OrderAwaitingPayment, OrderPaid};
use contracts::topics::ORDER_EVENTS;
use mongodb::bson::{self, Document, doc};
use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{
    DEADLINE, GOOD_CARD, TestResult, card, created, eur, eventually, mongodb_url, order_event,
    spawn_app_with, spawn_replica,
};

/// The request and the relay, per paid payment: the claim, the payment's insert, three log
/// lines (creation, attempt, outcome), the outcome with its event, the refund check's
/// clearing, the relay's claim of the document and its removal of the published event.
const WRITES_PER_PAYMENT: u64 = 9;
/// The replica's upsert per order event.
const WRITES_PER_ORDER_EVENT: u64 = 1;
/// The reconciler's follow-up of a settled payment: its claim marked settled.
const WRITES_PER_RECONCILED_PAYMENT: u64 = 1;

#[tokio::test]
async fn a_paid_order_costs_a_fixed_number_of_mongodb_writes() -> TestResult {
    let app = spawn_app_with(|config| {
        // Only what the payments cause: no reconciler passes, and the relay only on its
        // wake-up (the poll over the collection is the safety net, on a timer).
        config.run_reconciler = false;
        config.run_workflow_worker = false;
        config.relay_poll_interval = Duration::from_secs(3_600);
    })
    .await;
    // The test's own client: its reads do not count as the app's.
    let observer = mongodb::Client::with_uri_str(mongodb_url())
        .await?
        .database(app.db.name());
    let orders = 3;
    let mut paid = Vec::new();
    for index in 0..orders {
        let order = Uuid::now_v7();
        let events = [
            order_event(order, created(order, app.user_id, 1_000 + index))?,
            order_event(
                order,
                OrderAwaitingPayment {
                    order_id: order,
                    user_id: app.user_id,
                },
            )?,
        ];
        let start = app.commands.tally();
        app.produce(ORDER_EVENTS, &events).await?;
        wait_for_order(&observer, order, "awaiting_payment").await?;
        let replica = app.commands.tally().since(&start);
        println!("order.created and order.awaiting_payment:\n{replica}");
        assert_eq!(
            replica.writes(),
            2 * WRITES_PER_ORDER_EVENT,
            "order events:\n{replica}"
        );

        let start = app.commands.tally();
        let reply = app
            .pay(&format!("key-{index}"), order, card(GOOD_CARD))
            .await?;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        assert_eq!(reply.body["status"], "succeeded", "{reply:?}");
        wait_for_published(&observer, &reply.id()).await?;
        let payment = app.commands.tally().since(&start);
        println!("one paid payment:\n{payment}");
        assert_eq!(
            payment.writes(),
            WRITES_PER_PAYMENT,
            "one paid payment:\n{payment}"
        );

        let start = app.commands.tally();
        app.order_event(
            order,
            OrderPaid {
                order_id: order,
                user_id: app.user_id,
                total: eur(1_000 + index),
                payment_id: reply.id().parse()?,
            },
        )
        .await?;
        wait_for_order(&observer, order, "paid").await?;
        let replica = app.commands.tally().since(&start);
        println!("order.paid:\n{replica}");
        assert_eq!(
            replica.writes(),
            WRITES_PER_ORDER_EVENT,
            "order.paid:\n{replica}"
        );
        paid.push((order, reply.id()));
    }

    // The reconciler's later look at these payments, in a replica of its own so that its
    // commands are counted apart. Dated back, so that one pass finds them all.
    let long_ago = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - 600_000);
    for (order, payment) in &paid {
        observer
            .collection::<Document>("payment_claims")
            .update_one(
                doc! {"_id": order.to_string()},
                doc! {"$set": {"at": long_ago}},
            )
            .await?;
        observer
            .collection::<Document>("payments")
            .update_one(
                doc! {"_id": payment},
                doc! {"$set": {"updated_at": long_ago}},
            )
            .await?;
    }
    let reconciler = spawn_replica(&app, |config| {
        config.run_outbox_relay = false;
        config.run_order_consumer = false;
        config.run_workflow_worker = false;
        config.reconcile_stale_after = Duration::from_secs(1);
    })
    .await;
    wait_for_follow_up(&observer, &paid).await?;
    let follow_up = reconciler.commands.tally();
    println!("the reconciler's follow-up of {orders} payments:\n{follow_up}");
    assert!(
        follow_up.writes() <= WRITES_PER_RECONCILED_PAYMENT * orders as u64,
        "the reconciler's follow-up of {orders} payments:\n{follow_up}"
    );
    Ok(())
}

async fn wait_for_order(db: &mongodb::Database, order: Uuid, status: &str) -> TestResult {
    eventually(DEADLINE, || async move {
        let found = db
            .collection::<Document>("orders")
            .find_one(doc! {"_id": order.to_string(), "status": status})
            .await?;
        anyhow::ensure!(found.is_some(), "order {order} not {status} yet");
        Ok(())
    })
    .await
}

/// Until the relay has published the payment's events and said so in the document (its last
/// write for them).
async fn wait_for_published(db: &mongodb::Database, payment: &str) -> TestResult {
    eventually(DEADLINE, || async move {
        let found = db
            .collection::<Document>("payments")
            .find_one(doc! {"_id": payment, "outbox_pending": false, "pending_events.0": {"$exists": false}})
            .await?;
        anyhow::ensure!(found.is_some(), "payment {payment} not published yet");
        Ok(())
    })
    .await
}

/// Until every claim is settled and no refund check is due.
async fn wait_for_follow_up(db: &mongodb::Database, paid: &[(Uuid, String)]) -> TestResult {
    eventually(DEADLINE, || async move {
        for (order, payment) in paid {
            let open = db
                .collection::<Document>("payment_claims")
                .find_one(doc! {"_id": order.to_string(), "open": true})
                .await?;
            anyhow::ensure!(open.is_none(), "claim of {order} not settled yet");
            let due = db
                .collection::<Document>("payments")
                .find_one(doc! {"_id": payment, "refund_check": true})
                .await?;
            anyhow::ensure!(due.is_none(), "refund check of {payment} still due");
        }
        Ok(())
    })
    .await
}
