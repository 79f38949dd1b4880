//! The per-product write lock: writers take turns, and a lock left by a crash expires.

use std::time::Duration;

use mongodb::bson::{self, Document, doc};
use product_service::store::locks::{self, COLLECTION};
use reqwest::StatusCode;

use crate::helpers::{TestResult, product_body, spawn_app, string};

#[tokio::test]
async fn a_held_lock_makes_others_wait_and_a_released_one_is_free() -> TestResult {
    let app = spawn_app().await;
    let locks = locks::products(&app.db);
    let held = locks.acquire("p-1", Duration::ZERO).await?;
    assert!(held.is_some());
    assert!(
        locks
            .acquire("p-1", Duration::from_millis(100))
            .await?
            .is_none()
    );
    assert!(
        locks.acquire("p-2", Duration::ZERO).await?.is_some(),
        "per product"
    );
    if let Some(held) = held {
        held.release().await?;
    }
    assert!(locks.acquire("p-1", Duration::ZERO).await?.is_some());
    Ok(())
}

#[tokio::test]
async fn a_lock_left_by_a_crashed_writer_expires() -> TestResult {
    let app = spawn_app().await;
    let created = app.created(&product_body("LOCK-1")).await?;
    let id = string(&created["id"])?;
    // The relay holds the lock while it publishes the creation; let it finish.
    app.wait_for_empty_outbox().await?;
    // A writer died holding the lock; its lease ran out a second ago.
    let expired = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - 1_000);
    app.db
        .collection::<Document>(COLLECTION)
        .insert_one(doc! {"_id": &id, "owner": "crashed", "until": expired})
        .await?;
    let adjusted = app.adjust(&id, 1, "recount").await?;
    assert_eq!(adjusted.status, StatusCode::OK, "{adjusted:?}");
    Ok(())
}
