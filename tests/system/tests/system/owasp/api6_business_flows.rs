//! API6:2023 Unrestricted access to sensitive business flows.
//!
//! Stock hoarding: one account may hold at most `ORDER_MAX_OPEN_PER_USER` unpaid orders (5);
//! the next is refused with a 409 of type `too-many-open-orders`, and paying or cancelling
//! one makes room again. Card testing: after `PAYMENT_MAX_DECLINES` declines within the
//! window, the account's next payment is refused with 429 and `Retry-After` (type
//! `too-many-declines`) before any card reaches the provider.

use reqwest::StatusCode;
use uuid::Uuid;

use super::{MAX_DECLINES, MAX_OPEN_ORDERS, Owasp, expect_problem};
use crate::api::{DECLINED_CARD, GOOD_CARD};

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    tokio::try_join!(hoarding(ctx), card_testing(ctx))?;
    Ok(())
}

async fn hoarding(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let hoarder = ctx.account().await?;
    let product = ctx.product(100).await?;
    let mut orders = Vec::new();
    for _ in 0..MAX_OPEN_ORDERS {
        orders.push(ctx.api.placed(&hoarder.user, &[(product, 1)]).await?);
    }
    let refused = ctx.api.place(&hoarder.user, &[(product, 1)], None).await?;
    expect_problem(
        &refused,
        StatusCode::CONFLICT,
        "one order over the open-order limit",
    )?;
    anyhow::ensure!(
        refused.body["type"] == "https://ferroshop.dev/problems/too-many-open-orders",
        "the limit's problem type: {refused:?}"
    );
    // Concurrent attempts cannot squeeze past the limit either.
    let line = [(product, 1)];
    let burst: Vec<_> = (0..4)
        .map(|_| ctx.api.place(&hoarder.user, &line, None))
        .collect();
    for reply in futures::future::join_all(burst).await {
        let reply = reply?;
        expect_problem(
            &reply,
            StatusCode::CONFLICT,
            "a concurrent order over the limit",
        )?;
    }
    // Another customer is not affected.
    let other = ctx.account().await?;
    ctx.api.placed(&other.user, &[(product, 1)]).await?;
    // Cancelling one makes room for exactly one more.
    let first = orders
        .first()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("no order"))?;
    ctx.api
        .wait_for_status(&hoarder.user, first, "AWAITING_PAYMENT")
        .await?;
    let cancel = ctx.api.cancel(&hoarder.user, first).await?;
    anyhow::ensure!(cancel.status.is_success(), "cancel: {cancel:?}");
    ctx.api.placed(&hoarder.user, &[(product, 1)]).await?;
    let again = ctx.api.place(&hoarder.user, &[(product, 1)], None).await?;
    expect_problem(&again, StatusCode::CONFLICT, "the limit after one cancel")?;
    Ok(())
}

async fn card_testing(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let tester = ctx.account().await?;
    let product = ctx.product(10).await?;
    let order = ctx.awaiting_order(&tester.user, product).await?;
    for attempt in 0..MAX_DECLINES {
        let reply = ctx
            .api
            .pay(
                &tester.user,
                order,
                DECLINED_CARD,
                &Uuid::new_v4().to_string(),
                None,
            )
            .await?;
        anyhow::ensure!(
            reply.status == StatusCode::CREATED && reply.body["status"] == "failed",
            "decline {attempt}: {reply:?}"
        );
    }
    let charges_before = ctx.api.provider_charges(order).await?.len();
    // Throttled now, even with a good card, and the provider sees nothing.
    let throttled = ctx
        .api
        .pay(
            &tester.user,
            order,
            GOOD_CARD,
            &Uuid::new_v4().to_string(),
            None,
        )
        .await?;
    expect_problem(
        &throttled,
        StatusCode::TOO_MANY_REQUESTS,
        "a payment after repeated declines",
    )?;
    anyhow::ensure!(
        throttled.body["type"] == "https://ferroshop.dev/problems/too-many-declines"
            && throttled
                .headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok())
                .is_some_and(|secs| secs > 0),
        "the throttle's answer: {throttled:?}"
    );
    let charges_after = ctx.api.provider_charges(order).await?.len();
    anyhow::ensure!(
        charges_before == charges_after,
        "the provider was called while throttled ({charges_before} -> {charges_after})"
    );
    // Another account still pays.
    let honest = ctx.account().await?;
    ctx.paid_order(&honest.user, product).await?;
    Ok(())
}
