//! The OIDC stand-in for Google (mock-oauth2-server) that sign-in tests run against, and a
//! browser's part of a sign-in driven with reqwest: follow the redirect to the provider, fill
//! in its login form, carry the code back.
//!
//! One stand-in serves a whole test binary (each test signs in as its own unique e-mail, and
//! the stand-in keeps nothing between sign-ins that another test could see). It is the one at
//! `OIDC_STANDIN_URL` when set (e.g. the one `cargo xtask up` runs on 8092); otherwise it is
//! started here on a free port from `OIDC_STANDIN_CLASSPATH`, which `cargo xtask test` sets
//! to the jars `cargo xtask up` provisioned, with the repository's configuration, the same
//! command xtask uses. It runs under a small shell that kills it when this process's end of
//! its stdin closes, so it never outlives the tests, however they end.

#![allow(
    clippy::disallowed_methods,
    reason = "starts the stand-in from the classpath and configuration cargo xtask test names"
)]

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::StatusCode;
use tokio::sync::OnceCell;
use url::Url;

/// The stand-in's base URL (its issuer for Google is `<base>/google`).
pub async fn stand_in_url() -> anyhow::Result<String> {
    static URL: OnceCell<String> = OnceCell::const_new();
    URL.get_or_try_init(start).await.cloned()
}

/// `<stand-in>/google`.
pub async fn google_issuer() -> anyhow::Result<String> {
    Ok(format!("{}/google", stand_in_url().await?))
}

/// The shared stand-in's process and the pipe that keeps it alive, held for the life of the
/// test binary.
static SHARED: Mutex<Option<StandIn>> = Mutex::new(None);

async fn start() -> anyhow::Result<String> {
    if let Ok(url) = std::env::var("OIDC_STANDIN_URL")
        && !url.is_empty()
    {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let stand_in = StandIn::start().await?;
    let url = stand_in.url.clone();
    if let Ok(mut shared) = SHARED.lock() {
        *shared = Some(stand_in);
    }
    Ok(url)
}

/// A stand-in process of its own, for a test that stops it (a provider going down); stopped
/// when dropped at the latest.
#[derive(Debug)]
pub struct StandIn {
    /// Its base URL; the Google issuer is `<url>/google`.
    pub url: String,
    child: Child,
    /// Closing it makes the wrapping shell kill the JVM.
    keep_alive: Option<ChildStdin>,
}

impl StandIn {
    /// Starts one on a free port from `OIDC_STANDIN_CLASSPATH`, with the repository's
    /// configuration, and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let classpath = std::env::var("OIDC_STANDIN_CLASSPATH").context(
            "neither OIDC_STANDIN_URL nor OIDC_STANDIN_CLASSPATH is set; run the tests with `cargo xtask test`, \
             or set OIDC_STANDIN_CLASSPATH=~/.cache/ferroshop/tools/oidc-standin-<version>/libs/* after `cargo xtask up`",
        )?;
        let config = std::env::var("OIDC_STANDIN_CONFIG").unwrap_or_else(|_| {
            // This crate lives in crates/testkit of the repository.
            format!(
                "{}/../../deploy/local/oidc-standin/config.json",
                env!("CARGO_MANIFEST_DIR")
            )
        });
        let port = crate::free_port()?;
        let mut child = Command::new("sh")
            .arg("-c")
            // Start the JVM, then wait for our end of stdin to close (dropped, or this process
            // exited however it ended), then stop it.
            .arg(r#""$@" </dev/null & pid=$!; read -r _; kill "$pid"; wait "$pid""#)
            .arg("oidc-stand-in")
            .args(["java", "-Xmx128m", "-XX:+UseSerialGC", "-cp", &classpath])
            .arg("no.nav.security.mock.oauth2.StandaloneMockOAuth2ServerKt")
            .env("SERVER_HOSTNAME", "127.0.0.1")
            .env("SERVER_PORT", port.to_string())
            .env("JSON_CONFIG_PATH", &config)
            .env_remove("JSON_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the OIDC stand-in (java)")?;
        let keep_alive = child.stdin.take();
        let mut stand_in = StandIn {
            url: format!("http://127.0.0.1:{port}"),
            child,
            keep_alive,
        };
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let alive = client.get(format!("{}/isalive", stand_in.url)).send().await;
            if alive.is_ok_and(|response| response.status() == StatusCode::OK) {
                return Ok(stand_in);
            }
            if let Some(status) = stand_in.child.try_wait()? {
                bail!(
                    "the OIDC stand-in exited during start-up ({status}); is {classpath} provisioned?"
                );
            }
            if std::time::Instant::now() > deadline {
                bail!("the OIDC stand-in did not answer /isalive on port {port} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `<url>/google`.
    pub fn google_issuer(&self) -> String {
        format!("{}/google", self.url)
    }

    /// Stops it and waits until it no longer answers.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        drop(self.keep_alive.take());
        let started = std::time::Instant::now();
        while self.child.try_wait()?.is_none() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the OIDC stand-in did not stop within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        drop(self.keep_alive.take());
        let _ = self.child.wait();
    }
}

/// A browser: keeps no cookies (the stand-in needs none) and follows no redirect, so each hop
/// is seen.
pub fn browser() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The `Location` of a 302, or an error naming what came instead.
pub async fn location(response: reqwest::Response) -> anyhow::Result<Url> {
    let status = response.status();
    let base = response.url().clone();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    match (status, location) {
        (StatusCode::FOUND, Some(location)) => Ok(base.join(&location)?),
        (status, _) => bail!(
            "expected a 302 with a Location, got {status}: {}",
            response.text().await.unwrap_or_default()
        ),
    }
}

/// A query parameter of `url`.
pub fn param(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The provider's login page: opens it (it must be the interactive form), then submits
/// `username` and the optional `claims` JSON as a person would. Returns the redirect back to
/// the relying party (its redirect URI with `code` and `state`).
pub async fn log_in_at_provider(
    browser: &reqwest::Client,
    login_page: &Url,
    username: &str,
    claims: Option<&str>,
) -> anyhow::Result<Url> {
    let page = browser.get(login_page.clone()).send().await?;
    anyhow::ensure!(
        page.status() == StatusCode::OK,
        "login page: {}",
        page.status()
    );
    let html = page.text().await?;
    anyhow::ensure!(
        html.contains(r#"name="username""#) && html.contains("<form"),
        "not the stand-in's login form: {html:.200}"
    );
    // The form has no action: it posts to the page's own URL.
    // Built before any await: the serializer is not Send.
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("username", username);
        if let Some(claims) = claims {
            form.append_pair("claims", claims);
        }
        form.finish()
    };
    let response = browser
        .post(login_page.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form)
        .send()
        .await?;
    location(response).await
}
