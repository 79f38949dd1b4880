//! Rate limits: per client IP, stricter on login and register, and per user.

use auth::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use gateway::config::Quota;

fn assert_throttled(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        reply.body
    );
    assert!(reply.is_problem(), "{:?}", reply.body);
    let retry_after: u64 = reply
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    assert!(retry_after >= 1, "Retry-After {retry_after}");
}

async fn echo_gateway(
    adjust: impl FnOnce(&mut gateway::config::Config),
) -> anyhow::Result<(TestGateway, Issuer)> {
    let issuer = Issuer::new()?;
    let echo = spawn_echo().await?;
    let mut config = base_config()?;
    for service in ["user-service", "order-service"] {
        set_urls(&mut config, service, vec![echo.clone()]);
    }
    adjust(&mut config);
    Ok((
        TestGateway::start(config, issuer.keys.clone()).await?,
        issuer,
    ))
}

#[tokio::test]
async fn a_client_ip_over_its_quota_gets_429_with_retry_after() -> TestResult {
    let (gateway, _) = echo_gateway(|config| {
        config.limits.per_ip = Quota {
            per_second: 0.1,
            burst: 3,
        };
    })
    .await?;
    for _ in 0..3 {
        assert_eq!(
            gateway.get("/.well-known/jwks.json").await?.status,
            StatusCode::OK
        );
    }
    assert_throttled(&gateway.get("/.well-known/jwks.json").await?);
    Ok(())
}

#[tokio::test]
async fn login_and_register_have_a_stricter_bucket() -> TestResult {
    let (gateway, _) = echo_gateway(|config| {
        config.limits.strict = Quota {
            per_second: 0.01,
            burst: 2,
        };
    })
    .await?;
    let credentials = json!({"email": "a@example.com", "password": "wrong"});
    for _ in 0..2 {
        let login = gateway.post("/api/users/login", &credentials).await?;
        assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    }
    assert_throttled(&gateway.post("/api/users/login", &credentials).await?);
    assert_throttled(&gateway.post("/api/users/register", &credentials).await?);
    // Other routes from the same address are not affected.
    assert_eq!(
        gateway.get("/.well-known/jwks.json").await?.status,
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn each_user_has_a_bucket_of_their_own() -> TestResult {
    let (gateway, issuer) = echo_gateway(|config| {
        config.limits.per_user = Quota {
            per_second: 0.01,
            burst: 2,
        };
    })
    .await?;
    let (ada, bob) = (issuer.token(Role::Customer)?, issuer.token(Role::Customer)?);
    for _ in 0..2 {
        assert_eq!(
            gateway.get_with_token("/api/orders", &ada).await?.status,
            StatusCode::OK
        );
    }
    assert_throttled(&gateway.get_with_token("/api/orders", &ada).await?);
    assert_eq!(
        gateway.get_with_token("/api/orders", &bob).await?.status,
        StatusCode::OK
    );
    Ok(())
}
