//! Typed configuration, read once from the environment and validated at start.

use std::time::Duration;

use secrecy::SecretString;
use settings::Env;
use web::ServerConfig;

#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (8090), `ZIPKIN_ENDPOINT`; the request timeout is the slow card's delay
    /// plus 30 s.
    pub server: ServerConfig,
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
}

/// The API key of the local profile; payment-service uses the same default.
pub const DEFAULT_API_KEY: &str = "sk_test_ferroshop";

impl Config {
    /// Reads conventional variables (see the README).
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place this service reads its environment"
    )]
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(&Env::process())
    }

    /// The configuration `env` describes, validated.
    pub fn read(env: &Env) -> anyhow::Result<Self> {
        let failure_rate = env.parsed("PSP_FAILURE_RATE", 0.0, "a number from 0 to 1")?;
        anyhow::ensure!(
            (0.0..=1.0).contains(&failure_rate),
            "PSP_FAILURE_RATE must be from 0 to 1"
        );
        let slow_delay = env.millis("PSP_SLOW_DELAY_MS", 5_000)?;
        Ok(Self {
            // Room for the slow card's delay.
            server: ServerConfig::with_request_timeout(
                env,
                8090,
                slow_delay + Duration::from_secs(30),
            )?,
            api_key: env.secret_or("PSP_API_KEY", DEFAULT_API_KEY),
            latency: env.millis("PSP_LATENCY_MS", 0)?,
            failure_rate,
            slow_delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_timeout_leaves_room_for_the_slow_card() -> anyhow::Result<()> {
        let config = Config::read(&Env::from_pairs([("PSP_SLOW_DELAY_MS", "400")]))?;
        assert_eq!(config.server.port, 8090);
        assert_eq!(config.server.request_timeout, Duration::from_millis(30_400));
        Ok(())
    }

    #[test]
    fn a_failure_rate_outside_zero_to_one_is_refused() {
        for value in ["2", "half"] {
            let message = Config::read(&Env::from_pairs([("PSP_FAILURE_RATE", value)]))
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(
                message.starts_with("PSP_FAILURE_RATE"),
                "{value}: {message}"
            );
        }
    }
}
