//! Creating, reading, changing and deleting products; bad input is a 4xx naming the problem.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestResult, product_body, spawn_app, string};

#[tokio::test]
async fn a_created_product_can_be_read_and_is_listed() -> TestResult {
    let app = spawn_app().await;
    let created = app.created(&product_body("kt-100")).await?;
    assert_eq!(created["sku"], "KT-100", "SKUs are stored upper-case");
    assert_eq!(created["version"], 1);
    assert_eq!(created["active"], true);
    assert_eq!(
        created["stock"],
        json!({"available": 10, "reserved": 0, "sold": 0})
    );
    assert_eq!(
        created["specs"]["dimensions"]["materials"][1]["lid"],
        "glass"
    );
    let id = string(&created["id"])?;

    let read = app.get(&format!("/api/products/{id}")).await?;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, created);

    let listed = app.get("/api/products").await?;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"], json!([created]));
    assert!(listed.body["next_cursor"].is_null());
    Ok(())
}

#[tokio::test]
async fn duplicate_skus_are_refused_with_409_whatever_their_case() -> TestResult {
    let app = spawn_app().await;
    app.created(&product_body("DUP-1")).await?;
    let again = app.create(&product_body("dup-1")).await?;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    Ok(())
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() -> TestResult {
    let app = spawn_app().await;
    for path in [
        "/api/products/0192f7c2-0000-7000-8000-000000000000",
        "/api/products/not-a-uuid",
        "/api/products/507f1f77bcf86cd799439011",
        "/api/products/%00",
    ] {
        let reply = app.get(path).await?;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}: {reply:?}");
    }
    let patched = app
        .patch("nope", &json!({"version": 1, "name": "x"}))
        .await?;
    assert_eq!(patched.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete("nope").await?.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.adjust("nope", 1, "restock").await?.status,
        StatusCode::NOT_FOUND
    );
    Ok(())
}

#[tokio::test]
async fn invalid_fields_are_422_and_each_is_named() -> TestResult {
    let app = spawn_app().await;
    let mut body = product_body("ok-1");
    body["sku"] = json!("a");
    body["name"] = json!("  ");
    body["category"] = json!("Not A Slug!");
    body["price"] = json!({"amount": 0, "currency": "XXX"});
    body["specs"] = json!({"$where": "1"});
    body["images"] = json!([{"url": "ftp://x", "alt": ""}]);
    body["initial_stock"] = json!(-1);
    let reply = app.create(&body).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = reply.fields();
    fields.sort();
    assert_eq!(
        fields,
        [
            "category",
            "images[0].url",
            "initial_stock",
            "name",
            "price.amount",
            "price.currency",
            "sku",
            "specs.$where"
        ]
    );

    let mut too_big = product_body("ok-2");
    too_big["price"]["amount"] = json!(100_000_001);
    assert_eq!(app.create(&too_big).await?.fields(), ["price.amount"]);

    let mut wrong_type = product_body("ok-3");
    wrong_type["price"]["amount"] = json!("12.50");
    let reply = app.create(&wrong_type).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.fields(), ["price.amount"]);

    let mut unknown = product_body("ok-4");
    unknown["colour"] = json!("red");
    assert_eq!(
        app.create(&unknown).await?.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let missing =
        json!({"sku": "ok-5", "category": "x", "price": {"amount": 1, "currency": "EUR"}});
    assert_eq!(app.create(&missing).await?.fields(), ["name"]);
    Ok(())
}

#[tokio::test]
async fn malformed_json_is_400_never_500() -> TestResult {
    let app = spawn_app().await;
    let reply = app
        .send(
            app.client
                .post(app.url("/api/products"))
                .bearer_auth(&app.admin_token)
                .header("content-type", "application/json")
                .body("{\"sku\": "),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn patch_needs_the_current_version_and_rejects_unknown_fields() -> TestResult {
    let app = spawn_app().await;
    let created = app.created(&product_body("PATCH-1")).await?;
    let id = string(&created["id"])?;

    let renamed = app
        .patch(
            &id,
            &json!({"version": 1, "name": "Kettle 2", "price": {"amount": 2500, "currency": "USD"}, "specs": {"a": {"b": 1}}}),
        )
        .await?;
    assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");
    assert_eq!(renamed.body["version"], 2);
    assert_eq!(renamed.body["name"], "Kettle 2");
    assert_eq!(
        renamed.body["price"],
        json!({"amount": 2500, "currency": "USD"})
    );
    assert_eq!(renamed.body["specs"], json!({"a": {"b": 1}}));
    assert_eq!(renamed.body["sku"], "PATCH-1");

    let stale = app
        .patch(&id, &json!({"version": 1, "name": "Lost update"}))
        .await?;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{stale:?}");

    let unknown = app
        .patch(&id, &json!({"version": 2, "sku": "OTHER"}))
        .await?;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing_version = app.patch(&id, &json!({"name": "x"})).await?;
    assert_eq!(missing_version.fields(), ["version"]);
    let empty = app.patch(&id, &json!({"version": 2})).await?;
    assert_eq!(empty.fields(), ["body"]);
    let bad = app
        .patch(
            &id,
            &json!({"version": 2, "price": {"amount": -5, "currency": "EUR"}}),
        )
        .await?;
    assert_eq!(bad.fields(), ["price.amount"]);

    // The reading side sees the change at once (local writes invalidate the cache).
    let read = app.get(&format!("/api/products/{id}")).await?;
    assert_eq!(read.body["name"], "Kettle 2");
    Ok(())
}

#[tokio::test]
async fn deleted_products_disappear_from_reads_and_further_writes() -> TestResult {
    let app = spawn_app().await;
    let created = app.created(&product_body("DEL-1")).await?;
    let id = string(&created["id"])?;
    // Warm the cache first: deleting must invalidate it.
    assert_eq!(
        app.get(&format!("/api/products/{id}")).await?.status,
        StatusCode::OK
    );

    let deleted = app.delete(&id).await?;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/products/{id}")).await?.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/api/products").await?.body["items"], json!([]));
    assert_eq!(app.delete(&id).await?.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.patch(&id, &json!({"version": 2, "name": "x"}))
            .await?
            .status,
        StatusCode::NOT_FOUND
    );
    // The document stays, marked inactive.
    let document = app.document(&id).await?;
    assert!(!document.get_bool("active")?);
    Ok(())
}
