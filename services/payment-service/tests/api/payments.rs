//! Paying orders: one charge per order, idempotency under concurrency, declines and retries
//! with another card, the slow provider and reconciliation, and the breaker.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    DECLINED_CARD, ERROR_CARD, GOOD_CARD, POOR_CARD, SLOW_CARD, SimSettings, TestResult, card,
    spawn_app, spawn_app_with, spawn_app_with_sim,
};

#[tokio::test]
async fn paying_an_awaiting_order_charges_it_once_and_publishes_success() -> TestResult {
    let app = spawn_app().await;
    let order = app.awaiting_order(2599).await?;
    let paid = app.pay("key-1", order, card(GOOD_CARD)).await?;
    assert_eq!(paid.status, StatusCode::CREATED, "{paid:?}");
    assert_eq!(paid.body["status"], "succeeded");
    assert_eq!(
        paid.body["amount"],
        json!({"amount": 2599, "currency": "EUR"})
    );
    assert_eq!(paid.body["card"], json!({"brand": "visa", "last4": "4242"}));
    assert_eq!(paid.body["order_id"], order.to_string());

    let shown = app.get(&format!("/api/payments/{}", paid.id())).await?;
    assert_eq!(shown.body["status"], "succeeded", "{shown:?}");
    let listed = app.get(&format!("/api/payments?order_id={order}")).await?;
    assert_eq!(
        listed.body["items"].as_array().map(Vec::len),
        Some(1),
        "{listed:?}"
    );

    // Another key for a paid order: refused before the provider is called.
    let again = app.pay("key-2", order, card(GOOD_CARD)).await?;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert_eq!(app.succeeded_charges(order).await?, 1);

    assert_eq!(
        app.payment_event_types(order).await?,
        ["payment.succeeded.v1"]
    );
    let events = app.payment_events().await?;
    let data = &events[0].event.data;
    assert_eq!(data["payment_id"], paid.body["id"]);
    assert_eq!(data["user_id"], app.user_id.to_string());
    assert_eq!(data["card_last4"], "4242");
    assert!(
        events[0].headers.contains_key("traceparent"),
        "trace context travels"
    );
    Ok(())
}

#[tokio::test]
async fn one_key_sent_concurrently_makes_one_charge_and_one_answer() -> TestResult {
    let app = spawn_app().await;
    let order = app.awaiting_order(1000).await?;
    let replies = join_all((0..6).map(|_| app.pay("same-key", order, card(GOOD_CARD)))).await;
    let mut ids = Vec::new();
    for reply in replies {
        let reply = reply?;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        assert_eq!(reply.body["status"], "succeeded");
        ids.push(reply.id());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one payment: {ids:?}");
    assert_eq!(app.psp_charges(order).await?.len(), 1, "one charge");

    // The same key later: the same answer. With another body: refused.
    let later = app.pay("same-key", order, card(GOOD_CARD)).await?;
    assert_eq!(
        (later.status, later.id()),
        (StatusCode::CREATED, ids[0].clone())
    );
    let other = app.pay("same-key", order, card("5555555555554444")).await?;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY, "{other:?}");
    assert_eq!(other.fields(), ["Idempotency-Key"]);
    assert_eq!(app.psp_charges(order).await?.len(), 1);
    assert_eq!(
        app.payment_event_types(order).await?,
        ["payment.succeeded.v1"]
    );
    Ok(())
}

