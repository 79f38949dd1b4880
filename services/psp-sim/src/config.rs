//! Typed configuration, read once from the environment and validated at start.

#![allow(
    clippy::disallowed_methods,
    reason = "the one module of this service that reads its environment"
)]

use std::time::Duration;

use anyhow::Context as _;
use secrecy::SecretString;

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// The bearer API key callers must present (`PSP_API_KEY`).
    pub api_key: SecretString,
    /// Added before every API answer (`PSP_LATENCY_MS`).
    pub latency: Duration,
    /// Share of charge and refund calls answered 503 before anything is done
    /// (`PSP_FAILURE_RATE`, 0 to 1).
    pub failure_rate: f64,
    /// How long the slow test card takes to answer (`PSP_SLOW_DELAY_MS`); longer than the
    /// callers' timeout.
    pub slow_delay: Duration,
    pub zipkin_endpoint: Option<String>,
    pub request_timeout: Duration,
}

/// The API key of the local profile; payment-service uses the same default.
pub const DEFAULT_API_KEY: &str = "sk_test_ferroshop";

impl Config {
    /// Reads conventional variables (see the README).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let millis = |name: &str, default: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_millis(match var(name) {
                Some(value) => value
                    .parse()
                    .with_context(|| format!("{name} must be milliseconds"))?,
                None => default,
            }))
        };
        let failure_rate = match var("PSP_FAILURE_RATE") {
            Some(value) => value
                .parse::<f64>()
                .context("PSP_FAILURE_RATE must be a number from 0 to 1")?,
            None => 0.0,
        };
        anyhow::ensure!(
            (0.0..=1.0).contains(&failure_rate),
            "PSP_FAILURE_RATE must be from 0 to 1"
        );
        let slow_delay = millis("PSP_SLOW_DELAY_MS", 5_000)?;
        Ok(Self {
            host: var("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: match var("PORT") {
                Some(port) => port.parse().context("PORT must be a port number")?,
                None => 8090,
            },
            api_key: SecretString::from(
                var("PSP_API_KEY").unwrap_or_else(|| DEFAULT_API_KEY.into()),
            ),
            latency: millis("PSP_LATENCY_MS", 0)?,
            failure_rate,
            slow_delay,
            zipkin_endpoint: Some(
                var("ZIPKIN_ENDPOINT")
                    .unwrap_or_else(|| "http://127.0.0.1:9411/api/v2/spans".into()),
            )
            .filter(|endpoint| endpoint != "off"),
            // Room for the slow card's delay.
            request_timeout: slow_delay + Duration::from_secs(30),
        })
    }
}
