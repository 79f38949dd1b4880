//! The client of the payment provider (psp-sim): charges with timeouts, retries only where
//! they are safe, a circuit breaker, look-ups by idempotency key, and refunds.
//!
//! Safety of retries rests on the provider's idempotency key: every attempt of one charge
//! sends the same key (the payment id), so the provider charges at most once however often the
//! call is repeated. Retried: timeouts, connection failures and 5xx answers. Not retried:
//! answers (succeeded, declined) and 4xx. Outcomes:
//!
//! - an answer: succeeded or declined;
//! - `NotCharged`: every attempt failed in a way that proves nothing was charged (the
//!   provider answered 5xx, which psp-sim documents as "failed before charging", or the
//!   connection was refused);
//! - `Unknown`: at least one attempt timed out (or broke off) after the request may have
//!   reached the provider. The payment stays pending; the reconciler asks by key.
//!
//! Every call is a client span whose context travels in a `traceparent` header, so the
//! provider's spans join the payment's trace.
//!
//! The provider is a third party, so its answers are checked before anything is believed
//! (OWASP API10): redirects are not followed (a redirected charge would carry the card to
//! another host), an answer is read up to [`MAX_ANSWER_BYTES`] within the call's timeout, and
//! a charge must name a known status and a plausible id. An answer that fails these checks on
//! a charge is treated like a lost answer: the charge may have happened, so the payment stays
//! pending and the reconciler asks the provider by key. It is never retried blindly as
//! "not charged", which could charge twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::domain::breaker::Breaker;
use crate::domain::card::Card;

/// The largest provider answer read; a charge or a list of them is a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Reads an answer's body up to [`MAX_ANSWER_BYTES`]; larger answers and broken streams are
/// errors (as is text that is not UTF-8).
async fn read_bounded(mut response: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| format!("reading the answer: {error}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "answer is not UTF-8".to_owned())
}

/// A provider charge that passed the checks: status `succeeded` or `declined`, an id and a
/// decline code of at most 128 visible ASCII characters.
fn parse_charge(text: &str) -> Result<ProviderCharge, String> {
    let charge: ProviderCharge =
        serde_json::from_str(text).map_err(|error| format!("unreadable answer: {error}"))?;
    check_charge(charge)
}

fn check_charge(charge: ProviderCharge) -> Result<ProviderCharge, String> {
    let plausible = |text: &str| {
        !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic())
    };
    if !matches!(charge.status.as_str(), "succeeded" | "declined") {
        return Err(format!(
            "unknown charge status {:?}",
            truncate(&charge.status)
        ));
    }
    if !plausible(&charge.id) {
        return Err("implausible charge id".into());
    }
    if charge
        .decline_code
        .as_deref()
        .is_some_and(|code| !plausible(code))
    {
        return Err("implausible decline code".into());
    }
    Ok(charge)
}

/// A charge as the provider answers it (only what this service keeps; no card number).
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderCharge {
    pub id: String,
    /// `succeeded` or `declined`.
    pub status: String,
    #[serde(default)]
    pub decline_code: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ChargeList {
    data: Vec<ProviderCharge>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderRefund {
    pub id: String,
}

/// How a charge ended, as far as this service can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        reference: String,
    },
    Declined {
        reference: String,
        code: String,
    },
    /// Nothing was charged, but the provider could not be used (`reason` for the failure).
    NotCharged {
        reason: String,
    },
    /// The provider may or may not have charged; ask it later by key.
    Unknown {
        reason: String,
    },
}

impl ChargeOutcome {
    fn from_charge(charge: ProviderCharge) -> Self {
        match charge.status.as_str() {
            "succeeded" => Self::Succeeded {
                reference: charge.id,
            },
            _ => Self::Declined {
                reference: charge.id,
                code: charge
                    .decline_code
                    .unwrap_or_else(|| "card_declined".into()),
            },
        }
    }
}

/// One provider call, for the payment log.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub number: u32,
    pub outcome: String,
    pub http_status: Option<u16>,
    pub duration: Duration,
    pub error: Option<String>,
}

