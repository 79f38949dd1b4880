//! A measurement, not a check (tests never assert on timing): run by hand with
//! `cargo test -p payment-service --release --test api measure -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::helpers::{GOOD_CARD, TestResult, card, spawn_app};

#[tokio::test]
#[ignore = "measurement; run by hand"]
async fn measure_payment_latency_and_throughput() -> TestResult {
    let app = spawn_app().await;
    let count = 100;
    let mut orders = Vec::new();
    for _ in 0..count {
        orders.push(app.awaiting_order(1000).await?);
    }
    let started = Instant::now();
    let latencies: Vec<anyhow::Result<Duration>> = futures::stream::iter(orders)
        .map(|order| {
            let app = &app;
            async move {
                let begun = Instant::now();
                let reply = app
                    .pay(&format!("m-{order}"), order, card(GOOD_CARD))
                    .await?;
                anyhow::ensure!(reply.body["status"] == "succeeded", "{reply:?}");
                Ok(begun.elapsed())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = latencies.into_iter().collect::<anyhow::Result<_>>()?;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{count} payments, 8 concurrent: {:.1}/s, p50 {:?}, p99 {:?}",
        count as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99)
    );
    app.wait_for_empty_outbox().await?;
    Ok(())
}
