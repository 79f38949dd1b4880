//! The platform end to end, through the gateway, twice: with one instance of every service,
//! and with two replicas of each stateless service (outbox relays, consumers and expiry jobs
//! must not double-process). Each run starts its own platform (fresh databases, topics and
//! ports), runs the scenarios concurrently, then checks the invariants over everything the
//! scenarios did.

mod api;
mod browser;
mod contract;
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
