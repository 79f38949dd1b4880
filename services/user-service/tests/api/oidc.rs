//! "Sign in with Google" against a real OpenID Connect provider process (the stand-in, see
//! `stand_in.rs`): the whole flow for a new person and for an existing e-mail account, and
//! every refusal, each of which must leave no account, link or ticket behind.

use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;

use crate::helpers::{
    PASSWORD, TestApp, TestResult, read_topic, spawn_app_with_google, string, unique_email,
};
use testkit::oidc_standin::{StandIn, browser, google_issuer, location, log_in_at_provider, param};

/// What the database holds of accounts and sign-ins, compared before and after a refusal.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    users: i64,
    identities: i64,
    tickets: i64,
}

async fn footprint(app: &TestApp) -> anyhow::Result<Footprint> {
    let (users, identities, tickets) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM linked_identities),
                (SELECT count(*) FROM signin_tickets)",
    )
    .fetch_one(&app.pool)
    .await?;
    Ok(Footprint {
        users,
        identities,
        tickets,
    })
}

async fn google_app() -> anyhow::Result<TestApp> {
    Ok(spawn_app_with_google(&google_issuer().await?).await)
}

/// Step 1: the storefront's "Sign in with Google" link; answers the provider's login page.
async fn start_signin(app: &TestApp, return_to: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(&app.url("/api/users/oidc/google/authorize"))?;
    url.query_pairs_mut().append_pair("return_to", return_to);
    let to_provider = location(browser()?.get(url).send().await?).await?;
    anyhow::ensure!(
        to_provider
            .as_str()
            .starts_with(&format!("{}/authorize", google_issuer().await?)),
        "not sent to the provider: {to_provider}"
    );
    Ok(to_provider)
}

/// Step 3: the provider's redirect, carried to user-service's callback (as the gateway
/// would, query untouched); answers where user-service sends the browser.
async fn callback(app: &TestApp, back: &Url) -> anyhow::Result<Url> {
    let url = format!(
        "{}?{}",
        app.url("/api/users/oidc/google/callback"),
        back.query().unwrap_or("")
    );
    location(browser()?.get(url).send().await?).await
}

/// The whole sign-in up to `/signin/complete`; returns that URL and the provider's redirect
/// (to replay it).
async fn sign_in(
    app: &TestApp,
    username: &str,
    claims: Option<&str>,
) -> anyhow::Result<(Url, Url)> {
    let login_page = start_signin(app, "/orders?tab=open").await?;
    let back = log_in_at_provider(&browser()?, &login_page, username, claims).await?;
    anyhow::ensure!(param(&back, "code").is_some(), "no code: {back}");
    Ok((callback(app, &back).await?, back))
}

async fn redeem(app: &TestApp, ticket: &str) -> anyhow::Result<crate::helpers::Reply> {
    app.post("/api/users/oidc/tickets", json!({"ticket": ticket}))
        .await
}

/// Asserts a refusal redirect and returns its detail.
fn refused(complete: &Url, code: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        complete.path() == "/signin/complete",
        "not the completion page: {complete}"
    );
    anyhow::ensure!(
        param(complete, "ticket").is_none(),
        "a ticket was issued: {complete}"
    );
    anyhow::ensure!(
        param(complete, "error").as_deref() == Some(code),
        "expected error={code}: {complete}"
    );
    param(complete, "detail").ok_or_else(|| anyhow::anyhow!("no detail: {complete}"))
}

async fn events_of(app: &TestApp, user_id: &str) -> anyhow::Result<Vec<Value>> {
    app.wait_for_empty_outbox().await?;
    Ok(read_topic(&app.topic("user.events"))
        .await?
        .into_iter()
        .filter(|record| record.event.subject == user_id)
        .map(|record| json!({"type": record.event.event_type, "data": record.event.data}))
        .collect())
}

#[tokio::test]
async fn a_new_person_signs_in_with_google_and_gets_an_account_without_a_password() -> TestResult {
    let app = google_app().await?;
    let email = unique_email();
    let (complete, _) = sign_in(&app, &email, Some(r#"{"name": "Grace Hopper"}"#)).await?;
    assert_eq!(complete.path(), "/signin/complete", "{complete}");
    assert_eq!(
        param(&complete, "return_to").as_deref(),
        Some("/orders?tab=open")
    );
    let ticket = param(&complete, "ticket").ok_or_else(|| anyhow::anyhow!("no ticket"))?;

    let tokens = redeem(&app, &ticket).await?;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let mut keys: Vec<&String> = tokens
        .body
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "refresh_token", "token_type"]
    );
    let me = app.me(&string(&tokens.body["access_token"])?).await?;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], email.as_str());
    assert_eq!(me.body["name"], "Grace Hopper");
    let user_id = string(&me.body["id"])?;

    // The ticket works once.
    let again = redeem(&app, &ticket).await?;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert_eq!(again.headers["content-type"], "application/problem+json");

    // No password: password login is refused like a wrong one.
    let login = app.login(&email, PASSWORD).await?;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{}", login.body);
    let hash: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(&app.pool)
            .await?;
    assert_eq!(hash, None);
    let (provider, subject): (String, String) =
        sqlx::query_as("SELECT provider, subject FROM linked_identities WHERE user_id = $1::uuid")
            .bind(&user_id)
            .fetch_one(&app.pool)
            .await?;
    assert_eq!(
        (provider.as_str(), subject.as_str()),
        ("google", email.as_str())
    );

    let events = events_of(&app, &user_id).await?;
    let of_type = |t: &str| events.iter().filter(|e| e["type"] == t).collect::<Vec<_>>();
    let registered = of_type("user.registered.v1");
    assert_eq!(registered.len(), 1, "{events:?}");
    assert_eq!(registered[0]["data"]["method"], "google");
    let logged_in = of_type("user.logged_in.v1");
    assert_eq!(logged_in.len(), 1, "{events:?}");
    assert_eq!(logged_in[0]["data"]["method"], "google");
    Ok(())
}

