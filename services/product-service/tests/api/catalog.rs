//! The read model: own writes at once, other replicas' writes within a polled deadline, a late
//! replica catching up from the log, readiness red until the initial load is complete.

use std::time::Duration;

use auth::{KeySource, SigningKey};
use product_service::Application;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestResult, eventually, fresh_database, product_body, spawn_app, spawn_replica,
    string, test_config, wait_until_ready,
};

async fn ids(app: &TestApp, query: &str) -> anyhow::Result<Vec<String>> {
    let reply = app.get(&format!("/api/products?{query}")).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "{query}: {reply:?}");
    reply.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| string(&item["id"]))
        .collect()
}

#[tokio::test]
async fn an_admin_sees_their_own_write_at_once_in_pages_listings_and_search() -> TestResult {
    let app = spawn_app().await;
    let mut body = product_body("OWN-1");
    body["name"] = json!("Walnut chopping board");
    let created = app.created(&body).await?;
    let id = string(&created["id"])?;
    // No polling: the write path applied the snapshot before answering.
    assert_eq!(app.get(&format!("/api/products/{id}")).await?.body, created);
    assert_eq!(ids(&app, "q=walnut").await?, std::slice::from_ref(&id));

    let patched = app
        .patch(&id, &json!({"version": 1, "name": "Oak chopping board"}))
        .await?;
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(ids(&app, "q=oak").await?, std::slice::from_ref(&id));
    assert!(ids(&app, "q=walnut").await?.is_empty());

    let adjusted = app.adjust(&id, -10, "sold out at the fair").await?;
    assert_eq!(adjusted.status, StatusCode::OK, "{adjusted:?}");
    assert!(ids(&app, "in_stock=true").await?.is_empty());

    app.delete(&id).await?;
    assert_eq!(
        app.get(&format!("/api/products/{id}")).await?.status,
        StatusCode::NOT_FOUND
    );
    assert!(ids(&app, "q=oak").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn another_replicas_write_shows_within_a_polled_deadline() -> TestResult {
    let a = spawn_app().await;
    let b = spawn_replica(&a, |_| {}).await;
    let mut body = product_body("REPL-1");
    body["name"] = json!("Bamboo steamer");
    let created = a.created(&body).await?;
    let id = string(&created["id"])?;
    let path = format!("/api/products/{id}");
    eventually(Duration::from_secs(30), || async {
        anyhow::ensure!(b.get(&path).await?.status == StatusCode::OK, "not on B yet");
        anyhow::ensure!(
            ids(&b, "q=bamboo").await? == [id.clone()],
            "not searchable on B yet"
        );
        Ok(())
    })
    .await?;

    a.patch(&id, &json!({"version": 1, "name": "Bamboo rice steamer"}))
        .await?;
    eventually(Duration::from_secs(30), || async {
        let seen = b.get(&path).await?;
        anyhow::ensure!(
            seen.body["version"] == 2,
            "B serves {}",
            seen.body["version"]
        );
        Ok(())
    })
    .await?;
    assert_eq!(b.get(&path).await?.body["name"], "Bamboo rice steamer");
    Ok(())
}

#[tokio::test]
async fn a_replica_started_late_catches_up_from_the_log_before_it_is_ready() -> TestResult {
    let a = spawn_app().await;
    let mut kept = Vec::new();
    for i in 0..3 {
        let mut body = product_body(&format!("LATE-{i}"));
        body["name"] = json!(format!("Copper pot {i}"));
        kept.push(string(&a.created(&body).await?["id"])?);
    }
    let gone = kept.remove(0);
    a.delete(&gone).await?;
    a.patch(&kept[0], &json!({"version": 1, "name": "Copper pan"}))
        .await?;
    a.wait_for_empty_outbox().await?;

    // spawn_replica returns once B is ready, i.e. loaded: no polling needed.
    let b = spawn_replica(&a, |config| config.run_outbox_relay = false).await;
    let mut listed = ids(&b, "q=copper").await?;
    listed.sort();
    let mut expected = kept.clone();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(
        b.get(&format!("/api/products/{}", kept[0])).await?.body["name"],
        "Copper pan"
    );
    assert_eq!(
        b.get(&format!("/api/products/{gone}")).await?.status,
        StatusCode::NOT_FOUND
    );
    Ok(())
}

#[tokio::test]
async fn readiness_is_red_until_the_initial_load_is_complete() -> TestResult {
    let database = fresh_database().await?;
    let prefix = format!("test-{}.", uuid::Uuid::new_v4().simple());
    let key = SigningKey::generate()?;
    let app = Application::build_with_keys(
        test_config(&database, &prefix),
        KeySource::Static(key.jwks()?),
    )
    .await?;
    let catalog = app.catalog().clone();
    // Built but not running: nothing has been read from the topic yet.
    assert!(!catalog.is_loaded());
    let port = app.port();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let address = format!("http://127.0.0.1:{port}");
    wait_until_ready(&address).await?;
    assert!(catalog.is_loaded());
    let ready: Value = reqwest::get(format!("{address}/health/ready"))
        .await?
        .json()
        .await?;
    assert_eq!(ready["checks"]["catalog"]["status"], "up", "{ready}");
    let metrics = reqwest::get(format!("{address}/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("catalog_read_model_loaded"),
        "the load is exported"
    );
    Ok(())
}
