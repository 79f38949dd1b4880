//! API4:2023 Unrestricted resource consumption. Limits a client cannot talk its way past:
//! page sizes, body size (gateway 1 MiB, services 64 KiB), header size, deeply nested JSON,
//! pathological search strings, the password-hash queue under a burst of logins (bounded:
//! 429 or 503 with `Retry-After`, never a pile-up or a 500), and a client that trickles its
//! headers (slowloris) is disconnected after the gateway's header read timeout instead of
//! holding the connection.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{HEADER_READ_TIMEOUT_MS, Owasp, expect_problem, is_problem};

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let account = ctx.account().await?;
    let token = Some(account.user.token.as_str());

    // Page sizes: out of range is refused, never served.
    for path in [
        "/api/products?limit=100000",
        "/api/orders?limit=100000",
        "/api/admin/orders?limit=100000",
        "/api/notifications?limit=100000",
    ] {
        let auth = if path.contains("admin") {
            Some(ctx.admin.as_str())
        } else {
            token
        };
        let reply = ctx.get(path, auth).await?;
        let capped = reply.status == StatusCode::OK
            && reply.body["items"]
                .as_array()
                .is_some_and(|items| items.len() <= 100);
        anyhow::ensure!(
            capped
                || (reply.status == StatusCode::UNPROCESSABLE_ENTITY && is_problem(&reply))
                || (reply.status == StatusCode::BAD_REQUEST && is_problem(&reply)),
            "GET {path}: {reply:?}"
        );
    }

    // Bodies: well above the limit (64 KiB at the gateway and at every service), and just
    // above it.
    for (size, what) in [(2 * 1024 * 1024, "2 MiB"), (100 * 1024, "100 KiB")] {
        let body = json!({"items": [], "shipping_address": {"name": "x".repeat(size)}});
        let reply = ctx.call(Method::POST, "/api/orders", token, &body).await?;
        expect_problem(
            &reply,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("{what} body limit"),
        )?;
    }

    // Headers: a 100 KiB header is refused before anything reads it.
    let reply = ctx
        .api
        .client
        .get(ctx.api.url("/api/products"))
        .header("x-padding", "p".repeat(100 * 1024))
        .send()
        .await;
    match reply {
        Ok(reply) => anyhow::ensure!(
            reply.status() == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                || reply.status() == StatusCode::BAD_REQUEST,
            "a 100 KiB header: {}",
            reply.status()
        ),
        // Closing the connection on an oversized head is an acceptable refusal too.
        Err(error) => anyhow::ensure!(!error.is_timeout(), "a 100 KiB header hung: {error}"),
    }

    // Deeply nested JSON (under the body limit, so the parser meets it), in a write body of
    // every kind of service.
    let mut nested = String::new();
    for _ in 0..8_000 {
        nested.push_str("{\"a\":");
    }
    nested.push('1');
    for _ in 0..8_000 {
        nested.push('}');
    }
    for (path, auth) in [
        ("/api/orders", token),
        ("/api/payments", token),
        ("/api/users/register", None),
        ("/api/products", Some(ctx.admin.as_str())),
        ("/api/notifications/preferences", token),
    ] {
        let mut request = ctx
            .api
            .client
            .request(
                if path.ends_with("preferences") {
                    Method::PUT
                } else {
                    Method::POST
                },
                ctx.api.url(path),
            )
            .header("content-type", "application/json")
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .body(nested.clone());
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        let reply = ctx.api.send(request).await?;
        anyhow::ensure!(
            reply.status.is_client_error() && is_problem(&reply),
            "deeply nested JSON to {path}: {reply:?}"
        );
    }
    // Nested specs inside an otherwise valid product: the depth limit names the field.
    let mut specs = json!(1);
    for _ in 0..100 {
        specs = json!({"a": specs});
    }
    let reply = ctx
        .call(
            Method::POST,
            "/api/products",
            Some(&ctx.admin),
            &json!({"sku": format!("N-{}", uuid::Uuid::new_v4().simple()), "name": "n",
                "description": "d", "category": "c", "tags": [],
                "price": {"amount": 100, "currency": "EUR"}, "specs": specs, "images": [],
                "initial_stock": 1}),
        )
        .await?;
    expect_problem(
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        "specs nested 100 deep",
    )?;

    // Pathological search strings: answered (results or a 4xx), never a 5xx or a hang.
    let long_words = "ab ".repeat(600);
    let wild = "*".repeat(2_000);
    let parens = "(".repeat(1_000);
    let queries: Vec<String> = vec![
        "a".repeat(5_000),
        long_words,
        wild,
        parens,
        "\"unclosed phrase AND OR NOT ~~~ ^^^ \\\\".into(),
        "%00%ff%fe".into(),
        "超长".repeat(1_000),
        "a~2 b~2 c~2 d~2 e~2 f~2 g~2 h~2 i~2 j~2 k~2 l~2 m~2 n~2 o~2 p~2".into(),
    ];
    for q in &queries {
        for path in ["/api/products", "/api/products/suggest"] {
            let reply = ctx
                .api
                .send(
                    ctx.api
                        .client
                        .get(url::Url::parse_with_params(
                            &ctx.api.url(path),
                            [("q", q.as_str())],
                        )?)
                        .timeout(Duration::from_secs(20)),
                )
                .await?;
            anyhow::ensure!(
                reply.status == StatusCode::OK
                    || (reply.status.is_client_error() && is_problem(&reply)),
                "{path}?q={}…: {reply:?}",
                q.chars().take(20).collect::<String>()
            );
        }
    }

    slow_client(ctx).await
}

/// The password-hash queue and the database pool under a burst of concurrent logins for one
/// account: each answer is a result or a refusal that says when to retry, nothing else. Run
/// on its own (see `run_all`): the burst is meant to overload user-service, which would fail
/// other modules' sign-ins.
pub async fn login_burst(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let account = ctx.account().await?;
    let burst: Vec<_> = (0..48)
        .map(|n| {
            let password = if n % 2 == 0 {
                account.password.clone()
            } else {
                format!("wrong-{n}")
            };
            let email = account.user.email.clone();
            async move { ctx.api.login(&email, &password).await }
        })
        .collect();
    for reply in futures::future::join_all(burst).await {
        let reply = reply?;
        match reply.status {
            StatusCode::OK | StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => anyhow::ensure!(
                reply.headers.contains_key(reqwest::header::RETRY_AFTER) && is_problem(&reply),
                "a refused login without Retry-After: {reply:?}"
            ),
            _ => anyhow::bail!("a login in a burst: {reply:?}"),
        }
    }

    Ok(())
}

/// A client that sends half a request head and then nothing: the gateway closes the
/// connection after its header read timeout (the test allows far more before calling it a
/// hang; it asserts the close, not the time).
async fn slow_client(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let address = ctx.api.gateway.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await?;
    stream
        .write_all(b"GET /api/products HTTP/1.1\r\nHost: owasp\r\nX-Slow: 1")
        .await?;
    let mut answer = Vec::new();
    let limit = Duration::from_millis(HEADER_READ_TIMEOUT_MS * 20);
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    match read {
        Ok(Ok(_)) => {
            let text = String::from_utf8_lossy(&answer);
            anyhow::ensure!(
                text.is_empty()
                    || text.starts_with("HTTP/1.1 408")
                    || text.starts_with("HTTP/1.1 400"),
                "a slow client got: {text}"
            );
            Ok(())
        }
        // A reset is a close too.
        Ok(Err(_)) => Ok(()),
        Err(_) => anyhow::bail!(
            "the gateway still held a connection whose headers never finished after {limit:?}"
        ),
    }
}
