//! API1:2023 Broken object-level authorization. Every resource with an id, asked for by
//! another customer: orders (read, live events, cancel, refund requests read and create),
//! payments (read, list by order, pay someone else's order) and notifications. The answer is
//! 404, exactly as for an id that does not exist, never 403: a 403 would confirm that the id
//! exists and belongs to somebody, which lets ids be probed. The owner and an admin still
//! see the order, so the 404s are about ownership, not a broken route.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{Owasp, expect_problem};
use crate::api::GOOD_CARD;

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let (alice, mallory) = tokio::try_join!(ctx.account(), ctx.account())?;
    let product = ctx.product(20).await?;
    let (order, payment) = ctx.paid_order(&alice.user, product).await?;
    let thief = Some(mallory.user.token.as_str());

    // The owner's own view works, and so does the admin's.
    let own = ctx
        .get(&format!("/api/orders/{order}"), Some(&alice.user.token))
        .await?;
    anyhow::ensure!(own.status == StatusCode::OK, "owner reads order: {own:?}");
    let admin = ctx
        .get(&format!("/api/orders/{order}"), Some(&ctx.admin))
        .await?;
    anyhow::ensure!(
        admin.status == StatusCode::OK,
        "admin reads order: {admin:?}"
    );
    let refund = ctx
        .call(
            Method::POST,
            &format!("/api/orders/{order}/refund-requests"),
            Some(&alice.user.token),
            &json!({"reason": "changed_mind"}),
        )
        .await?;
    anyhow::ensure!(
        refund.status.is_success(),
        "owner requests a refund: {refund:?}"
    );

    for path in [
        format!("/api/orders/{order}"),
        format!("/api/orders/{order}/events"),
        format!("/api/orders/{order}/refund-requests"),
        format!("/api/payments/{payment}"),
    ] {
        let reply = ctx.get(&path, thief).await?;
        expect_problem(
            &reply,
            StatusCode::NOT_FOUND,
            &format!("GET {path} by another"),
        )?;
    }
    for (path, body) in [
        (format!("/api/orders/{order}/cancel"), json!({})),
        (
            format!("/api/orders/{order}/refund-requests"),
            json!({"reason": "damaged"}),
        ),
    ] {
        let reply = ctx.call(Method::POST, &path, thief, &body).await?;
        expect_problem(
            &reply,
            StatusCode::NOT_FOUND,
            &format!("POST {path} by another"),
        )?;
    }
    // Paying someone else's order: the order "does not exist" for the payer.
    let pay = ctx
        .api
        .pay(
            &mallory.user,
            order,
            GOOD_CARD,
            &uuid::Uuid::new_v4().to_string(),
            None,
        )
        .await?;
    expect_problem(&pay, StatusCode::NOT_FOUND, "paying another's order")?;

    // Lists are filtered by owner: another's order id finds nothing.
    let list = ctx
        .get(&format!("/api/payments?order_id={order}"), thief)
        .await?;
    anyhow::ensure!(
        list.status == StatusCode::NOT_FOUND
            || (list.status == StatusCode::OK
                && list.body["items"].as_array().is_some_and(Vec::is_empty)),
        "another's payments by order id: {list:?}"
    );
    let orders = ctx.get("/api/orders", thief).await?;
    anyhow::ensure!(
        orders.status == StatusCode::OK && !orders.body.to_string().contains(&order.to_string()),
        "another's order in my list: {orders:?}"
    );
    // Alice's notifications exist (the order was received and paid) but never show in
    // Mallory's list.
    crate::api::eventually(crate::api::DEADLINE, || async {
        let mine = ctx
            .get("/api/notifications", Some(&alice.user.token))
            .await?;
        anyhow::ensure!(
            mine.body.to_string().contains(&alice.user.email),
            "alice has no notification yet: {mine:?}"
        );
        Ok(())
    })
    .await?;
    let theirs = ctx.get("/api/notifications", thief).await?;
    anyhow::ensure!(
        theirs.status == StatusCode::OK && !theirs.body.to_string().contains(&alice.user.email),
        "another's notifications: {theirs:?}"
    );
    Ok(())
}
