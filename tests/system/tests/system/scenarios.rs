//! The scenarios. Each one is what a customer does through the gateway; the checks look at the
//! services' answers and at what the outside world saw (the provider's charges, the inbox,
//! Zipkin). A ledger records every product and order so the invariants can be checked at the
//! end over all of them.

use std::sync::{Arc, Mutex};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::api::{
    Api, DEADLINE, DECLINED_CARD, GOOD_CARD, Inbox, SLOW_CARD, User, eventually, new_trace,
    trace_services,
};
use crate::platform::{Platform, STRICT_BURST};

/// Everything the scenarios created.
#[derive(Default)]
struct Ledger {
    /// (product, initial stock)
    products: Vec<(Uuid, i64)>,
    /// (order, owner)
    orders: Vec<(Uuid, User)>,
}

#[derive(Clone)]
struct Ctx {
    api: Api,
    admin: String,
    ledger: Arc<Mutex<Ledger>>,
}

impl Ctx {
    async fn product(&self, stock: i64, amount: i64) -> anyhow::Result<Uuid> {
        let (id, _) = self.api.product(&self.admin, stock, amount).await?;
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.products.push((id, stock));
        }
        Ok(id)
    }

    fn record_order(&self, order: Uuid, user: &User) {
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.orders.push((order, user.clone()));
        }
    }

    async fn placed(&self, user: &User, items: &[(Uuid, i64)]) -> anyhow::Result<Uuid> {
        let id = self.api.placed(user, items).await?;
        self.record_order(id, user);
        Ok(id)
    }

    /// An order for `items`, reserved and awaiting payment.
    async fn awaiting(&self, user: &User, items: &[(Uuid, i64)]) -> anyhow::Result<Uuid> {
        let id = self.placed(user, items).await?;
        self.api
            .wait_for_status(user, id, "AWAITING_PAYMENT")
            .await?;
        Ok(id)
    }
}

