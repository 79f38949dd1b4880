//! API10:2023 Unsafe consumption of APIs. payment-service's provider and
//! notification-service's SMS gateway are third parties; here they misbehave (see `fakes`).
//!
//! For every hostile provider answer (HTML instead of JSON, a 20 MB body, a redirect, an
//! undocumented status, a 500 error page, an answer that never comes in time) the customer
//! gets a documented answer (201 failed, or 202 pending or processing, never a 5xx, no hang
//! beyond the request's budget), no provider text reaches the customer, the redirect is not followed (the
//! card never reaches `/stolen`), and the order cannot be charged twice: while the outcome
//! is unknown a second payment is refused (409), and the order is never PAID from a charge
//! the platform could not read.
//!
//! The SMS gateway answers every message with a 2 MB body holding an implausible id: the SMS
//! is not recorded as sent, the receipt mail still goes out, and the service stays ready.

use reqwest::StatusCode;
use uuid::Uuid;

use super::fakes::{HOSTILE_CARDS, Hostility};
use super::{Owasp, is_problem};
use crate::api::GOOD_CARD;

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let product = ctx.product(50).await?;
    let checks = HOSTILE_CARDS
        .iter()
        .map(|(card, hostility)| hostile_payment(ctx, product, card, *hostility));
    futures::future::try_join_all(checks).await?;
    anyhow::ensure!(
        ctx.fakes.hostile_calls() >= HOSTILE_CARDS.len(),
        "the hostile provider saw {} charge(s)",
        ctx.fakes.hostile_calls()
    );
    anyhow::ensure!(
        ctx.fakes.stolen() == 0,
        "payment-service followed the provider's redirect with the card"
    );
    hostile_sms(ctx, product).await
}

async fn hostile_payment(
    ctx: &Owasp<'_>,
    product: Uuid,
    card: &str,
    hostility: Hostility,
) -> anyhow::Result<()> {
    let account = ctx.account().await?;
    let order = ctx.awaiting_order(&account.user, product).await?;
    let reply = ctx
        .api
        .pay(
            &account.user,
            order,
            card,
            &Uuid::new_v4().to_string(),
            None,
        )
        .await?;
    let what = format!("{hostility:?}");
    let status = reply.body["status"].as_str().unwrap_or_default().to_owned();
    match hostility {
        // psp-sim documents 5xx as "failed before charging": the payment fails, may be retried.
        Hostility::ServerErrorPage => anyhow::ensure!(
            reply.status == StatusCode::CREATED && status == "failed",
            "{what}: {reply:?}"
        ),
        // Anything else may have charged: accepted with the outcome unknown, `pending` for the
        // reconciler to settle by key, or `processing` when the charge is still under way as
        // the request's budget (`PAYMENT_REQUEST_BUDGET_MS`) runs out (an answer that never
        // comes in time).
        _ => anyhow::ensure!(
            reply.status == StatusCode::ACCEPTED
                && matches!(status.as_str(), "pending" | "processing"),
            "{what}: {reply:?}"
        ),
    }
    super::api8_misconfiguration::no_internals(&reply.body.to_string(), &what)?;
    for leaked in ["charged?", "Traceback", "xxxx", "charged_twice"] {
        anyhow::ensure!(
            !reply.body.to_string().contains(leaked),
            "{what}: the provider's text reached the customer: {reply:?}"
        );
    }
    // A second payment while the first one's outcome is unknown is refused, so the order is
    // never charged twice.
    let second = ctx
        .api
        .pay(
            &account.user,
            order,
            GOOD_CARD,
            &Uuid::new_v4().to_string(),
            None,
        )
        .await?;
    match hostility {
        Hostility::ServerErrorPage => {
            anyhow::ensure!(
                second.status == StatusCode::CREATED && second.body["status"] == "succeeded",
                "{what}: paying again after a provider failure: {second:?}"
            );
            ctx.api
                .wait_for_status(&account.user, order, "PAID")
                .await?;
            let charges = ctx.api.provider_charges(order).await?;
            let succeeded = charges
                .iter()
                .filter(|charge| charge["status"] == "succeeded")
                .count();
            anyhow::ensure!(succeeded == 1, "{what}: {succeeded} succeeded charges");
        }
        _ => {
            anyhow::ensure!(
                second.status == StatusCode::CONFLICT && is_problem(&second),
                "{what}: a second payment while the first is unknown: {second:?}"
            );
            let order_now = ctx.api.order(&account.user, order).await?;
            anyhow::ensure!(
                order_now.body["status"] == "AWAITING_PAYMENT",
                "{what}: the order moved on an unreadable charge: {order_now:?}"
            );
        }
    }
    Ok(())
}

async fn hostile_sms(ctx: &Owasp<'_>, product: Uuid) -> anyhow::Result<()> {
    let account = ctx.account().await?;
    let token = Some(account.user.token.as_str());
    let prefs = ctx
        .call(
            reqwest::Method::PUT,
            "/api/notifications/preferences",
            token,
            &serde_json::json!({"email": true, "sms": true}),
        )
        .await?;
    anyhow::ensure!(prefs.status == StatusCode::OK, "preferences: {prefs:?}");
    ctx.paid_order(&account.user, product).await?;
    crate::api::Inbox::new()
        .wait_for(&account.user.email, &[])
        .await?;
    crate::api::eventually(crate::api::DEADLINE, || async {
        let list = ctx.get("/api/notifications", token).await?;
        let items = list.body["items"].as_array().cloned().unwrap_or_default();
        let sms: Vec<_> = items
            .iter()
            .filter(|item| item["channel"] == "sms")
            .collect();
        anyhow::ensure!(
            sms.iter()
                .any(|item| item["attempts"].as_i64().unwrap_or(0) > 0),
            "no SMS attempted yet: {list:?}"
        );
        for item in &sms {
            anyhow::ensure!(
                item["status"] != "sent",
                "an SMS counted as sent on an unusable answer: {item}"
            );
            let shown = item.to_string();
            anyhow::ensure!(
                !shown.contains("<script>"),
                "the gateway's answer reached the customer: {shown}"
            );
        }
        Ok(())
    })
    .await?;
    anyhow::ensure!(
        ctx.fakes.sms_calls() > 0,
        "the SMS gateway was never called"
    );
    let ready = ctx.get("/health/ready", None).await?;
    anyhow::ensure!(
        ready.status == StatusCode::OK,
        "gateway readiness: {ready:?}"
    );
    Ok(())
}
