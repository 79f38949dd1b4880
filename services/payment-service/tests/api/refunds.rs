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

/// Until `payment` is refunded; then its order has one charge, refunded, and the events of
/// one success and one refund. Returns the refunded payment.
async fn refunded_once(
    app: &crate::helpers::TestApp,
    order: uuid::Uuid,
    payment: &str,
) -> anyhow::Result<serde_json::Value> {
    let refunded = app.wait_for_status(payment, "refunded").await?;
    let charges = app.psp_charges(order).await?;
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["refunded"], true);
    assert_eq!(
        app.payment_event_types(order).await?,
        ["payment.succeeded.v1", "payment.refunded.v1"]
    );
    Ok(refunded)
}

/// An app whose provider answers after `delay` to the slow card, called once per charge with
/// `psp_timeout`, and no reconciler (so only the path under test can refund).
async fn slow_provider_without_reconciler(
    delay: Duration,
    psp_timeout: Duration,
) -> crate::helpers::TestApp {
    spawn_app_with_sim(SimSettings { slow_delay: delay }, |config| {
        config.psp_timeout = psp_timeout;
        config.psp_max_attempts = 1;
        config.run_reconciler = false;
    })
    .await
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
    let refunded = refunded_once(&app, order, &paid.id()).await?;
    assert_eq!(refunded["amount"]["amount"], 1500);
    let events = app.payment_events().await?;
    assert_eq!(events[1].event.data["reason"], "order_cancelled");
    Ok(())
}

#[tokio::test]
async fn a_charge_that_succeeds_after_the_order_was_cancelled_is_refunded_once() -> TestResult {
    // The provider answers late; the reconciler is off until the cancellation is in.
    let app =
        slow_provider_without_reconciler(Duration::from_millis(2_000), Duration::from_millis(300))
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
    refunded_once(&app, order, &pending.id()).await?;
    Ok(())
}

/// The cancellation is applied by this process while its request is at the provider: the
/// consumer's look finds the payment still `processing`, so the request's own look after the
/// success must refund it. It finds the cancellation among the replica's announcements, with
/// no read of the order (the reconciler is off: nothing else would refund it).
#[tokio::test]
async fn a_cancellation_announced_while_the_provider_charges_is_refunded_by_the_request()
-> TestResult {
    let app =
        slow_provider_without_reconciler(Duration::from_millis(1_500), Duration::from_secs(10))
            .await;
    let order = app.awaiting_order(900).await?;
    let order_reads = |app: &crate::helpers::TestApp| {
        app.commands
            .tally()
            .by_command
            .get(&("find".to_owned(), "orders".to_owned()))
            .copied()
            .unwrap_or(0)
    };
    // The test's own client: its reads are not the app's.
    let observer = mongodb::Client::with_uri_str(crate::helpers::mongodb_url())
        .await?
        .database(app.db.name());
    let observed = |collection: &'static str, filter: mongodb::bson::Document| {
        let observer = observer.clone();
        async move {
            testkit::eventually(crate::helpers::DEADLINE, || async {
                let found = observer
                    .collection::<mongodb::bson::Document>(collection)
                    .find_one(filter.clone())
                    .await?;
                anyhow::ensure!(found.is_some(), "nothing in {collection} matches {filter}");
                Ok(())
            })
            .await
        }
    };
    let reads_before = order_reads(&app);
    let pay = app.pay("slow-cancelled", order, card(SLOW_CARD));
    let cancel = async {
        // Once the payment is at the provider.
        observed(
            "payments",
            mongodb::bson::doc! {"order_id": order.to_string(), "status": "processing"},
        )
        .await?;
        app.order_event(order, cancelled(order, app.user_id))
            .await?;
        observed(
            "orders",
            mongodb::bson::doc! {"_id": order.to_string(), "status": "cancelled"},
        )
        .await
    };
    let (reply, cancelled) = tokio::join!(pay, cancel);
    cancelled?;
    let reply = reply?;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    refunded_once(&app, order, &reply.id()).await?;
    // No read of the order: the request decided it payable on the copy this process's
    // consumer wrote (`Orders::applied_here`), and the refund handshake found the
    // cancellation among the announcements. (One read, to decide it payable, before the copy.)
    assert_eq!(order_reads(&app) - reads_before, 0);
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

/// The reconciler's pass asks every second for the payments whose refund check is still to
/// run. It must read those through the `refund_check` index, not every succeeded payment
/// through `status`: that read grew with every payment ever taken (24 ms of the local server's
/// CPU a second at 13,000 payments, stalling every other client for as long).
#[tokio::test]
async fn the_refund_checks_due_are_read_without_every_succeeded_payment() -> TestResult {
    use mongodb::bson;
    use payment_service::store::payments::{PaymentDoc, Payments};

    let client = mongodb::Client::with_uri_str(crate::helpers::mongodb_url()).await?;
    let db = client.database(&crate::helpers::fresh_database().await?);
    payment_service::store::ensure_indexes(&db).await?;
    let long_ago = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - 60_000);
    let payment = |n: usize, refund_check: bool| PaymentDoc {
        id: format!("payment-{n}"),
        order_id: format!("order-{n}"),
        user_id: "user".into(),
        idempotency_key: format!("key-{n}"),
        fingerprint: "fingerprint".into(),
        status: "succeeded".into(),
        amount: 100,
        currency: "EUR".into(),
        card_brand: "visa".into(),
        card_last4: "4242".into(),
        provider_reference: Some(format!("ch_{n}")),
        failure_reason: None,
        refund_reference: None,
        refund_key: None,
        refund_reason: None,
        refund_check,
        created_at: long_ago,
        updated_at: long_ago,
        pending_events: Vec::new(),
        outbox_pending: false,
        revision: 1,
    };
    // Successes whose check ran long ago, and two still waiting for theirs.
    let payments: Vec<PaymentDoc> = (0..300).map(|n| payment(n, n == 17 || n == 230)).collect();
    db.collection::<PaymentDoc>(payment_service::store::payments::COLLECTION)
        .insert_many(payments)
        .await?;
    let namespace = format!(
        "{}.{}",
        db.name(),
        payment_service::store::payments::COLLECTION
    );
    let examined = || testkit::mongo::documents_examined(&db, &namespace);
    let before = examined().await?;

    let mut due: Vec<String> = Payments::new(&db)
        .refund_checks_due(bson::DateTime::now())
        .await?
        .into_iter()
        .map(|payment| payment.id)
        .collect();
    due.sort_unstable();
    assert_eq!(due, ["payment-17", "payment-230"]);
    if let (Some(before), Some(after)) = (before, examined().await?) {
        assert_eq!(
            after - before,
            2,
            "the pass read more than the flagged payments of {namespace}"
        );
    }
    db.drop().await?;
    Ok(())
}
