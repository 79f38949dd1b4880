//! Login, throttling, refresh rotation with reuse detection, logout, the admin seed and JWKS.

use std::time::Duration;

use auth::{KeySource, Role, TokenVerifier};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::json;

use crate::helpers::{PASSWORD, TestResult, spawn_app, spawn_app_with, string, unique_email};

#[tokio::test]
async fn login_returns_tokens_that_open_the_profile() -> TestResult {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await?;
    let login = app.login(&email, PASSWORD).await?;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 900);
    let me = app.me(&string(&login.body["access_token"])?).await?;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], email);
    Ok(())
}

#[tokio::test]
async fn a_login_replaces_a_hash_made_with_older_settings() -> TestResult {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await?;
    // The settings of the first releases (19 MiB, 2 passes).
    let old_settings = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(19 * 1024, 2, 1, Some(32)).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let salt = argon2::password_hash::SaltString::generate(&mut rand::rngs::OsRng);
    let old_hash = argon2::PasswordHasher::hash_password(&old_settings, PASSWORD.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    sqlx::query("UPDATE users SET password_hash = $2 WHERE lower(email) = lower($1)")
        .bind(&email)
        .bind(&old_hash)
        .execute(&app.pool)
        .await?;
    let stored = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT password_hash FROM users WHERE lower(email) = lower($1)",
        )
        .bind(&email)
        .fetch_one(&app.pool)
        .await
    };

    let wrong = app.login(&email, "not the password at all").await?;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stored().await?, old_hash, "a failed login changes nothing");

    let login = app.login(&email, PASSWORD).await?;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let upgraded = stored().await?;
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"),
        "{upgraded}"
    );
    assert_eq!(app.login(&email, PASSWORD).await?.status, StatusCode::OK);
    assert_eq!(stored().await?, upgraded, "a current hash is kept");
    Ok(())
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() -> TestResult {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await?;
    let wrong_password = app.login(&email, "not the password at all").await?;
    let unknown = app.login(&unique_email(), PASSWORD).await?;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.body, unknown.body);
    assert_eq!(unknown.headers[CONTENT_TYPE], "application/problem+json");
    Ok(())
}

#[tokio::test]
async fn repeated_failures_lock_the_email_with_retry_after() -> TestResult {
    let app = spawn_app_with(|config| {
        config.login_max_failures = 3;
        config.login_lockout = Duration::from_secs(60);
    })
    .await;
    let email = unique_email();
    app.register(&email).await?;
    for _ in 0..3 {
        assert_eq!(
            app.login(&email, "wrong password!!").await?.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password is refused while locked: the lock is about the attempts.
    let locked = app.login(&email, PASSWORD).await?;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    let retry_after: u64 = locked.headers[RETRY_AFTER].to_str()?.parse()?;
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    // Another account is not affected.
    let other = unique_email();
    app.register(&other).await?;
    assert_eq!(app.login(&other, PASSWORD).await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn missing_or_bad_tokens_are_401_problems() -> TestResult {
    let app = spawn_app().await;
    let none = app.send(app.client.get(app.url("/api/users/me"))).await?;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers[CONTENT_TYPE], "application/problem+json");
    assert_eq!(app.me("garbage").await?.status, StatusCode::UNAUTHORIZED);
    let (_, access, _) = app.signed_in_user().await?;
    let tampered = format!("{}x", &access[..access.len() - 1]);
    assert_eq!(app.me(&tampered).await?.status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() -> TestResult {
    let app = spawn_app().await;
    let (_, _, first) = app.signed_in_user().await?;

    let rotated = app
        .post("/api/users/refresh", json!({"refresh_token": first}))
        .await?;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let second = string(&rotated.body["refresh_token"])?;
    assert_ne!(second, first);
    assert_eq!(
        app.me(&string(&rotated.body["access_token"])?)
            .await?
            .status,
        StatusCode::OK
    );

    // Replaying the first token (a thief, or a stale client) is detected...
    let replay = app
        .post("/api/users/refresh", json!({"refresh_token": first}))
        .await?;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    // ...and the legitimate successor is revoked with it.
    let successor = app
        .post("/api/users/refresh", json!({"refresh_token": second}))
        .await?;
    assert_eq!(successor.status, StatusCode::UNAUTHORIZED);

    // A separate sign-in is a separate family and keeps working.
    let (_, _, other) = app.signed_in_user().await?;
    assert_eq!(
        app.post("/api/users/refresh", json!({"refresh_token": other}))
            .await?
            .status,
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn unknown_refresh_tokens_are_refused() -> TestResult {
    let app = spawn_app().await;
    let reply = app
        .post("/api/users/refresh", json!({"refresh_token": "nope"}))
        .await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let missing = app.post("/api/users/refresh", json!({})).await?;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    Ok(())
}

#[tokio::test]
async fn logout_ends_the_session() -> TestResult {
    let app = spawn_app().await;
    let (_, _, refresh) = app.signed_in_user().await?;
    let logout = app
        .post("/api/users/logout", json!({"refresh_token": refresh}))
        .await?;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let after = app
        .post("/api/users/refresh", json!({"refresh_token": refresh}))
        .await?;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    // Logging out twice (or with an unknown token) is harmless.
    let again = app
        .post("/api/users/logout", json!({"refresh_token": refresh}))
        .await?;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    Ok(())
}

#[tokio::test]
async fn the_seeded_admin_signs_in_and_its_token_verifies_through_the_published_jwks() -> TestResult
{
    let app = spawn_app().await;
    let login = app.login("admin@example.com", "admin-dev-password").await?;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);

    let jwks = app
        .send(app.client.get(app.url("/.well-known/jwks.json")))
        .await?;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_eq!(jwks.body["keys"][0]["alg"], "EdDSA");
    assert_eq!(jwks.body["keys"][0]["crv"], "Ed25519");

    // What another service does: fetch the JWKS over HTTP and verify locally.
    let verifier = TokenVerifier::new(
        KeySource::Remote {
            url: app.url("/.well-known/jwks.json"),
            client: reqwest::Client::new(),
        },
        "ferroshop-users",
        "ferroshop",
    );
    let claims = verifier
        .verify(&string(&login.body["access_token"])?)
        .await?;
    assert_eq!(claims.role, Role::Admin);
    assert_eq!(claims.email, "admin@example.com");
    Ok(())
}
