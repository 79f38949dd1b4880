//! Cross-replica cache invalidation through `product.events`.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestResult, eventually, product_body, spawn_app, spawn_replica, string};

#[tokio::test]
async fn a_write_through_one_replica_shows_on_another_long_before_the_ttl() -> TestResult {
    let a = spawn_app().await;
    let b = spawn_replica(&a, |config| config.cache_ttl = Duration::from_secs(600)).await;
    let created = a.created(&product_body("CACHE-1")).await?;
    let id = string(&created["id"])?;
    let path = format!("/api/products/{id}");
    // B caches version 1.
    assert_eq!(b.get(&path).await?.body["name"], created["name"]);

    let patched = a
        .patch(&id, &json!({"version": 1, "name": "Renamed"}))
        .await?;
    assert_eq!(patched.body["version"], 2, "{patched:?}");
    eventually(Duration::from_secs(30), || async {
        let seen = b.get(&path).await?;
        anyhow::ensure!(
            seen.body["version"] == 2,
            "B still serves {}",
            seen.body["version"]
        );
        Ok(())
    })
    .await?;
    assert_eq!(b.get(&path).await?.body["name"], "Renamed");
    Ok(())
}
