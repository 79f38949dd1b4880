//! SMS through a provider interface, with one implementation for the JSON-over-HTTP API most
//! SMS gateways offer (bearer token, `POST /v1/messages`, a client reference the gateway
//! deduplicates on). Locally the gateway is sms-sim.
//!
//! The gateway is a third party, so its answers are checked (OWASP API10): redirects are not
//! followed (the message and the phone number would go to another host), an answer is read
//! up to [`MAX_ANSWER_BYTES`] within the timeout, and the message id must be plausible. A
//! success whose body fails the checks is a transient failure: the retry carries the same
//! client reference, which the gateway deduplicates, so the SMS is not sent twice.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::SendError;
use crate::config::SmsConfig;

/// The gateway's idempotency key for the SMS of `event_id`: a re-send after a crash is
/// recognised by the gateway and not delivered twice.
pub fn client_reference(event_id: Uuid) -> String {
    format!("{event_id}:sms")
}

/// The largest gateway answer read; a message receipt is a few dozen bytes.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Reads an answer's body up to [`MAX_ANSWER_BYTES`].
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
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
    Ok(body)
}

/// The message id of a success answer: 1 to 128 visible ASCII characters.
fn message_id(body: &[u8]) -> Result<String, String> {
    let answer: SendResponse = serde_json::from_slice(body)
        .map_err(|error| format!("unreadable SMS gateway answer: {error}"))?;
    if answer.id.is_empty()
        || answer.id.len() > 128
        || !answer.id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("implausible SMS gateway message id".into());
    }
    Ok(answer.id)
}

/// One SMS ready to go.
#[derive(Debug, Clone, Copy)]
pub struct Sms<'a> {
    pub event_id: Uuid,
    pub to: &'a str,
    pub text: &'a str,
}

/// An SMS provider.
pub trait SmsGateway: Send + Sync + 'static {
    /// Sends `sms`; returns the provider's message id.
    fn send(&self, sms: Sms<'_>) -> impl Future<Output = Result<String, SendError>> + Send;
}

/// A gateway reached over HTTP with a bearer token.
#[derive(Clone)]
pub struct HttpSmsGateway {
    client: reqwest::Client,
    url: String,
    token: SecretString,
}

impl std::fmt::Debug for HttpSmsGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSmsGateway")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct SendRequest<'a> {
    to: &'a str,
    text: &'a str,
    client_reference: &'a str,
}

#[derive(Deserialize)]
struct SendResponse {
    id: String,
}

impl HttpSmsGateway {
    pub fn new(config: &SmsConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2).min(config.timeout))
            .pool_idle_timeout(web::CLIENT_POOL_IDLE_TIMEOUT)
            .build()?;
        Ok(Self {
            client,
            url: format!("{}/v1/messages", config.base_url.trim_end_matches('/')),
            token: config.api_token.clone(),
        })
    }
}

impl SmsGateway for HttpSmsGateway {
    async fn send(&self, sms: Sms<'_>) -> Result<String, SendError> {
        let reference = client_reference(sms.event_id);
        let mut request = self
            .client
            .post(&self.url)
            .bearer_auth(self.token.expose_secret())
            .json(&SendRequest {
                to: sms.to,
                text: sms.text,
                client_reference: &reference,
            });
        // The gateway's trace is not ours, but a traceparent costs nothing and helps support.
        for (name, value) in telemetry::context_headers(&tracing::Span::current()) {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|error| SendError::Transient(format!("SMS gateway unreachable: {error}")))?;
        let status = response.status();
        let body = read_bounded(response).await.map_err(SendError::Transient)?;
        if status.is_success() {
            return message_id(&body).map_err(SendError::Transient);
        }
        let detail: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Err(SendError::Transient(format!(
                "SMS gateway {status}: {detail}"
            )))
        } else {
            Err(SendError::Permanent(format!(
                "SMS gateway refused ({status}): {detail}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_answers_are_refused() {
        for body in [
            &br#"{"id":""}"#[..],
            br#"{"id":"a b"}"#,
            br#"{"id":42}"#,
            br#"{}"#,
            b"<html></html>",
        ] {
            assert!(
                message_id(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!(r#"{{"id":"{}"}}"#, "m".repeat(129));
        assert!(message_id(long.as_bytes()).is_err());
        assert_eq!(
            message_id(br#"{"id":"msg_1","status":"queued"}"#),
            Ok("msg_1".into())
        );
    }
}