#[tokio::test]
async fn declined_cards_then_a_good_one_make_exactly_one_successful_charge() -> TestResult {
    let app = spawn_app_with(|config| config.psp_max_attempts = 2).await;
    let order = app.awaiting_order(4200).await?;
    let declined = app.pay("try-1", order, card(DECLINED_CARD)).await?;
    assert_eq!(declined.status, StatusCode::CREATED, "{declined:?}");
    assert_eq!(declined.body["status"], "failed");
    assert_eq!(declined.body["failure_reason"], "card_declined");
    let poor = app.pay("try-2", order, card(POOR_CARD)).await?;
    assert_eq!(
        poor.body["failure_reason"], "insufficient_funds",
        "{poor:?}"
    );
    // The provider fails before charging every time: retried, then given up.
    let broken = app.pay("try-3", order, card(ERROR_CARD)).await?;
    assert_eq!(broken.body["status"], "failed", "{broken:?}");
    assert_eq!(broken.body["failure_reason"], "provider_unavailable");
    let good = app.pay("try-4", order, card(GOOD_CARD)).await?;
    assert_eq!(good.body["status"], "succeeded", "{good:?}");
    let late = app.pay("try-5", order, card(GOOD_CARD)).await?;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");

    assert_eq!(app.succeeded_charges(order).await?, 1);
    assert_eq!(
        app.psp_charges(order).await?.len(),
        3,
        "two declines, one charge"
    );
    assert_eq!(
        app.payment_event_types(order).await?,
        [
            "payment.failed.v1",
            "payment.failed.v1",
            "payment.failed.v1",
            "payment.succeeded.v1"
        ]
    );
    // Every attempt and status change is in the payment log.
    let attempts = app
        .db
        .collection::<mongodb::bson::Document>("payment_log")
        .count_documents(mongodb::bson::doc! {"payment_id": broken.id(), "kind": "attempt"})
        .await?;
    assert_eq!(attempts, 2, "the provider error was tried twice");
    Ok(())
}

#[tokio::test]
async fn a_slow_provider_leaves_the_payment_pending_until_it_is_reconciled() -> TestResult {
    let app = spawn_app_with_sim(
        SimSettings {
            slow_delay: Duration::from_millis(2_500),
        },
        |config| {
            config.psp_timeout = Duration::from_millis(300);
            config.psp_max_attempts = 2;
        },
    )
    .await;
    let order = app.awaiting_order(999).await?;
    let pending = app.pay("slow-1", order, card(SLOW_CARD)).await?;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{pending:?}");
    assert_eq!(pending.body["status"], "pending");

    let done = app.wait_for_status(&pending.id(), "succeeded").await?;
    assert_eq!(
        done["provider_reference"]
            .as_str()
            .map(|r| r.starts_with("ch_")),
        Some(true)
    );
    // Retries and the reconciler used the same provider key: one charge.
    assert_eq!(app.psp_charges(order).await?.len(), 1);
    let replay = app.pay("slow-1", order, card(SLOW_CARD)).await?;
    assert_eq!(
        (replay.status, replay.id()),
        (StatusCode::CREATED, pending.id())
    );
    assert_eq!(
        app.payment_event_types(order).await?,
        ["payment.succeeded.v1"]
    );
    Ok(())
}