/// The charge request body. Built only for the call; its `Debug` hides the card.
#[derive(Serialize)]
struct ChargeBody<'a> {
    amount: i64,
    currency: &'a str,
    reference: &'a str,
    card: CardBody<'a>,
}

#[derive(Serialize)]
struct CardBody<'a> {
    number: &'a str,
    exp_month: u32,
    exp_year: i32,
    cvc: &'a str,
}

/// What to charge.
#[derive(Debug, Clone)]
pub struct ChargeCall<'a> {
    /// The provider's idempotency key (the payment id).
    pub key: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    /// The order id, the provider's `reference`.
    pub reference: &'a str,
    pub card: &'a Card,
}

#[derive(Debug, Clone)]
pub struct PspSettings {
    pub base_url: String,
    pub api_key: SecretString,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub breaker_threshold: u32,
    pub breaker_open_for: Duration,
}

#[derive(Debug, Clone)]
pub struct PspClient {
    http: reqwest::Client,
    base_url: String,
    api_key: SecretString,
    timeout: Duration,
    max_attempts: u32,
    breaker: Arc<Breaker>,
}

enum Call {
    /// The provider answered with this status and body.
    Answered(StatusCode, String),
    /// The request never reached the provider.
    Unreachable(String),
    /// Sent, but no (complete) answer.
    Lost(String),
}

