//! API7:2023 Server-side request forgery. The only URLs a client hands the platform are
//! product image URLs, and no service ever fetches them: they are stored and shown, and the
//! shopper's browser loads them (the gateway's CSP allows images from HTTPS hosts only). The
//! proof: image URLs pointing at a listener this test owns (plain TCP, counting
//! connections), on create and on update, read back, searched, replicated to order-service
//! and reserved for an order; the listener never sees a connection.
//! Redirects from the third parties are not followed either (API10 proves it).

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use super::Owasp;

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let trap = &ctx.fakes.trap;
    let sku = format!("SSRF-{}", Uuid::new_v4().simple());
    let created = ctx
        .call(
            Method::POST,
            "/api/products",
            Some(&ctx.admin),
            &json!({"sku": sku, "name": "Trap kettle", "description": "image on a private host",
                "category": "system-test", "tags": ["ssrf"], "price": {"amount": 500, "currency": "EUR"},
                "specs": {}, "images": [
                    {"url": format!("{trap}/created.png"), "alt": "trap"},
                    {"url": format!("{trap}/../../etc/passwd"), "alt": "path"},
                ],
                "initial_stock": 5}),
        )
        .await?;
    anyhow::ensure!(created.status == StatusCode::CREATED, "create: {created:?}");
    let id: Uuid = created.body["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no id: {created:?}"))?
        .parse()?;
    let version = created.body["version"].as_i64().unwrap_or(1);
    let patched = ctx
        .call(
            Method::PATCH,
            &format!("/api/products/{id}"),
            Some(&ctx.admin),
            &json!({"version": version, "images": [{"url": format!("{trap}/updated.png"), "alt": "trap"}]}),
        )
        .await?;
    anyhow::ensure!(patched.status == StatusCode::OK, "update: {patched:?}");
    // Everything that handles a product: reads, search, order-service's replica (the order
    // is priced from it) and product-service's reservation.
    let read = ctx.get(&format!("/api/products/{id}"), None).await?;
    anyhow::ensure!(
        read.body.to_string().contains("updated.png"),
        "the image URL is shown as given: {read:?}"
    );
    crate::api::eventually(crate::api::DEADLINE, || async {
        let found = ctx.get("/api/products?q=trap+kettle", None).await?;
        anyhow::ensure!(
            found.body.to_string().contains(&id.to_string()),
            "not found yet"
        );
        Ok(())
    })
    .await?;
    let buyer = ctx.account().await?;
    ctx.awaiting_order(&buyer.user, id).await?;
    anyhow::ensure!(
        ctx.fakes.trap_hits() == 0,
        "a server fetched a product image URL ({} connection(s) to {trap})",
        ctx.fakes.trap_hits()
    );
    Ok(())
}
