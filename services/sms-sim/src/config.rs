//! Configuration from the environment: `HOST`, `PORT` (8091), `SMS_SIM_TOKEN`.

#![allow(
    clippy::disallowed_methods,
    reason = "the one module of this service that reads its environment"
)]

use anyhow::Context as _;

/// The token the simulator accepts when none is configured; notification-service uses the
/// same default (`SMS_API_TOKEN`), so the local stack works without set-up.
pub const DEFAULT_TOKEN: &str = "sms-sim-local-token";

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// The bearer token callers must present on `/v1/messages`.
    pub api_token: String,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        Ok(Self {
            host: var("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: match var("PORT") {
                Some(port) => port.parse().context("PORT must be a port number")?,
                None => 8091,
            },
            api_token: var("SMS_SIM_TOKEN").unwrap_or_else(|| DEFAULT_TOKEN.into()),
        })
    }
}
