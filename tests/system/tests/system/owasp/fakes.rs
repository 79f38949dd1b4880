//! Third parties that misbehave, and a listener that must never be called, each a tiny HTTP
//! server on a free port that this test controls.
//!
//! - [`Fakes::psp`] stands in front of the platform's psp-sim: ordinary cards are forwarded to
//!   it unchanged, the hostile cards below get a hostile answer instead (garbage, a huge body,
//!   a redirect to [`Fakes::psp`]'s `/stolen`, an unknown status, a 500 page, no answer in
//!   time). Looking a hostile charge up by key gets garbage too, so the payment stays pending.
//! - [`Fakes::sms`] is an SMS gateway whose every answer is a success with an unusable body.
//! - [`Fakes::trap`] is a plain TCP listener that counts connections: product image URLs point
//!   at it, and nothing on the server side may ever connect (SSRF).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Cards (all pass the Luhn check) that the hostile provider answers badly, with what it does.
pub const HOSTILE_CARDS: [(&str, Hostility); 6] = [
    ("4111111111111111", Hostility::Garbage),
    ("5555555555554444", Hostility::Huge),
    ("5105105105105100", Hostility::Redirect),
    ("4012888888881881", Hostility::UnknownStatus),
    ("5200828282828210", Hostility::ServerErrorPage),
    ("6011111111111117", Hostility::Slow),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// 200 with HTML instead of JSON.
    Garbage,
    /// 200 with a 20 MB body.
    Huge,
    /// 307 to this fake's `/stolen` (a client that follows it re-sends the card there).
    Redirect,
    /// 201 with a charge in a status nobody documented.
    UnknownStatus,
    /// 500 with an HTML error page.
    ServerErrorPage,
    /// Holds the answer far beyond payment-service's timeout.
    Slow,
}

#[derive(Default)]
struct PspState {
    /// psp-sim, known once the platform has started it.
    upstream: OnceLock<String>,
    client: reqwest::Client,
    /// Requests that arrived at `/stolen` (must stay 0).
    stolen: AtomicUsize,
    /// Idempotency keys of hostile charges, so their look-ups are answered badly too.
    hostile_keys: Mutex<HashSet<String>>,
    /// Hostile charge calls received.
    hostile_calls: AtomicUsize,
    self_url: OnceLock<String>,
}

#[derive(Default)]
struct SmsState {
    calls: AtomicUsize,
}

pub struct Fakes {
    pub psp: String,
    pub sms: String,
    pub trap: String,
    psp_state: Arc<PspState>,
    sms_state: Arc<SmsState>,
    trap_hits: Arc<AtomicUsize>,
}

impl Fakes {
    pub async fn start() -> anyhow::Result<Self> {
        let psp_state = Arc::new(PspState::default());
        let psp = serve(
            Router::new()
                .fallback(psp_handler)
                .with_state(psp_state.clone()),
        )
        .await?;
        let _ = psp_state.self_url.set(psp.clone());
        let sms_state = Arc::new(SmsState::default());
        let sms = serve(
            Router::new()
                .fallback(sms_handler)
                .with_state(sms_state.clone()),
        )
        .await?;
        let trap_hits = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let trap = format!("http://{}", listener.local_addr()?);
        let hits = trap_hits.clone();
        tokio::spawn(async move {
            while let Ok((_stream, _)) = listener.accept().await {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(Self {
            psp,
            sms,
            trap,
            psp_state,
            sms_state,
            trap_hits,
        })
    }

    /// Where ordinary charges go (the platform's psp-sim).
    pub fn forward_to(&self, psp_sim: &str) {
        let _ = self.psp_state.upstream.set(psp_sim.to_owned());
    }

    pub fn stolen(&self) -> usize {
        self.psp_state.stolen.load(Ordering::SeqCst)
    }

    pub fn hostile_calls(&self) -> usize {
        self.psp_state.hostile_calls.load(Ordering::SeqCst)
    }

    pub fn sms_calls(&self) -> usize {
        self.sms_state.calls.load(Ordering::SeqCst)
    }

    pub fn trap_hits(&self) -> usize {
        self.trap_hits.load(Ordering::SeqCst)
    }
}

async fn serve(router: Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("fake server stopped: {error}");
        }
    });
    Ok(url)
}

fn hostility(body: &[u8]) -> Option<Hostility> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let number = body["card"]["number"].as_str()?;
    HOSTILE_CARDS
        .iter()
        .find(|(card, _)| *card == number)
        .map(|(_, hostility)| *hostility)
}

async fn psp_handler(
    State(state): State<Arc<PspState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/stolen" {
        state.stolen.fetch_add(1, Ordering::SeqCst);
        return StatusCode::OK.into_response();
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if method == Method::POST
        && uri.path() == "/v1/charges"
        && let Some(hostility) = hostility(&body)
    {
        state.hostile_calls.fetch_add(1, Ordering::SeqCst);
        if let (Some(key), Ok(mut keys)) = (key, state.hostile_keys.lock()) {
            keys.insert(key);
        }
        return hostile_answer(&state, hostility).await;
    }
    let looked_up = uri
        .query()
        .and_then(|query| query.strip_prefix("idempotency_key="))
        .map(str::to_owned);
    if let Some(key) = looked_up
        && state
            .hostile_keys
            .lock()
            .is_ok_and(|keys| keys.contains(&key))
    {
        return hostile_answer(&state, Hostility::Garbage).await;
    }
    forward(&state, method, &uri, &headers, body).await
}

async fn hostile_answer(state: &PspState, hostility: Hostility) -> Response {
    let html = [(header::CONTENT_TYPE, "text/html")];
    match hostility {
        Hostility::Garbage => (StatusCode::OK, html, "<html>charged?</html>").into_response(),
        Hostility::Huge => {
            let mut body = String::from("{\"id\":\"ch_huge\",\"status\":\"succeeded\",\"pad\":\"");
            body.push_str(&"x".repeat(20 * 1024 * 1024));
            body.push_str("\"}");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Hostility::Redirect => {
            let to = format!(
                "{}/stolen",
                state.self_url.get().cloned().unwrap_or_default()
            );
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
        }
        Hostility::UnknownStatus => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"id":"ch_odd","status":"charged_twice_maybe"}"#,
        )
            .into_response(),
        Hostility::ServerErrorPage => (
            StatusCode::INTERNAL_SERVER_ERROR,
            html,
            "<html><body>Traceback (most recent call last): ...</body></html>",
        )
            .into_response(),
        Hostility::Slow => {
            // The fake's behaviour, not the test's synchronisation: an answer that comes far
            // too late for payment-service's timeout.
            tokio::time::sleep(Duration::from_secs(60)).await;
            (StatusCode::OK, html, "too late").into_response()
        }
    }
}

async fn forward(
    state: &PspState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let Some(upstream) = state.upstream.get() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    match crate::provider_relay::relay(&state.client, upstream, method, uri, headers, body).await {
        Some(answer) => answer.into_response(),
        None => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Every SMS "succeeds" with an answer that must not be believed: a 2 MB body whose id is
/// not a plausible message id.
async fn sms_handler(State(state): State<Arc<SmsState>>) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let mut body = String::from("{\"id\":\"");
    body.push_str(&"<script>".repeat(256 * 1024));
    body.push_str("\"}");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
