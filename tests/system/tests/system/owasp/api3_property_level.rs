//! API3:2023 Broken object property-level authorization.
//!
//! Mass assignment: every write body with a field the caller must not set (`role`, `price`,
//! `unit_price`, `total`, `status`, `stock`, `sold`, `version`, `user_id`, `amount`, ...) is
//! refused with 422 naming the field; the services deny unknown fields, so nothing is
//! silently ignored either, and a read afterwards shows nothing changed.
//!
//! Excessive data exposure: no read (profile, orders, payments, notifications, preferences,
//! products, search, refund requests) carries a private field: password or its hash, card
//! number or CVC, the payment's fingerprint or idempotency key, the order's request hash,
//! outbox bookkeeping, the product's reservations (other customers' order ids), MongoDB ids.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Owasp, expect_problem};
use crate::api::GOOD_CARD;

/// Keys no answer may contain, at any depth.
const PRIVATE_KEYS: [&str; 20] = [
    "password",
    "password_hash",
    "hash",
    "token_hash",
    "family_id",
    "fingerprint",
    "idempotency_key",
    "request_hash",
    "pending_events",
    "outbox_pending",
    "outbox_claimed_until",
    "reservations",
    "_id",
    "cvc",
    "number",
    "card_number",
    "api_key",
    "secret",
    "last_error_detail",
    "internal",
];