#[tokio::test]
async fn a_verified_google_email_signs_into_the_existing_account_and_links_it() -> TestResult {
    let app = google_app().await?;
    let email = unique_email();
    let registered = app.register(&email).await?;
    assert_eq!(registered.status, StatusCode::CREATED);
    let user_id = string(&registered.body["id"])?;
    let before = footprint(&app).await?;

    // Google's address may differ in case from the one registered.
    let (complete, _) = sign_in(&app, &email.to_uppercase(), None).await?;
    let ticket =
        param(&complete, "ticket").ok_or_else(|| anyhow::anyhow!("no ticket: {complete}"))?;
    let tokens = redeem(&app, &ticket).await?;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let me = app.me(&string(&tokens.body["access_token"])?).await?;
    assert_eq!(me.body["id"], user_id.as_str());

    let after = footprint(&app).await?;
    assert_eq!(after.users, before.users, "no second account");
    assert_eq!(
        after.identities,
        before.identities + 1,
        "the identity is linked"
    );
    // Signing in again goes through the link; the password still works too.
    let (again, _) = sign_in(&app, &email.to_uppercase(), None).await?;
    let ticket = param(&again, "ticket").ok_or_else(|| anyhow::anyhow!("no ticket: {again}"))?;
    let tokens = redeem(&app, &ticket).await?;
    let me = app.me(&string(&tokens.body["access_token"])?).await?;
    assert_eq!(me.body["id"], user_id.as_str());
    assert_eq!(footprint(&app).await?.identities, after.identities);
    assert_eq!(app.login(&email, PASSWORD).await?.status, StatusCode::OK);

    let events = events_of(&app, &user_id).await?;
    let methods: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or(""),
                e["data"]["method"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        methods,
        [
            ("user.registered.v1", "password"),
            ("user.logged_in.v1", "google"),
            ("user.logged_in.v1", "google"),
            ("user.logged_in.v1", "password"),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_or_missing_state_is_refused() -> TestResult {
    let app = google_app().await?;
    let before = footprint(&app).await?;
    let login_page = start_signin(&app, "/").await?;
    let mut back = log_in_at_provider(&browser()?, &login_page, &unique_email(), None).await?;
    let code = param(&back, "code").unwrap_or_default();
    back.query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", "a-state-nobody-issued");
    let detail = refused(&callback(&app, &back).await?, "invalid_state")?;
    assert!(detail.contains("already used"), "{detail}");

    back.query_pairs_mut().clear().append_pair("code", &code);
    refused(&callback(&app, &back).await?, "invalid_request")?;
    assert_eq!(footprint(&app).await?, before);
    Ok(())
}

#[tokio::test]
async fn a_replayed_callback_is_refused_because_its_state_was_used() -> TestResult {
    let app = google_app().await?;
    let (complete, back) = sign_in(&app, &unique_email(), None).await?;
    assert!(param(&complete, "ticket").is_some(), "{complete}");
    let before = footprint(&app).await?;
    refused(&callback(&app, &back).await?, "invalid_state")?;
    assert_eq!(footprint(&app).await?, before);
    Ok(())
}

#[tokio::test]
async fn of_two_callbacks_racing_with_one_state_exactly_one_signs_in() -> TestResult {
    let app = google_app().await?;
    let login_page = start_signin(&app, "/").await?;
    let back = log_in_at_provider(&browser()?, &login_page, &unique_email(), None).await?;
    let (first, second) = tokio::join!(callback(&app, &back), callback(&app, &back));
    let tickets: Vec<bool> = [first?, second?]
        .iter()
        .map(|url| param(url, "ticket").is_some())
        .collect();
    assert_eq!(tickets.iter().filter(|t| **t).count(), 1, "{tickets:?}");
    let after = footprint(&app).await?;
    assert_eq!((after.identities, after.tickets), (1, 1));
    Ok(())
}

#[tokio::test]
async fn a_replayed_code_is_refused_by_the_provider() -> TestResult {
    let app = google_app().await?;
    let (complete, first) = sign_in(&app, &unique_email(), None).await?;
    assert!(param(&complete, "ticket").is_some(), "{complete}");
    let before = footprint(&app).await?;
    // A fresh sign-in's state with the used code: the state is good, the code is not.
    let login_page = start_signin(&app, "/").await?;
    let fresh_state = param(&login_page, "state").unwrap_or_default();
    let mut replay = first.clone();
    replay
        .query_pairs_mut()
        .clear()
        .append_pair("code", &param(&first, "code").unwrap_or_default())
        .append_pair("state", &fresh_state);
    let detail = refused(&callback(&app, &replay).await?, "provider_error")?;
    assert!(detail.contains("invalid_grant"), "{detail}");
    assert_eq!(footprint(&app).await?, before);
    Ok(())
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() -> TestResult {
    let app = google_app().await?;
    let before = footprint(&app).await?;
    let (complete, _) = sign_in(&app, &unique_email(), Some(r#"{"nonce": "forged"}"#)).await?;
    let detail = refused(&complete, "invalid_id_token")?;
    assert!(detail.contains("nonce"), "{detail}");
    assert_eq!(footprint(&app).await?, before);
    Ok(())
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() -> TestResult {
    let app = google_app().await?;
    let before = footprint(&app).await?;
    let (complete, _) =
        sign_in(&app, &unique_email(), Some(r#"{"aud": "another-client"}"#)).await?;
    let detail = refused(&complete, "invalid_id_token")?;
    assert!(detail.to_lowercase().contains("audience"), "{detail}");
    assert_eq!(footprint(&app).await?, before);
    Ok(())
}

#[tokio::test]
async fn an_unverified_email_is_refused() -> TestResult {
    let app = google_app().await?;
    let before = footprint(&app).await?;
    let email = format!(
        "grace+unverified@{}.example.com",
        uuid::Uuid::new_v4().simple()
    );
    let (complete, _) = sign_in(&app, &email, None).await?;
    refused(&complete, "email_not_verified")?;
    assert_eq!(footprint(&app).await?, before);
    Ok(())
}

#[tokio::test]
async fn the_provider_may_refuse_and_says_why() -> TestResult {
    let app = google_app().await?;
    let before = footprint(&app).await?;
    let login_page = start_signin(&app, "/").await?;
    let state = param(&login_page, "state").unwrap_or_default();
    let mut back = Url::parse("http://127.0.0.1:8080/api/users/oidc/google/callback")?;
    back.query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("error_description", "the person cancelled")
        .append_pair("state", &state);
    let detail = refused(&callback(&app, &back).await?, "provider_error")?;
    assert!(detail.contains("access_denied"), "{detail}");
    assert_eq!(footprint(&app).await?, before);
    Ok(())
}

#[tokio::test]
async fn a_provider_that_is_down_answers_503() -> TestResult {
    // Nothing listens on a port that was free a moment ago.
    let port = testkit::free_port()?;
    let app = spawn_app_with_google(&format!("http://127.0.0.1:{port}/google")).await;
    let before = footprint(&app).await?;
    let reply = app
        .send(browser()?.get(app.url("/api/users/oidc/google/authorize?return_to=/")))
        .await?;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert!(
        reply.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("google")),
        "{}",
        reply.body
    );
    assert_eq!(footprint(&app).await?, before);
    Ok(())
}

#[tokio::test]
async fn a_provider_that_goes_down_before_the_callback_is_a_refusal_not_an_error() -> TestResult {
    // A stand-in of this test's own, to stop it between the login and the callback.
    let mut stand_in = StandIn::start().await?;
    let app = spawn_app_with_google(&stand_in.google_issuer()).await;
    let before = footprint(&app).await?;
    let mut url = Url::parse(&app.url("/api/users/oidc/google/authorize"))?;
    url.query_pairs_mut().append_pair("return_to", "/");
    let login_page = location(browser()?.get(url).send().await?).await?;
    let back = log_in_at_provider(&browser()?, &login_page, &unique_email(), None).await?;
    stand_in.stop().await?;
    let detail = refused(&callback(&app, &back).await?, "provider_unavailable")?;
    assert!(detail.contains("token"), "{detail}");
    assert_eq!(footprint(&app).await?, before);
    Ok(())
}

#[tokio::test]
async fn authorize_refuses_return_paths_off_this_site_and_unknown_providers() -> TestResult {
    let app = google_app().await?;
    for bad in [
        "//evil.example/x",
        "https://evil.example/",
        "orders",
        "/\\evil.example",
    ] {
        let mut url = Url::parse(&app.url("/api/users/oidc/google/authorize"))?;
        url.query_pairs_mut().append_pair("return_to", bad);
        let reply = app.send(browser()?.get(url)).await?;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.body["errors"][0]["field"], "return_to", "{bad}");
    }
    let unknown = app
        .send(browser()?.get(app.url("/api/users/oidc/myspace/authorize")))
        .await?;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let no_ticket = redeem(&app, "never-issued").await?;
    assert_eq!(no_ticket.status, StatusCode::UNAUTHORIZED);
    let malformed = app
        .post("/api/users/oidc/tickets", json!({"ticket": 5}))
        .await?;
    assert!(malformed.status.is_client_error(), "{}", malformed.status);
    assert_eq!(
        malformed.headers["content-type"],
        "application/problem+json"
    );
    Ok(())
}
