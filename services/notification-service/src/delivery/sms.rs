//! SMS through a provider interface, with one implementation for the JSON-over-HTTP API most
//! SMS gateways offer (bearer token, `POST /v1/messages`, a client reference the gateway
//! deduplicates on). Locally the gateway is sms-sim.

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
            .connect_timeout(Duration::from_secs(2).min(config.timeout))
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
        if status.is_success() {
            let body: SendResponse = response.json().await.map_err(|error| {
                SendError::Transient(format!("unreadable SMS gateway answer: {error}"))
            })?;
            return Ok(body.id);
        }
        let detail = response.text().await.unwrap_or_default();
        let detail: String = detail.chars().take(300).collect();
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
