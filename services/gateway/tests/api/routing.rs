//! Every public route family reaches its service, tokens pass through unchanged, and paths
//! the gateway does not serve are problems.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn public_routes_reach_their_services_and_the_token_passes_unchanged() -> TestResult {
    let users = spawn_users().await?;
    let products = spawn_products(&users).await?;
    let mut config = base_config()?;
    set_urls(&mut config, "user-service", vec![users.address.clone()]);
    set_urls(
        &mut config,
        "product-service",
        vec![products.address.clone()],
    );
    let gateway = TestGateway::in_front_of_users(config, &users).await?;

    let (email, token) = gateway.signed_in_customer().await?;
    let me = gateway
        .get_when_available_with_token("/api/users/me", &token)
        .await?;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["email"], email.as_str());

    let jwks = gateway.get("/.well-known/jwks.json").await?;
    assert_eq!(jwks.status, StatusCode::OK);
    assert!(
        jwks.body["keys"]
            .as_array()
            .is_some_and(|keys| !keys.is_empty())
    );

    let listing = gateway.get_when_available("/api/products?limit=5").await?;
    assert_eq!(listing.status, StatusCode::OK, "{:?}", listing.body);
    assert!(listing.body["items"].is_array());

    // An upstream's own problem (a bad product id) comes back as it was sent.
    let bad_id = gateway
        .get_when_available("/api/products/not-an-object-id")
        .await?;
    assert!(bad_id.status.is_client_error(), "{}", bad_id.status);
    assert!(bad_id.is_problem(), "{:?}", bad_id.body);

    let live = gateway.get("/health/live").await?;
    assert_eq!(live.status, StatusCode::OK);
    let ready = gateway.get("/health/ready").await?;
    assert_eq!(ready.status, StatusCode::OK);
    // The health checks see every flicker of a loaded upstream's readiness (see
    // send_while_unavailable), so the count is awaited rather than read once.
    eventually(Duration::from_secs(30), || async {
        let ready = gateway.get("/health/ready").await?;
        anyhow::ensure!(
            ready.body["upstreams"]["user-service"]["healthy"] == 1,
            "{:?}",
            ready.body
        );
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn unknown_paths_and_dot_segments_are_problems() -> TestResult {
    let issuer = Issuer::new()?;
    let gateway = TestGateway::start(base_config()?, issuer.keys.clone()).await?;

    let unknown = gateway.get("/api/nothing-here").await?;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.is_problem(), "{:?}", unknown.body);

    // A public prefix must not smuggle a request onto a protected route.
    for path in ["/api/products/../users/me", "/api/products/%2e%2E/orders"] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n");
        let status = raw_request(&gateway.address, request.as_bytes()).await?;
        assert!(status.starts_with("HTTP/1.1 400"), "{path}: {status}");
    }

    let metrics = gateway.get("/metrics").await?;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(text.contains("gateway_upstream_healthy"), "{text}");
    Ok(())
}