pub async fn run_all(platform: &Platform) -> anyhow::Result<()> {
    let api = Api::new(&platform.gateway, &platform.psp);
    let ctx = Ctx {
        admin: api.admin_token().await?,
        api,
        ledger: Arc::default(),
    };
    type Scenario<'a> = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;
    let scenarios: Vec<(&str, Scenario)> = vec![
        (
            "a customer buys two products",
            Box::pin(happy_path(ctx.clone())),
        ),
        (
            "one line of three out of stock",
            Box::pin(out_of_stock(ctx.clone())),
        ),
        (
            "declined card, then a good one",
            Box::pin(declined_then_paid(ctx.clone())),
        ),
        (
            "one Idempotency-Key sent twice at once",
            Box::pin(same_key_twice(ctx.clone())),
        ),
        (
            "the provider answers after the timeout",
            Box::pin(slow_provider(ctx.clone())),
        ),
        (
            "cancel before payment, then pay",
            Box::pin(cancel_then_pay(ctx.clone())),
        ),
        (
            "another customer's order and payment",
            Box::pin(cross_user(ctx.clone())),
        ),
        (
            "a customer on an admin route",
            Box::pin(customer_on_admin_route(ctx.clone())),
        ),
        (
            "sign in with Google, new and existing e-mail",
            Box::pin(google_sign_in(ctx.clone())),
        ),
        (
            "a refund request approved automatically",
            Box::pin(refund_approved_automatically(ctx.clone())),
        ),
    ];
    let names: Vec<&str> = scenarios.iter().map(|(name, _)| *name).collect();
    let outcomes = join_all(scenarios.into_iter().map(|(_, scenario)| scenario)).await;
    let mut failures: Vec<String> = names
        .iter()
        .zip(outcomes)
        .filter_map(|(name, outcome)| outcome.err().map(|error| format!("{name}: {error:#}")))
        .collect();
    // The rate limit last: the limit is per client IP, and every scenario comes from 127.0.0.1.
    if let Err(error) = rate_limited_logins(&ctx).await {
        failures.push(format!("login rate limit: {error:#}"));
    }
    if let Err(error) = invariants(&ctx).await {
        failures.push(format!("invariants: {error:#}"));
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

async fn happy_path(ctx: Ctx) -> anyhow::Result<()> {
    let api = &ctx.api;
    let inbox = Inbox::new();
    let kettle = ctx.product(10, 2_999).await?;
    let teapot = ctx.product(5, 1_550).await?;
    let user = api.customer().await?;
    inbox.wait_for(&user.email, &["welcome"]).await?;

    // Browsing: the catalog through the gateway, without a token.
    let reply = api
        .send(
            api.client
                .get(api.url("/api/products?category=system-test&limit=100")),
        )
        .await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "browse: {reply:?}");

    // One client-side trace for the whole checkout: placing the order and paying for it.
    let (traceparent, trace_id) = new_trace();
    let reply = api
        .place_when_known(&user, &[(kettle, 2), (teapot, 1)], Some(&traceparent))
        .await?;
    let order: Uuid = reply.body["id"].as_str().unwrap_or_default().parse()?;
    ctx.record_order(order, &user);
    anyhow::ensure!(
        reply.body["total"]["amount"] == 2 * 2_999 + 1_550,
        "{reply:?}"
    );
    // The storefront's way of waiting: the order's live status, pushed through the gateway.
    let mut live = api.status_stream(&user, order).await?;
    let mut seen = Vec::new();
    while let Some(event) = live.next_event().await? {
        let change: Value = serde_json::from_str(&event.data)?;
        seen.push(change["status"].as_str().unwrap_or_default().to_owned());
        if seen
            .last()
            .is_some_and(|status| status == "AWAITING_PAYMENT")
        {
            break;
        }
    }
    anyhow::ensure!(
        seen.last()
            .is_some_and(|status| status == "AWAITING_PAYMENT"),
        "live status before payment: {seen:?}"
    );
    let reply = api
        .pay(
            &user,
            order,
            GOOD_CARD,
            &Uuid::new_v4().to_string(),
            Some(&traceparent),
        )
        .await?;
    anyhow::ensure!(reply.status.is_success(), "pay: {reply:?}");
    let event = live.next_event().await?;
    let change: Value = match &event {
        Some(event) => serde_json::from_str(&event.data)?,
        None => Value::Null,
    };
    anyhow::ensure!(
        change["status"] == "PAID",
        "live status after payment: {event:?}"
    );
    anyhow::ensure!(
        live.next_event().await?.is_none(),
        "the stream ends with the paid order"
    );
    let paid = api.wait_for_status(&user, order, "PAID").await?;
    anyhow::ensure!(paid["payment_id"].is_string(), "{paid}");
    anyhow::ensure!(paid["user_id"] == serde_json::json!(user.id), "{paid}");

    api.wait_for_stock(kettle, (8, 0, 2)).await?;
    api.wait_for_stock(teapot, (4, 0, 1)).await?;
    let payments = api.payments_of(&user, order).await?;
    let list = payments.body["items"]
        .as_array()
        .or_else(|| payments.body.as_array())
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(
        list.iter().filter(|p| p["status"] == "succeeded").count() == 1,
        "payment log: {payments:?}"
    );
    let text = payments.body.to_string();
    anyhow::ensure!(!text.contains(GOOD_CARD), "the card number leaked: {text}");

    let order_ref = order.simple().to_string()[..8].to_owned();
    inbox
        .wait_for(&user.email, &["received", &order_ref])
        .await?;
    let receipts = inbox
        .wait_for(&user.email, &["receipt", &order_ref])
        .await?;
    anyhow::ensure!(receipts == 1, "{receipts} receipts for one order");

    let wanted = [
        "gateway",
        "notification-service",
        "order-service",
        "payment-service",
        "product-service",
    ];
    eventually(DEADLINE, || async {
        let services = trace_services(&trace_id).await?;
        let missing: Vec<&&str> = wanted
            .iter()
            .filter(|name| !services.iter().any(|s| s == **name))
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "trace {trace_id} has {services:?}, lacks {missing:?}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}

async fn out_of_stock(ctx: Ctx) -> anyhow::Result<()> {
    let (a, b, scarce) = (
        ctx.product(10, 100).await?,
        ctx.product(10, 100).await?,
        ctx.product(1, 100).await?,
    );
    let user = ctx.api.customer().await?;
    let order = ctx.placed(&user, &[(a, 1), (b, 2), (scarce, 2)]).await?;
    let rejected = ctx.api.wait_for_status(&user, order, "REJECTED").await?;
    anyhow::ensure!(rejected["status_reason"] == "out_of_stock", "{rejected}");
    for (product, stock) in [(a, 10), (b, 10), (scarce, 1)] {
        ctx.api.wait_for_stock(product, (stock, 0, 0)).await?;
    }
    let reply = ctx
        .api
        .pay(&user, order, GOOD_CARD, &Uuid::new_v4().to_string(), None)
        .await?;
    anyhow::ensure!(
        reply.status == StatusCode::CONFLICT,
        "paying a rejected order: {reply:?}"
    );
    Inbox::new()
        .wait_for(&user.email, &["could not accept"])
        .await
        .map(|_| ())
}

async fn succeeded_charges(api: &Api, order: Uuid) -> anyhow::Result<usize> {
    Ok(api
        .provider_charges(order)
        .await?
        .iter()
        .filter(|charge| charge["status"] == "succeeded")
        .count())
}

async fn declined_then_paid(ctx: Ctx) -> anyhow::Result<()> {
    let product = ctx.product(5, 700).await?;
    let user = ctx.api.customer().await?;
    let order = ctx.awaiting(&user, &[(product, 1)]).await?;
    let reply = ctx
        .api
        .pay(
            &user,
            order,
            DECLINED_CARD,
            &Uuid::new_v4().to_string(),
            None,
        )
        .await?;
    anyhow::ensure!(reply.body["status"] == "failed", "declined: {reply:?}");
    anyhow::ensure!(
        ctx.api.order(&user, order).await?.body["status"] == "AWAITING_PAYMENT",
        "a declined card must leave the order awaiting payment"
    );
    let reply = ctx
        .api
        .pay(&user, order, GOOD_CARD, &Uuid::new_v4().to_string(), None)
        .await?;
    anyhow::ensure!(reply.status.is_success(), "retry: {reply:?}");
    ctx.api.wait_for_status(&user, order, "PAID").await?;
    anyhow::ensure!(succeeded_charges(&ctx.api, order).await? == 1, "charges");
    Inbox::new()
        .wait_for(&user.email, &["payment", "failed"])
        .await
        .map(|_| ())
}

async fn same_key_twice(ctx: Ctx) -> anyhow::Result<()> {
    let product = ctx.product(5, 900).await?;
    let user = ctx.api.customer().await?;
    let order = ctx.awaiting(&user, &[(product, 1)]).await?;
    let key = Uuid::new_v4().to_string();
    let (first, second) = tokio::join!(
        ctx.api.pay(&user, order, GOOD_CARD, &key, None),
        ctx.api.pay(&user, order, GOOD_CARD, &key, None)
    );
    let (first, second) = (first?, second?);
    anyhow::ensure!(
        first.status.is_success() && second.status.is_success(),
        "{first:?} {second:?}"
    );
    anyhow::ensure!(
        first.body["id"] == second.body["id"],
        "{first:?} {second:?}"
    );
    ctx.api.wait_for_status(&user, order, "PAID").await?;
    anyhow::ensure!(succeeded_charges(&ctx.api, order).await? == 1, "charges");
    Ok(())
}

async fn slow_provider(ctx: Ctx) -> anyhow::Result<()> {
    let product = ctx.product(5, 1_100).await?;
    let user = ctx.api.customer().await?;
    let order = ctx.awaiting(&user, &[(product, 1)]).await?;
    let key = Uuid::new_v4().to_string();
    let reply = ctx.api.pay(&user, order, SLOW_CARD, &key, None).await?;
    anyhow::ensure!(reply.status.is_success(), "slow: {reply:?}");
    // Asking again with the same key while the provider is still working charges nothing new.
    let again = ctx.api.pay(&user, order, SLOW_CARD, &key, None).await?;
    anyhow::ensure!(again.body["id"] == reply.body["id"], "{reply:?} {again:?}");
    ctx.api.wait_for_status(&user, order, "PAID").await?;
    anyhow::ensure!(succeeded_charges(&ctx.api, order).await? == 1, "charges");
    Ok(())
}

async fn cancel_then_pay(ctx: Ctx) -> anyhow::Result<()> {
    let product = ctx.product(6, 1_300).await?;
    let user = ctx.api.customer().await?;
    let order = ctx.awaiting(&user, &[(product, 2)]).await?;
    ctx.api.wait_for_stock(product, (4, 2, 0)).await?;
    let reply = ctx.api.cancel(&user, order).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "cancel: {reply:?}");
    ctx.api.wait_for_stock(product, (6, 0, 0)).await?;
    // payment-service learns of the cancellation from order.events; once it has, paying is
    // refused. (A payment racing the cancellation is refunded instead; payment-service's own
    // tests cover that.)
    eventually(DEADLINE, || async {
        let reply = ctx
            .api
            .pay(&user, order, GOOD_CARD, &Uuid::new_v4().to_string(), None)
            .await?;
        anyhow::ensure!(
            reply.status == StatusCode::CONFLICT,
            "pay after cancel: {reply:?}"
        );
        Ok(())
    })
    .await?;
    anyhow::ensure!(
        ctx.api.order(&user, order).await?.body["status"] == "CANCELLED",
        "the order must stay cancelled"
    );
    Inbox::new()
        .wait_for(&user.email, &["was cancelled"])
        .await
        .map(|_| ())
}

async fn cross_user(ctx: Ctx) -> anyhow::Result<()> {
    let product = ctx.product(5, 500).await?;
    let (alice, mallory) = (ctx.api.customer().await?, ctx.api.customer().await?);
    let order = ctx.awaiting(&alice, &[(product, 1)]).await?;
    let reply = ctx
        .api
        .pay(&alice, order, GOOD_CARD, &Uuid::new_v4().to_string(), None)
        .await?;
    let payment = reply.body["id"].as_str().unwrap_or_default().to_owned();
    ctx.api.wait_for_status(&alice, order, "PAID").await?;

    let reply = ctx.api.order(&mallory, order).await?;
    anyhow::ensure!(reply.status == StatusCode::NOT_FOUND, "order: {reply:?}");
    let reply = ctx.api.cancel(&mallory, order).await?;
    anyhow::ensure!(reply.status == StatusCode::NOT_FOUND, "cancel: {reply:?}");
    let reply = ctx
        .api
        .send(
            ctx.api
                .client
                .get(ctx.api.url(&format!("/api/payments/{payment}")))
                .bearer_auth(&mallory.token),
        )
        .await?;
    anyhow::ensure!(reply.status == StatusCode::NOT_FOUND, "payment: {reply:?}");
    let reply = ctx.api.payments_of(&mallory, order).await?;
    let visible = reply.body["items"]
        .as_array()
        .or_else(|| reply.body.as_array())
        .map(Vec::len)
        .unwrap_or(0);
    anyhow::ensure!(
        reply.status == StatusCode::NOT_FOUND || visible == 0,
        "payments by order: {reply:?}"
    );
    let reply = ctx
        .api
        .pay(
            &mallory,
            order,
            GOOD_CARD,
            &Uuid::new_v4().to_string(),
            None,
        )
        .await?;
    anyhow::ensure!(
        reply.status == StatusCode::NOT_FOUND,
        "paying another's order: {reply:?}"
    );
    Ok(())
}

async fn customer_on_admin_route(ctx: Ctx) -> anyhow::Result<()> {
    let user = ctx.api.customer().await?;
    let reply = ctx
        .api
        .send(
            ctx.api
                .client
                .post(ctx.api.url("/api/products"))
                .bearer_auth(&user.token)
                .json(&serde_json::json!({"sku": "NOPE"})),
        )
        .await?;
    anyhow::ensure!(reply.status == StatusCode::FORBIDDEN, "{reply:?}");
    anyhow::ensure!(
        reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            == Some("application/problem+json"),
        "{reply:?}"
    );
    let reply = ctx
        .api
        .send(ctx.api.client.get(ctx.api.url("/api/orders")))
        .await?;
    anyhow::ensure!(
        reply.status == StatusCode::UNAUTHORIZED,
        "no token: {reply:?}"
    );
    Ok(())
}

async fn rate_limited_logins(ctx: &Ctx) -> anyhow::Result<()> {
    // Different e-mails, so user-service's own per-account throttling stays out of it.
    let attempts = STRICT_BURST as usize * 3;
    let emails: Vec<String> = (0..attempts)
        .map(|i| format!("nobody-{i}-{}@test.local", Uuid::new_v4().simple()))
        .collect();
    let replies = join_all(
        emails
            .iter()
            .map(|email| ctx.api.login(email, "wrong password")),
    )
    .await;
    let mut limited = 0;
    for reply in replies {
        let reply = reply?;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            anyhow::ensure!(reply.headers.contains_key("retry-after"), "{reply:?}");
            limited += 1;
        } else {
            anyhow::ensure!(reply.status == StatusCode::UNAUTHORIZED, "{reply:?}");
        }
    }
    anyhow::ensure!(
        limited > 0,
        "{attempts} logins in a burst were never limited"
    );
    Ok(())
}

/// A paid order's refund request, approved by the decision table (small amount, first refund,
/// damaged goods): the `refund` process on the workflow engine refunds the charge at the
/// provider once, the order ends REFUNDED, the customer gets the refund mail, and the request
/// shows every step it went through.
async fn refund_approved_automatically(ctx: Ctx) -> anyhow::Result<()> {
    let api = &ctx.api;
    let inbox = Inbox::new();
    let mug = ctx.product(5, 1_250).await?;
    let user = api.customer().await?;
    let order = ctx.awaiting(&user, &[(mug, 2)]).await?;
    let reply = api
        .pay(&user, order, GOOD_CARD, &Uuid::new_v4().to_string(), None)
        .await?;
    anyhow::ensure!(reply.status.is_success(), "pay: {reply:?}");
    api.wait_for_status(&user, order, "PAID").await?;

    let requests = api.url(&format!("/api/orders/{order}/refund-requests"));
    let reply = api
        .send(
            api.client
                .post(&requests)
                .bearer_auth(&user.token)
                .json(&serde_json::json!({"reason": "damaged", "items": [{"product_id": mug, "quantity": 1}]})),
        )
        .await?;
    anyhow::ensure!(
        reply.status == StatusCode::CREATED,
        "refund request: {reply:?}"
    );
    api.wait_for_status(&user, order, "REFUNDED").await?;

    // Money back exactly once: one charge, refunded in full.
    let charges = api.provider_charges(order).await?;
    anyhow::ensure!(charges.len() == 1, "charges: {charges:?}");
    anyhow::ensure!(
        charges[0]["refunded"] == true && charges[0]["amount_refunded"] == 2 * 1_250,
        "charge: {charges:?}"
    );
    let order_ref = order.simple().to_string()[..8].to_uppercase();
    let mails = inbox
        .wait_for(&user.email, &["refund", &order_ref, "25.00"])
        .await?;
    anyhow::ensure!(mails == 1, "{mails} refund mails");

    // The order is REFUNDED while the process is still in its `mark-refunded` task: the
    // engine records the rest (the goods-back choice, the end event) after that task is
    // reported, so the steps are read until the end event is among them (a CI run read them
    // in between and missed `refunded`).
    eventually(DEADLINE, || async {
        let reply = api
            .send(api.client.get(&requests).bearer_auth(&user.token))
            .await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "refund requests: {reply:?}");
        let request = &reply.body["items"][0];
        anyhow::ensure!(request["status"] == "REFUNDED", "request: {request}");
        let steps: Vec<&str> = request["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|step| step["activity"].as_str())
            .collect();
        for step in ["decide", "pay-back", "mark-refunded", "refunded"] {
            anyhow::ensure!(steps.contains(&step), "step {step} missing: {steps:?}");
        }
        anyhow::ensure!(!steps.contains(&"approve"), "went to an admin: {steps:?}");
        Ok(())
    })
    .await?;
    // A refunded order is not refunded again.
    let reply = api
        .send(
            api.client
                .post(&requests)
                .bearer_auth(&user.token)
                .json(&serde_json::json!({"reason": "damaged"})),
        )
        .await?;
    anyhow::ensure!(
        reply.status == StatusCode::CONFLICT,
        "second request: {reply:?}"
    );
    Ok(())
}

/// Stock conservation for every product, and per order: charges that stuck (succeeded minus
/// refunded) = 1 if the order is PAID, else 0. Summed, that is "succeeded charges = PAID
/// orders + refunds".
async fn invariants(ctx: &Ctx) -> anyhow::Result<()> {
    let (products, orders) = match ctx.ledger.lock() {
        Ok(ledger) => (ledger.products.clone(), ledger.orders.clone()),
        Err(_) => anyhow::bail!("ledger poisoned"),
    };
    for (product, initial) in products {
        let (available, reserved, sold) = ctx.api.stock(product).await?;
        anyhow::ensure!(
            available + reserved + sold == initial,
            "product {product}: {available} + {reserved} + {sold} != {initial}"
        );
    }
    for (order, user) in orders {
        // Every accepted order reaches a state that no longer waits on the platform (a
        // customer's own pending payment decision excepted).
        let reply = ctx.api.order(&user, order).await?;
        let status = reply.body["status"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(status != "PENDING", "order {order} is still PENDING");
        let charges = ctx.api.provider_charges(order).await?;
        let stuck = charges
            .iter()
            .filter(|charge| charge["status"] == "succeeded" && !is_refunded(charge))
            .count();
        let expected = usize::from(status == "PAID");
        anyhow::ensure!(
            stuck == expected,
            "order {order} is {status} with {stuck} charge(s) kept: {charges:?}"
        );
    }
    Ok(())
}

fn is_refunded(charge: &Value) -> bool {
    charge["refunded"].as_bool().unwrap_or(false)
        || charge["amount_refunded"].as_i64().unwrap_or(0) > 0
}

/// "Sign in with Google" as the storefront does it, entirely through the gateway and the
/// stand-in's login page: the gateway must pass user-service's 302s and the provider's query
/// string through untouched. A new address gets an account (and its welcome mail); an
/// existing customer's address signs into that customer's account.
async fn google_sign_in(ctx: Ctx) -> anyhow::Result<()> {
    use testkit::oidc_standin::{browser, location, log_in_at_provider, param};

    async fn sign_in(ctx: &Ctx, email: &str) -> anyhow::Result<Value> {
        let browser = browser()?;
        let to_provider = location(
            browser
                .get(
                    ctx.api
                        .url("/api/users/oidc/google/authorize?return_to=%2Forders%3Fpage%3D2"),
                )
                .send()
                .await?,
        )
        .await?;
        let back = log_in_at_provider(&browser, &to_provider, email, None).await?;
        // The provider sends the browser to the redirect URI: the gateway's callback.
        anyhow::ensure!(
            back.as_str()
                .starts_with(&ctx.api.url("/api/users/oidc/google/callback?")),
            "the provider redirected elsewhere: {back}"
        );
        let complete = location(browser.get(back).send().await?).await?;
        anyhow::ensure!(
            complete.path() == "/signin/complete"
                && param(&complete, "return_to").as_deref() == Some("/orders?page=2"),
            "{complete}"
        );
        let ticket =
            param(&complete, "ticket").ok_or_else(|| anyhow::anyhow!("no ticket: {complete}"))?;
        let tokens = ctx
            .api
            .send(
                ctx.api
                    .client
                    .post(ctx.api.url("/api/users/oidc/tickets"))
                    .json(&serde_json::json!({"ticket": ticket})),
            )
            .await?;
        anyhow::ensure!(tokens.status == StatusCode::OK, "ticket: {tokens:?}");
        let token = tokens.body["access_token"].as_str().unwrap_or_default();
        let me = ctx
            .api
            .send(
                ctx.api
                    .client
                    .get(ctx.api.url("/api/users/me"))
                    .bearer_auth(token),
            )
            .await?;
        anyhow::ensure!(me.status == StatusCode::OK, "me: {me:?}");
        Ok(me.body)
    }

    let newcomer = format!("g-{}@test.local", Uuid::new_v4().simple());
    let me = sign_in(&ctx, &newcomer).await?;
    anyhow::ensure!(me["email"] == newcomer.as_str(), "{me}");
    Inbox::new().wait_for(&newcomer, &["welcome"]).await?;

    let customer = ctx.api.customer().await?;
    let me = sign_in(&ctx, &customer.email).await?;
    anyhow::ensure!(
        me["id"] == customer.id.to_string().as_str(),
        "not the existing account: {me}"
    );
    Ok(())
}