fn private_keys(value: &Value, path: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if PRIVATE_KEYS.contains(&key.as_str()) {
                    found.push(format!("{path}.{key}"));
                }
                private_keys(inner, &format!("{path}.{key}"), found);
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                private_keys(inner, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let (account, other) = tokio::try_join!(ctx.account(), ctx.account())?;
    let token = Some(account.user.token.as_str());
    let product = ctx.product(10).await?;
    let (order, payment) = ctx.paid_order(&account.user, product).await?;
    let open = ctx.awaiting_order(&account.user, product).await?;

    let address = json!({"name": "A", "line1": "1 Street", "city": "Town",
        "postal_code": "12345", "country": "DE"});
    let card = json!({"number": GOOD_CARD, "exp_month": 12, "exp_year": 2035, "cvc": "123"});
    let item = json!({"product_id": product, "quantity": 1});
    let email = format!("mass-{}@test.local", Uuid::new_v4().simple());
    let writes: Vec<(Method, String, Option<&str>, Value, &str)> = vec![
        (
            Method::POST,
            "/api/users/register".into(),
            None,
            json!({"email": email, "password": "long enough pw", "name": "M", "role": "admin"}),
            "role",
        ),
        (
            Method::POST,
            "/api/users/login".into(),
            None,
            json!({"email": account.user.email, "password": account.password, "role": "admin"}),
            "role",
        ),
        (
            Method::PATCH,
            "/api/users/me".into(),
            token,
            json!({"role": "admin"}),
            "role",
        ),
        (
            Method::PATCH,
            "/api/users/me".into(),
            token,
            json!({"email": "x@test.local"}),
            "email",
        ),
        (
            Method::PATCH,
            "/api/users/me".into(),
            token,
            json!({"id": other.user.id}),
            "id",
        ),
        (
            Method::POST,
            "/api/orders".into(),
            token,
            json!({"items": [item], "shipping_address": address, "status": "PAID"}),
            "status",
        ),
        (
            Method::POST,
            "/api/orders".into(),
            token,
            json!({"items": [item], "shipping_address": address, "total": {"amount": 1, "currency": "EUR"}}),
            "total",
        ),
        (
            Method::POST,
            "/api/orders".into(),
            token,
            json!({"items": [item], "shipping_address": address, "user_id": other.user.id}),
            "user_id",
        ),
        (
            Method::POST,
            "/api/orders".into(),
            token,
            json!({"items": [{"product_id": product, "quantity": 1, "unit_price": {"amount": 1, "currency": "EUR"}}],
                "shipping_address": address}),
            "unit_price",
        ),
        (
            Method::POST,
            "/api/orders".into(),
            token,
            json!({"items": [{"product_id": product, "quantity": 1, "price": 1}],
                "shipping_address": address}),
            "price",
        ),
        (
            Method::POST,
            "/api/payments".into(),
            token,
            json!({"order_id": open, "card": card, "amount": 1}),
            "amount",
        ),
        (
            Method::POST,
            "/api/payments".into(),
            token,
            json!({"order_id": open, "card": card, "status": "succeeded"}),
            "status",
        ),
        (
            Method::POST,
            format!("/api/orders/{order}/refund-requests"),
            token,
            json!({"reason": "damaged", "status": "APPROVED"}),
            "status",
        ),
        (
            Method::POST,
            format!("/api/orders/{order}/refund-requests"),
            token,
            json!({"reason": "damaged", "amount": 999_999}),
            "amount",
        ),
        (
            Method::PUT,
            "/api/notifications/preferences".into(),
            token,
            json!({"email": true, "sms": true, "user_id": other.user.id}),
            "user_id",
        ),
        (
            Method::POST,
            "/api/products".into(),
            Some(&ctx.admin),
            json!({"sku": format!("MA-{}", Uuid::new_v4().simple()), "name": "n", "description": "d",
                "category": "c", "tags": [], "price": {"amount": 100, "currency": "EUR"}, "specs": {},
                "images": [], "initial_stock": 1, "stock": {"available": 1000, "reserved": 0}}),
            "stock",
        ),
        (
            Method::POST,
            "/api/products".into(),
            Some(&ctx.admin),
            json!({"sku": format!("MA-{}", Uuid::new_v4().simple()), "name": "n", "description": "d",
                "category": "c", "tags": [], "price": {"amount": 100, "currency": "EUR"}, "specs": {},
                "images": [], "initial_stock": 1, "sold": 50}),
            "sold",
        ),
        (
            Method::PATCH,
            format!("/api/products/{product}"),
            Some(&ctx.admin),
            json!({"version": 1, "stock": {"available": 1000, "reserved": 0}}),
            "stock",
        ),
        (
            Method::PATCH,
            format!("/api/products/{product}"),
            Some(&ctx.admin),
            json!({"version": 1, "id": Uuid::new_v4()}),
            "id",
        ),
        (
            Method::POST,
            format!("/api/products/{product}/stock"),
            Some(&ctx.admin),
            json!({"delta": 1, "reason": "restock", "sold": 0}),
            "sold",
        ),
    ];
    for (method, path, token, body, field) in &writes {
        let reply = ctx.call(method.clone(), path, *token, body).await?;
        let what = format!("{method} {path} with `{field}`");
        expect_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, &what)?;
        anyhow::ensure!(
            reply.body.to_string().contains(field),
            "{what}: the problem does not name the field: {reply:?}"
        );
    }
    // Nothing changed.
    let me = ctx.get("/api/users/me", token).await?;
    anyhow::ensure!(
        me.body["role"] == "customer",
        "role after mass assignment: {me:?}"
    );
    let stock = ctx.api.stock(product).await?;
    anyhow::ensure!(stock == (8, 1, 1), "stock after mass assignment: {stock:?}");

    // Reads carry no private field.
    let login = ctx
        .api
        .login(&account.user.email, &account.password)
        .await?;
    let reads = [
        ctx.get("/api/users/me", token).await?,
        ctx.get(&format!("/api/orders/{order}"), token).await?,
        ctx.get("/api/orders", token).await?,
        ctx.get(&format!("/api/payments/{payment}"), token).await?,
        ctx.get(&format!("/api/payments?order_id={order}"), token)
            .await?,
        ctx.get("/api/notifications", token).await?,
        ctx.get("/api/notifications/preferences", token).await?,
        ctx.get(&format!("/api/products/{product}"), None).await?,
        ctx.get("/api/products?category=system-test&limit=5", None)
            .await?,
        ctx.get("/api/products/suggest?q=system", None).await?,
        ctx.get(&format!("/api/orders/{order}/refund-requests"), token)
            .await?,
        ctx.get("/api/admin/orders", Some(&ctx.admin)).await?,
        login,
    ];
    let mut found = Vec::new();
    for reply in &reads {
        anyhow::ensure!(reply.status == StatusCode::OK, "read: {reply:?}");
        private_keys(&reply.body, "", &mut found);
        let text = reply.body.to_string();
        for secret in [GOOD_CARD, account.password.as_str()] {
            anyhow::ensure!(!text.contains(secret), "a read shows a secret: {reply:?}");
        }
    }
    anyhow::ensure!(found.is_empty(), "private fields in reads: {found:?}");
    Ok(())
}
