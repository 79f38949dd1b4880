//! SIGTERM under load, against the real binary: requests in flight finish, no 5xx is served,
//! the process exits cleanly, and every product answered 201 has its `product.created.v1` on
//! the broker with nothing left pending in the documents.

use std::process::{Command, Stdio};
use std::time::Duration;

use auth::{Role, SigningKey, TokenIssuer};
use axum::routing::get;
use contracts::topics::PRODUCT_EVENTS;
use mongodb::bson::{Document, doc};
use reqwest::StatusCode;
use testkit::{ServiceProcess, eventually, free_port};
use uuid::Uuid;

use crate::helpers::{
    AUDIENCE, ISSUER, TestResult, brokers, fresh_database, mongodb_url, product_body, read_topic,
};

#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_work_and_loses_no_event() -> TestResult {
    // user-service's part, played by a JWKS endpoint for a key of our own.
    let key = SigningKey::generate()?;
    let jwks = key.jwks()?;
    let admin = TokenIssuer::new(key, ISSUER, AUDIENCE, Duration::from_secs(900)).issue(
        Uuid::now_v7(),
        Role::Admin,
        "admin@example.com",
    )?;
    let jwks_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let jwks_url = format!("http://{}/jwks.json", jwks_listener.local_addr()?);
    let jwks_app = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(jwks_listener, jwks_app).await });

    let database = fresh_database().await?;
    let prefix = format!("test-{}.", Uuid::new_v4().simple());
    let port = free_port()?;
    let mut service = ServiceProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_product-service"))
            .env("PORT", port.to_string())
            .env("MONGODB_URL", mongodb_url())
            .env("MONGODB_DATABASE", &database)
            .env("KAFKA_BROKERS", brokers())
            .env("KAFKA_TOPIC_PREFIX", &prefix)
            .env("ZIPKIN_ENDPOINT", "off")
            .env("JWKS_URL", &jwks_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let base = format!("http://127.0.0.1:{port}");
    service
        .wait_ready(&format!("{base}/health/ready"), Duration::from_secs(60))
        .await?;

    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..60)
        .map(|n| {
            let client = client.clone();
            let url = format!("{base}/api/products");
            let (admin, body) = (admin.clone(), product_body(&format!("DRAIN-{n:03}")));
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .bearer_auth(admin)
                    .json(&body)
                    .send()
                    .await?;
                let status = response.status();
                let body = response.json::<serde_json::Value>().await.ok();
                let id = body.and_then(|b| b["id"].as_str().map(str::to_owned));
                Ok::<_, reqwest::Error>((status, id))
            })
        })
        .collect();

    // Signal once the load is under way.
    let products = mongodb::Client::with_uri_str(mongodb_url())
        .await?
        .database(&database)
        .collection::<Document>("products");
    eventually(Duration::from_secs(60), || async {
        anyhow::ensure!(
            products.count_documents(doc! {}).await? >= 3,
            "the load has not started"
        );
        Ok(())
    })
    .await?;
    service.terminate()?;

    let mut created = Vec::new();
    for request in requests {
        match request.await? {
            Ok((status, id)) => {
                assert_eq!(
                    status,
                    StatusCode::CREATED,
                    "an answered request must succeed"
                );
                created.extend(id);
            }
            // Refused or closed before being accepted: never started, nothing to finish.
            Err(error) => assert!(error.is_connect() || error.is_request(), "{error}"),
        }
    }
    assert!(
        !created.is_empty(),
        "the signal came before any request was accepted"
    );
    let exit = service.wait_exit(Duration::from_secs(90)).await?;
    assert!(exit.success(), "exit status {exit}");

    assert_eq!(
        products.count_documents(doc! {}).await?,
        created.len() as u64
    );
    let pending = products
        .count_documents(doc! {"pending_events.0": {"$exists": true}})
        .await?;
    assert_eq!(
        pending, 0,
        "the relay drained every pending event before exiting"
    );
    let events = read_topic(&format!("{prefix}{PRODUCT_EVENTS}")).await?;
    for id in &created {
        let copies = events
            .iter()
            .filter(|r| r.event.subject == *id && r.event.event_type == "product.created.v1")
            .count();
        assert_eq!(copies, 1, "product {id}: {copies} created events");
    }
    Ok(())
}
