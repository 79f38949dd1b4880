//! Refunds: a charge and a cancellation of its order, in either order of arrival, give
//! exactly one refund and one `payment.refunded`.

use std::time::Duration;

use contracts::order::OrderCancelled;
use reqwest::StatusCode;

use crate::helpers::{
    GOOD_CARD, SLOW_CARD, SimSettings, TestResult, card, spawn_app, spawn_app_with_sim,
    spawn_replica,
};

fn cancelled(order_id: uuid::Uuid, user_id: uuid::Uuid) -> OrderCancelled {
    OrderCancelled {
        order_id,
        user_id,
        reason: "payment_timeout".into(),
    }
}

#[tokio::test]
async fn a_cancellation_after_the_charge_refunds_it_once() -> TestResult {
    let app = spawn_app().await;
    let order = app.awaiting_order(1500).await?;
    let paid = app.pay("k", order, card(GOOD_CARD)).await?;
    assert_eq!(paid.body["status"], "succeeded", "{paid:?}");

    // Delivered twice: the second must change nothing.
    app.order_event(order, cancelled(order, app.user_id))
        .await?;
    app.order_event(order, cancelled(order, app.user_id))
        .await?;
    let refunded = app.wait_for_status(&paid.id(), "refunded").await?;
    assert_eq!(refunded["amount"]["amount"], 1500);

    let charges = app.psp_charges(order).await?;
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["refunded"], true);
    assert_eq!(
        app.payment_event_types(order).await?,
        ["payment.succeeded.v1", "payment.refunded.v1"]
    );
    let events = app.payment_events().await?;
    assert_eq!(events[1].event.data["reason"], "order_cancelled");
    Ok(())
}

#[tokio::test]
async fn a_charge_that_succeeds_after_the_order_was_cancelled_is_refunded_once() -> TestResult {
    // The provider answers late; the reconciler is off until the cancellation is in.
    let app = spawn_app_with_sim(
        SimSettings {
            slow_delay: Duration::from_millis(2_000),
        },
        |config| {
            config.psp_timeout = Duration::from_millis(300);
            config.psp_max_attempts = 1;
            config.run_reconciler = false;
        },
    )
    .await;
    let order = app.awaiting_order(800).await?;
    let pending = app.pay("slow", order, card(SLOW_CARD)).await?;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{pending:?}");
    app.order_event(order, cancelled(order, app.user_id))
        .await?;
    app.wait_for_replica(order, "cancelled").await?;

    // Now the outcome becomes known: succeeded, for a cancelled order.
    let _reconciling = spawn_replica(&app, |config| {
        config.psp_timeout = Duration::from_millis(300);
        config.run_order_consumer = false;
    })
    .await;
    app.wait_for_status(&pending.id(), "refunded").await?;
    let charges = app.psp_charges(order).await?;
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["refunded"], true);
    assert_eq!(
        app.payment_event_types(order).await?,
        ["payment.succeeded.v1", "payment.refunded.v1"]
    );
    Ok(())
}

#[tokio::test]
async fn a_refund_check_cut_short_by_a_crash_is_finished_by_the_reconciler() -> TestResult {
    let app = spawn_app().await;
    let order = app.awaiting_order(650).await?;
    let paid = app.pay("k", order, card(GOOD_CARD)).await?;
    assert_eq!(paid.body["status"], "succeeded", "{paid:?}");
    // The state a crash leaves when it strikes after the consumer recorded the cancellation
    // (and found no succeeded payment yet) and after the success was written, but before the
    // success's look at the order: cancelled in the replica, the check still due.
    let long_ago = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() - 60_000,
    );
    app.db
        .collection::<mongodb::bson::Document>("orders")
        .update_one(
            mongodb::bson::doc! {"_id": order.to_string()},
            mongodb::bson::doc! {"$set": {"status": "cancelled"}},
        )
        .await?;
    app.db
        .collection::<mongodb::bson::Document>("payments")
        .update_one(
            mongodb::bson::doc! {"_id": paid.id()},
            mongodb::bson::doc! {"$set": {"refund_check": true, "updated_at": long_ago}},
        )
        .await?;
    app.wait_for_status(&paid.id(), "refunded").await?;
    assert_eq!(
        app.payment_event_types(order).await?,
        ["payment.succeeded.v1", "payment.refunded.v1"]
    );
    Ok(())
}
