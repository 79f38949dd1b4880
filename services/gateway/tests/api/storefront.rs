//! The web storefront's files at `/`: hashed assets cached for good, `index.html` never, the
//! SPA fallback for client routes, and platform paths kept out of it.

use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};

use crate::helpers::*;

const INDEX: &str =
    "<!doctype html><title>ferroshop</title><script src=\"/assets/index-abc123.js\"></script>";

/// A built storefront in a fresh directory: index.html and one hashed asset.
fn built_storefront() -> anyhow::Result<std::path::PathBuf> {
    let root = std::env::temp_dir().join(format!("ferroshop-web-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(root.join("assets"))?;
    std::fs::write(root.join("index.html"), INDEX)?;
    std::fs::write(root.join("assets/index-abc123.js"), "console.log('shop')")?;
    // The build writes a gzip copy beside each text file (bytes here need not be real gzip:
    // the gateway sends the file as it is).
    std::fs::write(root.join("assets/index-abc123.js.gz"), "gzipped")?;
    Ok(root)
}

#[tokio::test]
async fn the_storefront_is_served_at_the_root_with_the_right_caching() -> TestResult {
    let root = built_storefront()?;
    let issuer = Issuer::new()?;
    let mut config = base_config()?;
    config.web_root = Some(root.display().to_string());
    let gateway = TestGateway::start(config, issuer.keys.clone()).await?;

    let index = gateway.get("/").await?;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(index.body, INDEX);
    assert_eq!(index.headers[CACHE_CONTROL], "no-cache");
    assert!(
        index.headers[CONTENT_TYPE]
            .to_str()?
            .starts_with("text/html")
    );

    let asset = gateway.get("/assets/index-abc123.js").await?;
    assert_eq!(asset.status, StatusCode::OK);
    assert_eq!(
        asset.headers[CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(asset.headers[CONTENT_TYPE].to_str()?.contains("javascript"));
    assert!(asset.headers.get(CONTENT_ENCODING).is_none());

    // A browser that accepts gzip gets the precompressed copy, with the same caching.
    let gzipped = gateway
        .send(
            gateway
                .client
                .get(gateway.url("/assets/index-abc123.js"))
                .header(ACCEPT_ENCODING, "gzip"),
        )
        .await?;
    assert_eq!(gzipped.status, StatusCode::OK);
    assert_eq!(gzipped.headers[CONTENT_ENCODING], "gzip");
    assert_eq!(gzipped.body, "gzipped");
    assert_eq!(
        gzipped.headers[CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );

    // Client routes of the SPA get index.html, uncached.
    for route in [
        "/products/42",
        "/orders/7f1c?pay=1",
        "/signin/complete?ticket=t",
    ] {
        let page = gateway.get(route).await?;
        assert_eq!(page.status, StatusCode::OK, "{route}");
        assert_eq!(page.body, INDEX, "{route}");
        assert_eq!(page.headers[CACHE_CONTROL], "no-cache", "{route}");
    }

    // A missing hashed asset or file is a 404, never the page in its place.
    for missing in ["/assets/index-old999.js", "/robots.txt"] {
        let reply = gateway.get(missing).await?;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{missing}");
        assert!(reply.is_problem(), "{missing}: {:?}", reply.body);
    }

    // The platform's paths are never swallowed by the fallback.
    for platform in [
        "/api/nothing-here",
        "/api",
        "/health/other",
        "/.well-known/openid-configuration",
        "/openapi.json",
    ] {
        let reply = gateway.get(platform).await?;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{platform}");
        assert!(reply.is_problem(), "{platform}: {:?}", reply.body);
    }
    let live = gateway.get("/health/live").await?;
    assert_eq!(live.status, StatusCode::OK);

    let post = gateway
        .send(gateway.client.post(gateway.url("/products/42")))
        .await?;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(post.is_problem());

    std::fs::remove_dir_all(&root)?;
    Ok(())
}

#[tokio::test]
async fn without_a_storefront_unknown_paths_stay_problems() -> TestResult {
    let issuer = Issuer::new()?;
    let gateway = TestGateway::start(base_config()?, issuer.keys.clone()).await?;
    let reply = gateway.get("/products/42").await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.is_problem());
    Ok(())
}

#[tokio::test]
async fn a_storefront_directory_without_index_html_stops_the_start() -> TestResult {
    let root = std::env::temp_dir().join(format!("ferroshop-web-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&root)?;
    let issuer = Issuer::new()?;
    let mut config = base_config()?;
    config.web_root = Some(root.display().to_string());
    let started = TestGateway::start(config, issuer.keys.clone()).await;
    let error = started.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(error.contains("index.html"), "{error}");
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