/// The request budget (the outage finding: payments answered after more than 2 s). A provider
/// slower than the budget costs the client a 503 with `Retry-After`, not a wait; the provider
/// call in flight is not cut off but recorded behind the answer, so a retry with the same key
/// gets the charge: made once, not lost.
#[tokio::test]
async fn a_charge_slower_than_the_request_budget_answers_202_and_completes_behind_it() -> TestResult
{
    let app = spawn_app_with_sim(
        SimSettings {
            slow_delay: Duration::from_millis(1_200),
        },
        |config| {
            config.request_budget = Duration::from_millis(500);
            config.order_wait = Duration::from_millis(300);
            // The provider's answer comes within the call's timeout, after the budget.
            config.psp_timeout = Duration::from_millis(5_000);
            config.psp_max_attempts = 1;
        },
    )
    .await;
    let order = app.awaiting_order(1234).await?;
    let first = app
        .client
        .post(app.url("/api/payments"))
        .bearer_auth(&app.token)
        .header("Idempotency-Key", "budget-1")
        .json(&json!({"order_id": order, "card": card(SLOW_CARD)}))
        .send()
        .await?;
    // The payment exists and its charge is under way: answered as it stands, within the
    // budget, never a hang and never a 503 for a payment that was taken.
    assert_eq!(first.status(), StatusCode::ACCEPTED, "{first:?}");
    let first: serde_json::Value = first.json().await?;
    assert_eq!(first["status"], "processing", "{first}");

    testkit::eventually(Duration::from_secs(30), || async {
        let retry = app.pay("budget-1", order, card(SLOW_CARD)).await?;
        anyhow::ensure!(
            retry.status == StatusCode::CREATED && retry.body["status"] == "succeeded",
            "{retry:?}"
        );
        Ok(())
    })
    .await?;
    assert_eq!(app.psp_charges(order).await?.len(), 1, "charged once");
    assert_eq!(
        app.payment_event_types(order).await?,
        ["payment.succeeded.v1"]
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_provider_opens_the_breaker_and_payments_get_a_fast_503() -> TestResult {
    let closed = testkit::ClosedPort::new()?;
    let app = spawn_app_with(|config| {
        config.psp_url = closed.url();
        config.psp_max_attempts = 1;
        config.breaker_threshold = 1;
        config.breaker_open_for = Duration::from_secs(60);
    })
    .await;
    let order = app.awaiting_order(500).await?;
    let first = app.pay("b-1", order, card(GOOD_CARD)).await?;
    assert_eq!(first.body["status"], "failed", "{first:?}");
    assert_eq!(first.body["failure_reason"], "provider_unavailable");
    let second = app.pay("b-2", order, card(GOOD_CARD)).await?;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE, "{second:?}");
    assert_eq!(
        second.body["type"],
        "https://ferroshop.dev/problems/unavailable"
    );
    // Nothing was written for the refused request.
    let listed = app.get(&format!("/api/payments?order_id={order}")).await?;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn other_users_orders_and_payments_are_not_found() -> TestResult {
    let app = spawn_app().await;
    let order = app.awaiting_order(700).await?;
    let stranger = app.token_for(Uuid::now_v7());
    let body = json!({"order_id": order, "card": card(GOOD_CARD)});
    let theirs = app.pay_as(&stranger, "k", &body).await?;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{theirs:?}");

    let paid = app.pay("k", order, card(GOOD_CARD)).await?;
    assert_eq!(paid.body["status"], "succeeded", "{paid:?}");
    let peek = app
        .get_as(&stranger, &format!("/api/payments/{}", paid.id()))
        .await?;
    assert_eq!(peek.status, StatusCode::NOT_FOUND);
    let list = app
        .get_as(&stranger, &format!("/api/payments?order_id={order}"))
        .await?;
    assert_eq!(list.body["items"], json!([]));

    let unknown = app.pay("k2", Uuid::now_v7(), card(GOOD_CARD)).await?;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
    let malformed = app.get("/api/payments/not-a-uuid").await?;
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);
    Ok(())
}

/// Every change of a payment is read, decide, then one update guarded by the revision read.
/// Concurrent writers of one payment therefore make a transition once and never lose each
/// other's changes, also on a payment written before it carried a revision.
#[tokio::test]
async fn concurrent_changes_of_one_payment_apply_once_each_and_lose_nothing() -> TestResult {
    use mongodb::bson::{Document, doc};
    use payment_service::store::payments::Payments;

    let app = spawn_app_with(|config| config.run_reconciler = false).await;
    let order = app.awaiting_order(100).await?;
    let paid = app.pay("key", order, card(GOOD_CARD)).await?;
    assert_eq!(paid.status, StatusCode::CREATED, "{paid:?}");
    let id = Uuid::parse_str(&paid.id())?;
    // As a version before revisions left it.
    app.db
        .collection::<Document>("payments")
        .update_one(doc! {"_id": paid.id()}, doc! {"$unset": {"revision": ""}})
        .await?;
    let payments = Payments::new(&app.db);

    // Twenty writers try one transition: one makes it.
    let attempts = join_all((0..20).map(|_| {
        payments.update_guarded(id, |payment| {
            Ok((payment.status == "succeeded").then(|| doc! {"$set": {"status": "refunding"}}))
        })
    }))
    .await;
    let mut changed = 0;
    for attempt in attempts {
        changed += usize::from(attempt?.is_some_and(|updated| updated.changed));
    }
    assert_eq!(changed, 1);

    // Twenty read-modify-writes of one field (here the revision read, plus one): each is
    // applied to the state it read, so none is lost.
    let writes = join_all((0..20).map(|_| {
        payments.update_guarded(id, |payment| {
            let next = (payment.revision + 1).to_string();
            Ok(Some(doc! {"$set": {"refund_reference": next}}))
        })
    }))
    .await;
    for write in writes {
        anyhow::ensure!(write?.is_some_and(|updated| updated.changed));
    }
    let payment = payments
        .get(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("payment gone"))?;
    assert_eq!(payment.revision, 21);
    assert_eq!(payment.refund_reference.as_deref(), Some("21"));
    Ok(())
}
