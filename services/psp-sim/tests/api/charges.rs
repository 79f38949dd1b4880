//! Charges, refunds and look-ups.

use std::time::{Duration, Instant};

use futures::future::join_all;
use psp_sim::cards;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestResult, charge_body, spawn_sim, spawn_sim_with};

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_charge_and_get_one_answer() -> TestResult {
    let sim = spawn_sim().await;
    let body = charge_body(cards::SUCCEEDS, 1999, "order-a");
    let replies = join_all((0..8).map(|_| sim.charge("key-a", &body))).await;
    let mut ids = Vec::new();
    for reply in replies {
        let reply = reply?;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        assert_eq!(reply.body["status"], "succeeded");
        assert_eq!(reply.body["card"]["last4"], "4242");
        assert_eq!(reply.body["card"]["brand"], "visa");
        ids.push(reply.body["id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one charge: {ids:?}");
    assert_eq!(sim.charges_of("order-a").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_key_reused_with_another_request_is_refused() -> TestResult {
    let sim = spawn_sim().await;
    sim.charge("key-b", &charge_body(cards::SUCCEEDS, 100, "order-b"))
        .await?;
    let reply = sim
        .charge("key-b", &charge_body(cards::SUCCEEDS, 200, "order-b"))
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.body["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(sim.charges_of("order-b").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn test_cards_decline_fail_and_succeed() -> TestResult {
    let sim = spawn_sim().await;
    let declined = sim
        .charge("d", &charge_body(cards::DECLINED, 100, "order-c"))
        .await?;
    assert_eq!(
        declined.status,
        StatusCode::PAYMENT_REQUIRED,
        "{declined:?}"
    );
    assert_eq!(declined.body["decline_code"], "card_declined");
    let poor = sim
        .charge("p", &charge_body(cards::INSUFFICIENT_FUNDS, 100, "order-c"))
        .await?;
    assert_eq!(poor.body["decline_code"], "insufficient_funds");
    for _ in 0..2 {
        let error = sim
            .charge("e", &charge_body(cards::PROVIDER_ERROR, 100, "order-c"))
            .await?;
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR, "{error:?}");
    }
    let mut expired = charge_body(cards::SUCCEEDS, 100, "order-c");
    expired["card"]["exp_year"] = json!(2020);
    let expired = sim.charge("x", &expired).await?;
    assert_eq!(expired.body["decline_code"], "expired_card");
    // Declines are charges on the books (with status declined); provider errors are not.
    let charges = sim.charges_of("order-c").await?;
    assert_eq!(charges.len(), 3, "{charges:?}");
    assert!(charges.iter().all(|c| c["status"] == "declined"));
    Ok(())
}

#[tokio::test]
async fn the_slow_card_is_charged_before_its_late_answer() -> TestResult {
    let sim = spawn_sim_with(|config| config.slow_delay = Duration::from_millis(600)).await;
    let body = charge_body(cards::SLOW, 500, "order-s");
    let started = Instant::now();
    let late = {
        let sim_client = sim.client.clone();
        let url = sim.url("/v1/charges");
        let body = body.clone();
        tokio::spawn(async move {
            sim_client
                .post(url)
                .bearer_auth(psp_sim::config::DEFAULT_API_KEY)
                .header("Idempotency-Key", "slow-1")
                .json(&body)
                .timeout(Duration::from_millis(150))
                .send()
                .await
        })
    };
    assert!(late.await?.is_err(), "the caller times out");
    let found = sim.get("/v1/charges?idempotency_key=slow-1").await?;
    assert_eq!(found.body["data"][0]["status"], "succeeded", "{found:?}");
    // A retry with the same key waits for the first answer instead of charging again.
    let retried = sim.charge("slow-1", &body).await?;
    assert_eq!(retried.status, StatusCode::CREATED);
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(retried.body["id"], found.body["data"][0]["id"]);
    assert_eq!(sim.charges_of("order-s").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_charge_is_refunded_once_and_shows_it() -> TestResult {
    let sim = spawn_sim().await;
    let charge = sim
        .charge("k", &charge_body(cards::SUCCEEDS, 700, "order-r"))
        .await?;
    let id = charge.body["id"].as_str().unwrap_or_default().to_owned();
    let refund = sim
        .post("/v1/refunds", "r-1", &json!({"charge": id}))
        .await?;
    assert_eq!(refund.status, StatusCode::CREATED, "{refund:?}");
    assert_eq!(refund.body["amount"], 700);
    let again = sim
        .post("/v1/refunds", "r-1", &json!({"charge": id}))
        .await?;
    assert_eq!(again.body, refund.body, "replayed");
    let other = sim
        .post("/v1/refunds", "r-2", &json!({"charge": id}))
        .await?;
    assert_eq!(other.status, StatusCode::CONFLICT);
    let shown = sim.get(&format!("/v1/charges/{id}")).await?;
    assert_eq!(shown.body["refunded"], true);
    let missing = sim
        .post("/v1/refunds", "r-3", &json!({"charge": "ch_nope"}))
        .await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        sim.get("/v1/charges/ch_nope").await?.status,
        StatusCode::NOT_FOUND
    );
    Ok(())
}

#[tokio::test]
async fn bad_calls_are_named_problems() -> TestResult {
    let sim = spawn_sim().await;
    let unauthenticated = sim
        .send(sim.client.post(sim.url("/v1/charges")).json(&json!({})))
        .await?;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    let no_key = sim
        .send(
            sim.client
                .post(sim.url("/v1/charges"))
                .bearer_auth(psp_sim::config::DEFAULT_API_KEY)
                .json(&charge_body(cards::SUCCEEDS, 1, "o")),
        )
        .await?;
    assert_eq!(no_key.status, StatusCode::BAD_REQUEST, "{no_key:?}");
    let bad_number = sim
        .charge("k", &charge_body("4242424242424241", 100, "o"))
        .await?;
    assert_eq!(bad_number.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_number.body["errors"][0]["field"], "card.number");
    let bad_amount = sim
        .charge("k", &charge_body(cards::SUCCEEDS, 0, "o"))
        .await?;
    assert_eq!(bad_amount.body["errors"][0]["field"], "amount");
    let neither = sim.get("/v1/charges").await?;
    assert_eq!(neither.status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn a_failure_rate_of_one_fails_every_call_before_charging() -> TestResult {
    let sim = spawn_sim_with(|config| config.failure_rate = 1.0).await;
    let reply = sim
        .charge("k", &charge_body(cards::SUCCEEDS, 100, "order-f"))
        .await?;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert!(sim.charges_of("order-f").await?.is_empty());
    Ok(())
}