impl PspClient {
    pub fn new(settings: PspSettings) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(settings.timeout.min(Duration::from_secs(2)))
                // A connection the provider is closing would turn a charge into `Lost`.
                .pool_idle_timeout(web::CLIENT_POOL_IDLE_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("building the provider client")?,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            api_key: settings.api_key,
            timeout: settings.timeout,
            max_attempts: settings.max_attempts.max(1),
            breaker: Arc::new(Breaker::new(
                settings.breaker_threshold,
                settings.breaker_open_for,
            )),
        })
    }

    /// Whether the breaker lets a new charge start (an open breaker answers 503 at once).
    pub fn available(&self) -> bool {
        self.breaker.allow(Instant::now())
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open(Instant::now())
    }

    /// The longest a charge can take, every attempt and pause included.
    pub fn charge_budget(&self) -> Duration {
        (self.timeout + Duration::from_millis(400)) * self.max_attempts
    }

    /// One HTTP call as a client span with the trace context in its headers.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&[u8]>,
    ) -> Call {
        let span = tracing::info_span!(
            "psp.call",
            otel.name = %format!("{method} {}", path.split('?').next().unwrap_or(path)),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.method = %method,
            http.status_code = tracing::field::Empty,
            peer.service = "psp-sim",
        );
        let url = format!("{}{path}", self.base_url);
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.api_key.expose_secret())
            .timeout(self.timeout);
        for (name, value) in telemetry::context_headers(&span) {
            request = request.header(name, value);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let outcome = async {
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match read_bounded(response).await {
                        Ok(text) => Call::Answered(status, text),
                        Err(error) => Call::Lost(error),
                    }
                }
                Err(error) if error.is_connect() => Call::Unreachable(error.to_string()),
                Err(error) if error.is_timeout() => {
                    Call::Lost(format!("no answer within {:?}", self.timeout))
                }
                Err(error) => Call::Lost(error.to_string()),
            }
        }
        .instrument(span.clone())
        .await;
        match &outcome {
            Call::Answered(status, _) => {
                span.record("http.status_code", status.as_u16());
                if status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                }
            }
            Call::Unreachable(_) | Call::Lost(_) => {
                span.record("otel.status_code", "ERROR");
            }
        }
        outcome
    }

    fn record(&self, healthy: bool) {
        match healthy {
            true => self.breaker.record_success(),
            false => self.breaker.record_failure(Instant::now()),
        }
    }

    /// Charges the card, retrying where safe; returns the outcome and every attempt.
    pub async fn charge(&self, charge: &ChargeCall<'_>) -> (ChargeOutcome, Vec<Attempt>) {
        let body = ChargeBody {
            amount: charge.amount,
            currency: charge.currency,
            reference: charge.reference,
            card: CardBody {
                number: &charge.card.number,
                exp_month: charge.card.exp_month,
                exp_year: charge.card.exp_year,
                cvc: &charge.card.cvc,
            },
        };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => {
                let reason = format!("encoding the charge: {error}");
                return (ChargeOutcome::NotCharged { reason }, Vec::new());
            }
        };
        let mut attempts = Vec::new();
        let mut maybe_charged = false;
        let mut last_error = String::new();
        for number in 1..=self.max_attempts {
            if number > 1 {
                // A retry is only worth it while the breaker lets calls through.
                if !self.breaker.allow(Instant::now()) {
                    last_error = "the provider's circuit is open".into();
                    break;
                }
                let pause = Duration::from_millis(100 * 2u64.pow(number - 2));
                tokio::time::sleep(pause.min(Duration::from_millis(400))).await;
            }
            let started = Instant::now();
            let call = self
                .call(
                    reqwest::Method::POST,
                    "/v1/charges",
                    Some(charge.key),
                    Some(&body),
                )
                .await;
            let mut attempt = Attempt {
                number,
                outcome: String::new(),
                http_status: None,
                duration: started.elapsed(),
                error: None,
            };
            match call {
                Call::Answered(status, text)
                    if status == StatusCode::CREATED
                        || status == StatusCode::OK
                        || status == StatusCode::PAYMENT_REQUIRED =>
                {
                    self.record(true);
                    attempt.http_status = Some(status.as_u16());
                    match parse_charge(&text) {
                        Ok(provider) => {
                            let outcome = ChargeOutcome::from_charge(provider);
                            attempt.outcome = match &outcome {
                                ChargeOutcome::Succeeded { .. } => "succeeded".into(),
                                _ => "declined".into(),
                            };
                            attempts.push(attempt);
                            return (outcome, attempts);
                        }
                        Err(error) => {
                            // An answer we cannot read may still be a charge.
                            maybe_charged = true;
                            last_error = error;
                            attempt.outcome = "unreadable".into();
                            attempt.error = Some(last_error.clone());
                            attempts.push(attempt);
                        }
                    }
                }
                Call::Answered(status, text) if status.is_server_error() => {
                    self.record(false);
                    last_error = format!("provider answered {status}");
                    attempt.http_status = Some(status.as_u16());
                    attempt.outcome = "provider_error".into();
                    attempt.error = Some(truncate(&text));
                    attempts.push(attempt);
                }
                Call::Answered(status, text) if !status.is_client_error() => {
                    // A redirect, or a success other than the documented ones: the provider
                    // did something we do not understand, which may include charging. Like a
                    // lost answer, the reconciler settles it by key.
                    self.record(true);
                    maybe_charged = true;
                    last_error = format!("unexpected provider answer {status}");
                    attempt.http_status = Some(status.as_u16());
                    attempt.outcome = "unexpected".into();
                    attempt.error = Some(truncate(&text));
                    attempts.push(attempt);
                    break;
                }
                Call::Answered(status, text) => {
                    // 4xx: our request is wrong (key reuse, bad field); repeating won't help.
                    // The provider checks before charging, so nothing was charged.
                    self.record(true);
                    attempt.http_status = Some(status.as_u16());
                    attempt.outcome = "rejected".into();
                    attempt.error = Some(truncate(&text));
                    attempts.push(attempt);
                    tracing::error!(
                        status = status.as_u16(),
                        "the provider rejected a charge request"
                    );
                    return (
                        ChargeOutcome::NotCharged {
                            reason: "provider_rejected".into(),
                        },
                        attempts,
                    );
                }
                Call::Unreachable(error) => {
                    self.record(false);
                    last_error = error.clone();
                    attempt.outcome = "unreachable".into();
                    attempt.error = Some(error);
                    attempts.push(attempt);
                }
                Call::Lost(error) => {
                    self.record(false);
                    maybe_charged = true;
                    last_error = error.clone();
                    attempt.outcome = "timeout".into();
                    attempt.error = Some(error);
                    attempts.push(attempt);
                }
            }
        }
        let outcome = match maybe_charged {
            true => ChargeOutcome::Unknown { reason: last_error },
            false => ChargeOutcome::NotCharged { reason: last_error },
        };
        (outcome, attempts)
    }

    /// The charge made under `key`, if any (`Ok(None)`: the provider has none).
    pub async fn find_by_key(&self, key: &str) -> anyhow::Result<Option<ProviderCharge>> {
        let path = format!("/v1/charges?idempotency_key={key}");
        match self.call(reqwest::Method::GET, &path, None, None).await {
            Call::Answered(StatusCode::OK, text) => {
                self.record(true);
                let list: ChargeList =
                    serde_json::from_str(&text).context("decoding the provider's charges")?;
                match list.data.into_iter().next() {
                    Some(charge) => check_charge(charge)
                        .map(Some)
                        .map_err(|error| anyhow::anyhow!("the provider's charge: {error}")),
                    None => Ok(None),
                }
            }
            Call::Answered(status, text) => {
                self.record(!status.is_server_error());
                anyhow::bail!("provider answered {status}: {}", truncate(&text))
            }
            Call::Unreachable(error) | Call::Lost(error) => {
                self.record(false);
                anyhow::bail!("provider look-up failed: {error}")
            }
        }
    }

    /// The provider's outcome of the charge under `key`, for the reconciler.
    pub async fn outcome_by_key(&self, key: &str) -> anyhow::Result<Option<ChargeOutcome>> {
        Ok(self.find_by_key(key).await?.map(ChargeOutcome::from_charge))
    }

    /// Refunds a charge in full under `key` (the same key replays the first refund).
    pub async fn refund(&self, key: &str, charge: &str) -> anyhow::Result<ProviderRefund> {
        let body = serde_json::to_vec(&serde_json::json!({"charge": charge}))
            .context("encoding the refund")?;
        match self
            .call(reqwest::Method::POST, "/v1/refunds", Some(key), Some(&body))
            .await
        {
            Call::Answered(status, text) if status.is_success() => {
                self.record(true);
                serde_json::from_str(&text).context("decoding the provider's refund")
            }
            Call::Answered(status, text) => {
                self.record(!status.is_server_error());
                anyhow::bail!("refund refused with {status}: {}", truncate(&text))
            }
            Call::Unreachable(error) | Call::Lost(error) => {
                self.record(false);
                anyhow::bail!("refund call failed: {error}")
            }
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_charges_are_refused() {
        let cases = [
            r#"{"id":"ch_1","status":"refunded"}"#,
            r#"{"id":"","status":"succeeded"}"#,
            r#"{"id":"ch 1\n","status":"succeeded"}"#,
            r#"{"id":"ch_1","status":"declined","decline_code":""}"#,
            r#"{"status":"succeeded"}"#,
            r#"["succeeded"]"#,
            "<html>oops</html>",
        ];
        for text in cases {
            assert!(parse_charge(text).is_err(), "{text}");
        }
        let long_id = format!(r#"{{"id":"{}","status":"succeeded"}}"#, "x".repeat(129));
        assert!(parse_charge(&long_id).is_err());
        assert!(parse_charge(r#"{"id":"ch_1","status":"succeeded","extra":1}"#).is_ok());
        assert!(
            parse_charge(r#"{"id":"ch_1","status":"declined","decline_code":"card_declined"}"#)
                .is_ok()
        );
    }

    #[test]
    fn provider_charges_map_to_outcomes() {
        let ok = ProviderCharge {
            id: "ch_1".into(),
            status: "succeeded".into(),
            decline_code: None,
        };
        assert_eq!(
            ChargeOutcome::from_charge(ok),
            ChargeOutcome::Succeeded {
                reference: "ch_1".into()
            }
        );
        let declined = ProviderCharge {
            id: "ch_2".into(),
            status: "declined".into(),
            decline_code: Some("insufficient_funds".into()),
        };
        assert_eq!(
            ChargeOutcome::from_charge(declined),
            ChargeOutcome::Declined {
                reference: "ch_2".into(),
                code: "insufficient_funds".into()
            }
        );
    }
}
