//! Stock adjustments: atomic, never below zero, each one logged so the books balance.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestResult, product_body, spawn_app, string};

#[tokio::test]
async fn adjustments_change_available_stock_but_never_below_zero() -> TestResult {
    let app = spawn_app().await;
    let created = app.created(&product_body("STOCK-1")).await?;
    let id = string(&created["id"])?;

    let added = app.adjust(&id, 5, "delivery from supplier").await?;
    assert_eq!(added.status, StatusCode::OK, "{added:?}");
    assert_eq!(added.body["stock"]["available"], 15);
    assert_eq!(added.body["version"], 2);

    let too_many = app.adjust(&id, -16, "stocktake").await?;
    assert_eq!(too_many.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(too_many.fields(), ["delta"]);

    let to_zero = app.adjust(&id, -15, "stocktake").await?;
    assert_eq!(to_zero.body["stock"]["available"], 0);
    assert_eq!(
        app.adjust(&id, -1, "x").await?.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Bad requests name their field.
    let stock = format!("/api/products/{id}/stock");
    assert_eq!(app.adjust(&id, 0, "nothing").await?.fields(), ["delta"]);
    assert_eq!(app.adjust(&id, 1, "   ").await?.fields(), ["reason"]);
    let no_reason = app.post_as_admin(&stock, &json!({"delta": 1})).await?;
    assert_eq!(no_reason.fields(), ["reason"]);
    let fractional = app
        .post_as_admin(&stock, &json!({"delta": 1.5, "reason": "x"}))
        .await?;
    assert_eq!(fractional.fields(), ["delta"]);
    Ok(())
}

#[tokio::test]
async fn fifty_concurrent_removals_of_ten_units_let_exactly_ten_through() -> TestResult {
    let app = spawn_app().await;
    let created = app.created(&product_body("STOCK-RACE")).await?;
    let id = string(&created["id"])?;

    // A writer that keeps losing the race to the other writers of the product gives up after
    // its bounded retries with 503 (retry later), which a client retries.
    let outcomes = join_all((0..50).map(|_| async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let reply = app.adjust(&id, -1, "sold at the counter").await?;
            if reply.status != StatusCode::SERVICE_UNAVAILABLE
                || std::time::Instant::now() > deadline
            {
                return anyhow::Ok(reply);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }))
    .await;
    let mut ok = 0;
    for outcome in outcomes {
        match outcome?.status {
            StatusCode::OK => ok += 1,
            StatusCode::UNPROCESSABLE_ENTITY => {}
            other => anyhow::bail!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 10);
    let read = app.get(&format!("/api/products/{id}")).await?;
    assert_eq!(read.body["stock"]["available"], 0);
    assert_eq!(read.body["version"], 11);
    Ok(())
}

#[tokio::test]
async fn initial_stock_plus_adjustments_equals_available_reserved_and_sold() -> TestResult {
    let app = spawn_app().await;
    let created = app.created(&product_body("STOCK-BOOKS")).await?;
    let id = string(&created["id"])?;
    for (delta, reason) in [
        (7, "delivery"),
        (-3, "damaged"),
        (-20, "refused"),
        (2, "return"),
    ] {
        app.adjust(&id, delta, reason).await?;
    }
    let document = app.document(&id).await?;
    let initial = document.get_i64("initial_stock")?;
    let log: i64 = document
        .get_array("adjustments")?
        .iter()
        .filter_map(|entry| entry.as_document()?.get_i64("delta").ok())
        .sum();
    assert_eq!(log, document.get_i64("adjusted_total")?);
    assert_eq!(
        document.get_array("adjustments")?.len(),
        3,
        "refused ones are not logged"
    );
    let stock = document.get_document("stock")?;
    let held =
        stock.get_i64("available")? + stock.get_i64("reserved")? + document.get_i64("sold")?;
    assert_eq!(initial + log, held);
    assert_eq!(held, 16);
    Ok(())
}
