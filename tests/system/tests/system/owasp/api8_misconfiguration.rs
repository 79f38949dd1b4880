//! API8:2023 Security misconfiguration, at the edge: security headers on every kind of
//! answer (proxied JSON, the gateway's own problems, health), CORS only for the configured
//! origins (a preflight from any other origin gets no `Access-Control-*` header), no stack
//! trace or internal detail in error answers (malformed input to every service, a hostile
//! provider's 500 page), no debug endpoint or API docs reachable through the gateway, and
//! the `Server` header does not advertise a product. HSTS is off here (plain HTTP) and is
//! covered by the gateway's unit tests with it configured.

use reqwest::{Method, StatusCode};

use super::{ALLOWED_ORIGIN, Owasp, is_problem};

const HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", "frame-ancestors 'none'"),
];

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let account = ctx.account().await?;
    let answers = [
        (
            "a proxied read",
            ctx.get("/api/products?limit=1", None).await?,
        ),
        ("a proxied 401", ctx.get("/api/orders", None).await?),
        (
            "the gateway's 404",
            ctx.get("/api/nothing-here", None).await?,
        ),
        ("health", ctx.get("/health/ready", None).await?),
        ("jwks", ctx.get("/.well-known/jwks.json", None).await?),
        (
            "a profile",
            ctx.get("/api/users/me", Some(&account.user.token)).await?,
        ),
    ];
    for (what, reply) in &answers {
        for (name, expected) in HEADERS {
            let value = reply
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            anyhow::ensure!(
                value.contains(expected),
                "{what}: header {name} is {value:?}, expected {expected:?}"
            );
        }
        anyhow::ensure!(
            !reply.headers.contains_key("strict-transport-security"),
            "{what}: HSTS over plain HTTP"
        );
        if let Some(server) = reply.headers.get("server") {
            anyhow::bail!("{what}: the Server header advertises {server:?}");
        }
    }
    let csp = answers[0]
        .1
        .headers
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
    ] {
        anyhow::ensure!(csp.contains(directive), "CSP {csp:?} lacks {directive:?}");
    }

    // CORS: the configured origin gets its preflight answered, any other gets nothing.
    let preflight = |origin: &str| {
        ctx.api.send(
            ctx.api
                .client
                .request(Method::OPTIONS, ctx.api.url("/api/orders"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization,content-type",
                ),
        )
    };
    let allowed = preflight(ALLOWED_ORIGIN).await?;
    anyhow::ensure!(
        allowed
            .headers
            .get("access-control-allow-origin")
            .is_some_and(|value| value == ALLOWED_ORIGIN),
        "the allowed origin's preflight: {allowed:?} {:?}",
        allowed.headers
    );
    for origin in [
        "https://evil.example",
        "null",
        "https://shop.owasp.test.evil.example",
    ] {
        let refused = preflight(origin).await?;
        let granted: Vec<_> = refused
            .headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-allow"))
            .collect();
        anyhow::ensure!(
            granted.is_empty(),
            "a preflight from {origin} got {granted:?}"
        );
        let simple = ctx
            .api
            .send(
                ctx.api
                    .client
                    .get(ctx.api.url("/api/products?limit=1"))
                    .header("origin", origin),
            )
            .await?;
        anyhow::ensure!(
            !simple.headers.contains_key("access-control-allow-origin"),
            "a read from {origin} is shared with it: {:?}",
            simple.headers
        );
    }

    // Errors carry no internals: malformed input to every service, through the gateway.
    let token = Some(account.user.token.as_str());
    let bad_inputs: Vec<(Method, &str, Option<&str>, &str)> = vec![
        (Method::POST, "/api/users/register", None, "{\"email\": "),
        (Method::POST, "/api/orders", token, "[1, 2, 3]"),
        (
            Method::POST,
            "/api/payments",
            token,
            "{\"order_id\": \"not-a-uuid\"}",
        ),
        (
            Method::PUT,
            "/api/notifications/preferences",
            token,
            "{\"email\": \"yes\"}",
        ),
        (
            Method::POST,
            "/api/products",
            Some(&ctx.admin),
            "\u{0}\u{1}",
        ),
        (Method::GET, "/api/products/%00%ff", None, ""),
        (Method::GET, "/api/orders/not-a-uuid", token, ""),
        (
            Method::GET,
            "/api/products?min_price=abc&sort=%27%3B--",
            None,
            "",
        ),
    ];
    for (method, path, auth, body) in bad_inputs {
        let mut request = ctx
            .api
            .client
            .request(method.clone(), ctx.api.url(path))
            .header("content-type", "application/json")
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .body(body.to_owned());
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        let reply = ctx.api.send(request).await?;
        anyhow::ensure!(
            reply.status.is_client_error() && is_problem(&reply),
            "{method} {path}: {reply:?}"
        );
        no_internals(&reply.body.to_string(), &format!("{method} {path}"))?;
    }

    // No debug endpoints or service internals through the edge.
    for path in [
        "/docs",
        "/openapi.json",
        "/api/docs",
        "/api/openapi.json",
        "/api/debug",
        "/api/users/debug",
        "/api/orders/debug/vars",
        "/debug/pprof",
        "/actuator/env",
        "/.env",
        "/.git/config",
        "/admin",
        "/engine-rest/engine",
        "/operaton/app/",
    ] {
        let reply = ctx.get(path, Some(&ctx.admin)).await?;
        anyhow::ensure!(
            reply.status == StatusCode::NOT_FOUND && is_problem(&reply),
            "{path} answers through the gateway: {reply:?}"
        );
    }
    Ok(())
}

/// Words that only a stack trace, a panic or a leaked internal error would put in an answer.
pub fn no_internals(text: &str, what: &str) -> anyhow::Result<()> {
    let lower = text.to_lowercase();
    for marker in [
        "panicked",
        "stack backtrace",
        "traceback",
        "src/",
        ".rs:",
        "sqlx",
        "mongodb",
        "postgres",
        "rdkafka",
        "serde_json::",
        "thread '",
    ] {
        anyhow::ensure!(
            !lower.contains(marker),
            "{what}: the answer shows internals ({marker:?}): {text}"
        );
    }
    Ok(())
}
