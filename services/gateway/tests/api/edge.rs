//! What the gateway decides on its own: tokens at the edge, request ids, trace context,
//! forwarded headers, CORS preflights and body limits.

use auth::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn protected_routes_need_a_valid_token_at_the_edge() -> TestResult {
    let issuer = Issuer::new()?;
    let gateway = TestGateway::start(base_config()?, issuer.keys.clone()).await?;

    // No order-service runs at all: the 401s can only come from the gateway.
    let anonymous = gateway.get("/api/orders").await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.is_problem(), "{:?}", anonymous.body);
    let forged = gateway
        .get_with_token("/api/payments/x", "not.a.jwt")
        .await?;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let foreign = Issuer::new()?.token(Role::Customer)?;
    let foreign = gateway
        .get_with_token("/api/notifications", &foreign)
        .await?;
    assert_eq!(foreign.status, StatusCode::UNAUTHORIZED);
    let write = gateway
        .send(
            gateway
                .client
                .post(gateway.url("/api/products"))
                .json(&json!({})),
        )
        .await?;
    assert_eq!(
        write.status,
        StatusCode::UNAUTHORIZED,
        "catalog writes need a token"
    );
    let me = gateway.get("/api/users/me").await?;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);

    // With a valid token the request passes the edge and meets the (absent) upstream.
    let token = issuer.token(Role::Customer)?;
    let passed = gateway.get_with_token("/api/orders", &token).await?;
    assert!(
        matches!(
            passed.status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
        ),
        "{}",
        passed.status
    );
    Ok(())
}

#[tokio::test]
async fn a_customer_on_an_admin_route_gets_the_upstreams_403_and_an_admin_gets_through()
-> TestResult {
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
    // product-service answers ready once its catalog is loaded, and the gateway routes to it
    // from its next health check: wait for that, as a client retrying a 503 would.
    testkit::eventually(std::time::Duration::from_secs(30), || async {
        let instances = gateway.instances("product-service").await?;
        anyhow::ensure!(
            instances.iter().any(|(_, healthy)| *healthy),
            "product-service not yet in rotation: {instances:?}"
        );
        Ok(())
    })
    .await?;

    let (_, customer) = gateway.signed_in_customer().await?;
    let denied = gateway
        .send_while_unavailable(|| {
            gateway
                .client
                .post(gateway.url("/api/products"))
                .bearer_auth(&customer)
                .json(&product_body("GW-DENIED-1"))
        })
        .await?;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{:?}", denied.body);
    assert!(denied.is_problem());

    let admin = gateway
        .login("admin@example.com", "admin-dev-password")
        .await?;
    let created = gateway
        .send_while_unavailable(|| {
            gateway
                .client
                .post(gateway.url("/api/products"))
                .bearer_auth(&admin)
                .json(&product_body("GW-ADMIN-1"))
        })
        .await?;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap_or_default();
    let read = gateway
        .send_while_unavailable(|| {
            gateway
                .client
                .get(gateway.url(&format!("/api/products/{id}")))
        })
        .await?;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["sku"], "GW-ADMIN-1");
    Ok(())
}

#[tokio::test]
async fn request_ids_trace_context_and_forwarded_headers_reach_the_upstream() -> TestResult {
    let issuer = Issuer::new()?;
    let echo = spawn_echo().await?;
    let mut config = base_config()?;
    add_route(
        &mut config,
        "echo",
        vec![echo],
        route("/api/echo", "echo", gateway::routes::AuthPolicy::Required),
    );
    let gateway = TestGateway::start(config, issuer.keys.clone()).await?;
    let token = issuer.token(Role::Customer)?;
    let incoming_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let reply = gateway
        .send(
            gateway
                .client
                .get(gateway.url("/api/echo/things?page=2"))
                .bearer_auth(&token)
                .header("x-request-id", "req-from-client-1")
                .header("traceparent", incoming_parent)
                .header("x-forwarded-for", "6.6.6.6"),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.header("x-request-id"), Some("req-from-client-1"));
    let seen = &reply.body["headers"];
    assert_eq!(reply.body["path"], "/api/echo/things?page=2");
    assert_eq!(
        seen["authorization"],
        format!("Bearer {token}"),
        "token unchanged"
    );
    assert_eq!(seen["x-request-id"], "req-from-client-1");
    assert_eq!(
        seen["x-forwarded-for"], "127.0.0.1",
        "a client-made chain is not trusted"
    );
    let traceparent = seen["traceparent"].as_str().unwrap_or_default();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the gateway's own span is the parent"
    );

    let generated = gateway
        .send(
            gateway
                .client
                .get(gateway.url("/api/echo"))
                .bearer_auth(&token),
        )
        .await?;
    let id = generated.header("x-request-id").unwrap_or_default();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "generated request id {id:?}"
    );
    assert_eq!(generated.body["headers"]["x-request-id"], id);
    Ok(())
}

