//! No secret or personal data in logs (issue 14, deliverable 5). A checkout with a card and a
//! CVC of its own, a declined attempt, a login, a refresh and a logout run through the
//! gateway; then every process's whole log (services, gateway, simulators; the platform runs
//! them at debug level for the platform's own crates) is searched for the card numbers (also
//! every card the other modules used), the CVC next to its name, the password, the admin's
//! password, the access token and its signature alone, every refresh token, and the
//! customer's phone number and e-mail address.

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use super::Owasp;
use super::fakes::HOSTILE_CARDS;
use crate::api::{DECLINED_CARD, GOOD_CARD};
use crate::platform::ADMIN_PASSWORD;

/// A CVC that the checkout below uses; searched for next to the word "cvc".
const CVC: &str = "987";

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let account = ctx.account().await?;
    let product = ctx.product(5).await?;
    let order = ctx.awaiting_order(&account.user, product).await?;
    let pay = |card: &'static str| {
        ctx.api.send(
            ctx.api
                .client
                .post(ctx.api.url("/api/payments"))
                .bearer_auth(&account.user.token)
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .json(&json!({"order_id": order, "card": {
                    "number": card, "exp_month": 11, "exp_year": 2034, "cvc": CVC}})),
        )
    };
    let declined = pay(DECLINED_CARD).await?;
    anyhow::ensure!(
        declined.body["status"] == "failed",
        "declined: {declined:?}"
    );
    let paid = pay(GOOD_CARD).await?;
    anyhow::ensure!(paid.body["status"] == "succeeded", "paid: {paid:?}");
    ctx.api
        .wait_for_status(&account.user, order, "PAID")
        .await?;
    crate::api::Inbox::new()
        .wait_for(&account.user.email, &[])
        .await?;
    // A wrong password too: failed logins are where passwords most often end up in logs.
    let wrong = ctx
        .api
        .login(&account.user.email, "wrong-password-owasp-scan")
        .await?;
    anyhow::ensure!(
        wrong.status == StatusCode::UNAUTHORIZED,
        "wrong login: {wrong:?}"
    );
    let login = ctx
        .api
        .login(&account.user.email, &account.password)
        .await?;
    anyhow::ensure!(login.status == StatusCode::OK, "login: {login:?}");
    let access = login.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refresh = login.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refreshed = ctx
        .call(
            Method::POST,
            "/api/users/refresh",
            None,
            &json!({"refresh_token": refresh}),
        )
        .await?;
    anyhow::ensure!(refreshed.status == StatusCode::OK, "refresh: {refreshed:?}");
    let next_access = refreshed.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let next_refresh = refreshed.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let me = ctx.get("/api/users/me", Some(&next_access)).await?;
    anyhow::ensure!(me.status == StatusCode::OK, "me: {me:?}");
    let out = ctx
        .call(
            Method::POST,
            "/api/users/logout",
            None,
            &json!({"refresh_token": next_refresh}),
        )
        .await?;
    anyhow::ensure!(out.status == StatusCode::NO_CONTENT, "logout: {out:?}");

    let mut secrets: Vec<(String, String)> = vec![
        ("card number".into(), GOOD_CARD.into()),
        ("declined card number".into(), DECLINED_CARD.into()),
        ("password".into(), account.password.clone()),
        ("wrong password".into(), "wrong-password-owasp-scan".into()),
        ("admin password".into(), ADMIN_PASSWORD.into()),
        ("first access token".into(), account.user.token.clone()),
        ("first refresh token".into(), account.refresh.clone()),
        ("access token".into(), access.clone()),
        ("refresh token".into(), refresh.clone()),
        ("rotated access token".into(), next_access.clone()),
        ("rotated refresh token".into(), next_refresh.clone()),
        ("phone number".into(), account.phone.clone()),
        ("e-mail address".into(), account.user.email.clone()),
    ];
    for token in [&account.user.token, &access, &next_access] {
        if let Some(signature) = token.rsplit('.').next() {
            secrets.push(("an access token's signature".into(), signature.to_owned()));
        }
    }
    for (card, _) in HOSTILE_CARDS {
        secrets.push(("hostile-provider card number".into(), card.to_owned()));
    }

    let logs = ctx.platform.full_logs();
    anyhow::ensure!(
        logs.iter().any(|(_, text)| text.contains("\"level\"")),
        "the platform's logs are empty: nothing was scanned"
    );
    let mut leaks = Vec::new();
    for (process, text) in &logs {
        for (what, secret) in &secrets {
            if secret.len() >= 6
                && let Some(at) = text.find(secret.as_str())
            {
                leaks.push(format!("{process}: {what} in {:?}", line_around(text, at)));
            }
        }
        let lower = text.to_ascii_lowercase();
        let mut from = 0;
        while let Some(found) = lower[from..].find("cvc") {
            let at = from + found;
            let near: String = lower[at..].chars().take(16).collect();
            if near.contains(CVC) {
                leaks.push(format!("{process}: the CVC in {:?}", line_around(text, at)));
            }
            from = at + 3;
        }
    }
    anyhow::ensure!(
        leaks.is_empty(),
        "{} leak(s):\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    Ok(())
}

/// The log line around byte `at`, shortened, for the report.
fn line_around(text: &str, at: usize) -> String {
    let start = text[..at].rfind('\n').map_or(0, |n| n + 1);
    let end = text[at..].find('\n').map_or(text.len(), |n| at + n);
    text[start..end].chars().take(400).collect()
}
