//! API2:2023 Broken authentication. Tokens the platform must refuse at the gateway and at the
//! service behind it: `alg: none`, HS256 signed with the public key (algorithm confusion),
//! expired, another audience, another issuer, an unknown `kid`, a bad signature; and the
//! session rules: a refresh token used twice revokes its whole family (the legitimate
//! holder's newer token too), and after logout the refresh token is dead. An access token
//! stays valid until it expires (15 minutes, stateless by design; docs/SECURITY.md).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Owasp, expect_problem};

/// Claims like user-service's, with `changes` applied.
fn claims(user: uuid::Uuid, changes: &[(&str, Value)]) -> Value {
    let now = chrono_now();
    let mut claims = json!({
        "sub": user, "role": "admin", "email": "forged@test.local",
        "iss": "ferroshop-users", "aud": "ferroshop",
        "exp": now + 600, "iat": now, "jti": uuid::Uuid::new_v4(),
    });
    for (name, value) in changes {
        claims[*name] = value.clone();
    }
    claims
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let account = ctx.account().await?;
    let user = account.user.id;
    let jwks = ctx.get("/.well-known/jwks.json", None).await?;
    let kid = jwks.body["keys"][0]["kid"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no kid in {jwks:?}"))?
        .to_owned();
    let public_x = jwks.body["keys"][0]["x"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // The platform's signing key (user-service wrote it into the platform's directory): the
    // forgeries below are signed correctly, so only the claim under test is wrong.
    let pem = std::fs::read(ctx.platform.work_dir.join("jwt-ed25519.pem"))?;
    let signing = EncodingKey::from_ed_pem(&pem)?;
    let signed = |kid: &str, claims: &Value| -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &signing)?)
    };

    // A correctly signed token with fresh claims works: the refusals below are about the
    // one thing each changes.
    let good = signed(&kid, &claims(user, &[("role", json!("customer"))]))?;
    let me = ctx.get("/api/users/me", Some(&good)).await?;
    anyhow::ensure!(me.status == StatusCode::OK, "a well-formed token: {me:?}");

    let now = chrono_now();
    let mut forged: Vec<(&str, String)> = vec![
        (
            "alg none",
            unsigned(
                &json!({"alg": "none", "typ": "JWT", "kid": kid}),
                &claims(user, &[]),
            ),
        ),
        (
            "HS256 signed with the public key",
            jsonwebtoken::encode(
                &Header {
                    kid: Some(kid.clone()),
                    ..Header::new(Algorithm::HS256)
                },
                &claims(user, &[]),
                &EncodingKey::from_secret(public_x.as_bytes()),
            )?,
        ),
        (
            "expired",
            signed(
                &kid,
                &claims(
                    user,
                    &[("exp", json!(now - 3_600)), ("iat", json!(now - 4_000))],
                ),
            )?,
        ),
        (
            "another audience",
            signed(&kid, &claims(user, &[("aud", json!("someone-else"))]))?,
        ),
        (
            "another issuer",
            signed(&kid, &claims(user, &[("iss", json!("evil-issuer"))]))?,
        ),
        (
            "an unknown kid",
            signed("not-a-key-we-published", &claims(user, &[]))?,
        ),
        ("no exp", {
            let mut claims = claims(user, &[]);
            if let Some(object) = claims.as_object_mut() {
                object.remove("exp");
            }
            signed(&kid, &claims)?
        }),
    ];
    // A valid token with its signature replaced.
    let tampered = {
        let mut parts: Vec<&str> = good.split('.').collect();
        let fake = URL_SAFE_NO_PAD.encode([7u8; 64]);
        if let Some(last) = parts.last_mut() {
            *last = &fake;
        }
        parts.join(".")
    };
    forged.push(("a bad signature", tampered));
    forged.push(("garbage", "not.a.jwt".into()));

    for (what, token) in &forged {
        // At the gateway's edge (a route that needs a token) ...
        let reply = ctx.get("/api/orders", Some(token)).await?;
        expect_problem(
            &reply,
            StatusCode::UNAUTHORIZED,
            &format!("{what} at /api/orders"),
        )?;
        // ... and at a service whose route the gateway lets through without one (the
        // catalog's writes need a token at the edge, so use user-service's profile).
        let reply = ctx.get("/api/users/me", Some(token)).await?;
        expect_problem(
            &reply,
            StatusCode::UNAUTHORIZED,
            &format!("{what} at /api/users/me"),
        )?;
        // Forged admin tokens never reach an admin action.
        let reply = ctx
            .call(Method::POST, "/api/products", Some(token), &json!({}))
            .await?;
        expect_problem(
            &reply,
            StatusCode::UNAUTHORIZED,
            &format!("{what} at POST /api/products"),
        )?;
    }

    // Refresh rotation: the first use works, a second use of the same token is refused and
    // revokes the family, so the token issued by the first use is dead too.
    let refresh = |token: String| async move {
        ctx.call(
            Method::POST,
            "/api/users/refresh",
            None,
            &json!({"refresh_token": token}),
        )
        .await
    };
    let first = refresh(account.refresh.clone()).await?;
    anyhow::ensure!(first.status == StatusCode::OK, "first refresh: {first:?}");
    let next = first.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let reused = refresh(account.refresh.clone()).await?;
    expect_problem(&reused, StatusCode::UNAUTHORIZED, "a reused refresh token")?;
    let after = refresh(next).await?;
    expect_problem(&after, StatusCode::UNAUTHORIZED, "the family after reuse")?;

    // Logout ends the session: its refresh token no longer works.
    let other = ctx
        .api
        .login(&account.user.email, &account.password)
        .await?;
    let token = other.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let out = ctx
        .call(
            Method::POST,
            "/api/users/logout",
            None,
            &json!({"refresh_token": token}),
        )
        .await?;
    anyhow::ensure!(out.status == StatusCode::NO_CONTENT, "logout: {out:?}");
    let dead = refresh(token).await?;
    expect_problem(
        &dead,
        StatusCode::UNAUTHORIZED,
        "a refresh token after logout",
    )?;
    Ok(())
}