#[tokio::test]
async fn cors_preflights_are_answered_at_the_edge_for_listed_origins_only() -> TestResult {
    let issuer = Issuer::new()?;
    let mut config = base_config()?;
    config.cors.allowed_origins = vec!["http://shop.example".into()];
    let gateway = TestGateway::start(config, issuer.keys.clone()).await?;
    let preflight = |origin: &'static str| {
        gateway.send(
            gateway
                .client
                .request(reqwest::Method::OPTIONS, gateway.url("/api/orders"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
        )
    };
    let reply = preflight("http://shop.example").await?;
    assert!(reply.status.is_success(), "{}", reply.status);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://shop.example")
    );
    let methods = reply
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = reply
        .header("access-control-allow-headers")
        .unwrap_or_default();
    assert!(headers.contains("authorization"), "{headers}");
    assert!(reply.header("x-request-id").is_some());

    // Any other origin is granted nothing, not even the list of methods and headers.
    let refused = preflight("http://evil.example").await?;
    let granted: Vec<_> = refused
        .headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .collect();
    assert!(granted.is_empty(), "{granted:?}");
    Ok(())
}

#[tokio::test]
async fn no_origin_is_allowed_by_default_the_storefront_being_same_origin() -> TestResult {
    let issuer = Issuer::new()?;
    let gateway = TestGateway::start(base_config()?, issuer.keys.clone()).await?;
    let reply = gateway
        .send(
            gateway
                .client
                .request(reqwest::Method::OPTIONS, gateway.url("/api/products"))
                .header("origin", "http://anywhere.example")
                .header("access-control-request-method", "GET"),
        )
        .await?;
    assert_eq!(reply.header("access-control-allow-origin"), None);
    assert_eq!(reply.header("access-control-allow-methods"), None);
    Ok(())
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_hsts_when_configured() -> TestResult {
    let issuer = Issuer::new()?;
    let plain = TestGateway::start(base_config()?, issuer.keys.clone()).await?;
    // The gateway's own problem, a proxied failure and its health: each has the headers.
    for path in ["/api/nothing", "/api/products", "/health/live"] {
        let reply = plain.get(path).await?;
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            reply.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert_eq!(reply.header("strict-transport-security"), None, "{path}");
    }
    let mut config = base_config()?;
    config.hsts_max_age_secs = Some(31_536_000);
    let behind_tls = TestGateway::start(config, issuer.keys.clone()).await?;
    let reply = behind_tls.get("/health/live").await?;
    assert_eq!(
        reply.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    Ok(())
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413_declared_or_streamed() -> TestResult {
    let issuer = Issuer::new()?;
    let echo = spawn_echo().await?;
    let mut config = base_config()?;
    config.max_body_bytes = 1024;
    add_route(
        &mut config,
        "echo",
        vec![echo],
        route("/api/echo", "echo", gateway::routes::AuthPolicy::Public),
    );
    let gateway = TestGateway::start(config, issuer.keys.clone()).await?;

    let small = gateway
        .send(
            gateway
                .client
                .post(gateway.url("/api/echo"))
                .body(vec![b'x'; 1000]),
        )
        .await?;
    assert_eq!(small.status, StatusCode::OK);
    assert_eq!(small.body["body_len"], 1000);

    let declared = gateway
        .send(
            gateway
                .client
                .post(gateway.url("/api/echo"))
                .body(vec![b'x'; 4096]),
        )
        .await?;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(declared.is_problem(), "{:?}", declared.body);

    // No Content-Length: the limit is enforced while the body streams to the upstream.
    let chunk = "x".repeat(800);
    let chunked = format!(
        "POST /api/echo HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    let status = raw_request(&gateway.address, chunked.as_bytes()).await?;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Idempotent methods are buffered for retries, within the same limit.
    let put = format!(
        "PUT /api/echo HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    let status = raw_request(&gateway.address, put.as_bytes()).await?;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    Ok(())
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() -> TestResult {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let issuer = Issuer::new()?;
    let mut config = base_config()?;
    config.header_read_timeout_ms = 200;
    let gateway = TestGateway::start(config, issuer.keys.clone()).await?;
    let authority = gateway.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream
        .write_all(b"GET /api/products HTTP/1.1\r\nhost: shop\r\nx-slow: 1")
        .await?;
    let mut answer = Vec::new();
    // Far longer than the timeout: the assertion is the close, not its time.
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await??;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "a slow client got {text}"
    );
    Ok(())
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_with_431() -> TestResult {
    let issuer = Issuer::new()?;
    let gateway = TestGateway::start(base_config()?, issuer.keys.clone()).await?;
    let reply = gateway
        .client
        .get(gateway.url("/api/products"))
        .header("x-padding", "p".repeat(40 * 1024))
        .send()
        .await?;
    assert_eq!(reply.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    Ok(())
}
