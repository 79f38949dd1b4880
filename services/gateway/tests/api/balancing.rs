//! Load balancing over two product-service instances, and an instance that dies leaving
//! rotation and coming back when restarted.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

/// Which instance answered a listing: instance A holds one product, instance B none (each has
/// its own database, so the listing tells them apart).
async fn listing_sizes(gateway: &TestGateway, times: usize) -> anyhow::Result<Vec<usize>> {
    let mut sizes = Vec::with_capacity(times);
    for _ in 0..times {
        let reply = gateway.get("/api/products").await?;
        anyhow::ensure!(
            reply.status == StatusCode::OK,
            "{} {:?}",
            reply.status,
            reply.body
        );
        sizes.push(reply.body["items"].as_array().map_or(0, Vec::len));
    }
    Ok(sizes)
}

#[tokio::test]
async fn requests_spread_over_instances_and_a_dead_one_leaves_rotation_and_comes_back() -> TestResult
{
    let users = spawn_users().await?;
    let a = spawn_products(&users).await?;
    let mut b = spawn_products(&users).await?;
    let mut config = base_config()?;
    set_urls(&mut config, "user-service", vec![users.address.clone()]);
    set_urls(
        &mut config,
        "product-service",
        vec![a.address.clone(), b.address.clone()],
    );
    let gateway = TestGateway::in_front_of_users(config, &users).await?;
    let admin = gateway
        .login("admin@example.com", "admin-dev-password")
        .await?;
    a.create_product(&admin).await?;
    // Both in rotation first: an instance joins once the gateway's health check has seen it
    // ready, and product-service is ready only once its catalog read model has loaded.
    eventually(Duration::from_secs(10), || async {
        let instances = gateway.instances("product-service").await?;
        anyhow::ensure!(
            instances.len() == 2 && instances.iter().all(|(_, healthy)| *healthy),
            "{instances:?}"
        );
        Ok(())
    })
    .await?;

    // A holds the product, B none: both sizes in one series means both instances answered.
    // Retried within a deadline, because one failed connect or health check under CI's load
    // takes B out of rotation until its next check (the round-robin order itself is
    // upstream.rs's unit test); a gateway that sends everything to one instance fails here.
    eventually(Duration::from_secs(10), || async {
        let sizes = listing_sizes(&gateway, 10).await?;
        anyhow::ensure!(
            sizes.contains(&0) && sizes.contains(&1),
            "both instances answer in turn: {sizes:?}"
        );
        Ok(())
    })
    .await?;

    b.stop().await?;
    eventually(Duration::from_secs(10), || async {
        let instances = gateway.instances("product-service").await?;
        anyhow::ensure!(
            instances
                .iter()
                .any(|(url, healthy)| *url == b.address && !healthy),
            "{instances:?}"
        );
        Ok(())
    })
    .await?;
    let sizes = listing_sizes(&gateway, 6).await?;
    assert!(sizes.iter().all(|&n| n == 1), "only A answers: {sizes:?}");

    b.start().await?;
    eventually(Duration::from_secs(10), || async {
        let sizes = listing_sizes(&gateway, 4).await?;
        anyhow::ensure!(sizes.contains(&0), "B is not back yet: {sizes:?}");
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_request_to_an_instance_that_just_died_is_retried_on_another() -> TestResult {
    let issuer = Issuer::new()?;
    let echo = spawn_echo().await?;
    let mut config = base_config()?;
    // Health checks far apart: only the retry can hide the dead instance here.
    config.health.interval_ms = 60_000;
    add_route(
        &mut config,
        "echo",
        vec![dead_url()?, echo.clone()],
        route("/api/echo", "echo", gateway::routes::AuthPolicy::Public),
    );
    let gateway = TestGateway::start(config, issuer.keys.clone()).await?;
    for _ in 0..4 {
        let reply = gateway.get("/api/echo").await?;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    // A POST is never retried, and the dead instance has been ejected, so it also lands well.
    let post = gateway
        .send(gateway.client.post(gateway.url("/api/echo")).body("x"))
        .await?;
    assert_eq!(post.status, StatusCode::OK);
    let instances = gateway.instances("echo").await?;
    assert_eq!(instances.iter().filter(|(_, healthy)| *healthy).count(), 1);
    Ok(())
}
