//! Upstream failures become problem documents quickly: 502 unreachable, 503 no healthy
//! instance, 504 too slow.

use std::time::{Duration, Instant};

use auth::Role;
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn an_unreachable_upstream_is_a_quick_502_then_503_until_it_returns() -> TestResult {
    let issuer = Issuer::new()?;
    let gateway = TestGateway::start(base_config()?, issuer.keys.clone()).await?;
    let token = issuer.token(Role::Customer)?;

    let started = Instant::now();
    let first = gateway.get_with_token("/api/orders", &token).await?;
    assert!(
        matches!(
            first.status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
        ),
        "{}",
        first.status
    );
    assert!(first.is_problem(), "{:?}", first.body);

    eventually(Duration::from_secs(5), || async {
        let reply = gateway.get_with_token("/api/orders", &token).await?;
        anyhow::ensure!(
            reply.status == StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.status
        );
        anyhow::ensure!(reply.is_problem(), "{:?}", reply.body);
        anyhow::ensure!(reply.header("retry-after").is_some(), "no Retry-After");
        Ok(())
    })
    .await?;
    assert!(started.elapsed() < Duration::from_secs(10), "never a hang");
    let instances = gateway.instances("order-service").await?;
    assert!(
        instances.iter().all(|(_, healthy)| !healthy),
        "{instances:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_silent_upstream_is_a_504_after_the_route_timeout() -> TestResult {
    let issuer = Issuer::new()?;
    let silent = spawn_silent().await?;
    let mut config = base_config()?;
    set_urls(&mut config, "payment-service", vec![silent]);
    if let Some(route) = config
        .routes
        .iter_mut()
        .find(|route| route.prefix == "/api/payments")
    {
        route.timeout_ms = Some(300);
    }
    let gateway = TestGateway::start(config, issuer.keys.clone()).await?;
    let token = issuer.token(Role::Customer)?;

    let reply = gateway.get_with_token("/api/payments", &token).await?;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(reply.is_problem(), "{:?}", reply.body);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("300 ms"),
        "{:?}",
        reply.body
    );
    // The instance still passes its health checks, so it stays in rotation.
    let instances = gateway.instances("payment-service").await?;
    assert!(
        instances.iter().all(|(_, healthy)| *healthy),
        "{instances:?}"
    );
    Ok(())
}
