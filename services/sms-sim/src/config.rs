//! Configuration from the environment: `HOST`, `PORT` (8091), `SMS_SIM_TOKEN`.

use settings::Env;

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
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place this service reads its environment"
    )]
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(&Env::process())
    }

    /// The configuration `env` describes.
    pub fn read(env: &Env) -> anyhow::Result<Self> {
        Ok(Self {
            host: env.string_or("HOST", "127.0.0.1"),
            port: env.port("PORT", 8091)?,
            api_token: env.string_or("SMS_SIM_TOKEN", DEFAULT_TOKEN),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_refused_port() -> anyhow::Result<()> {
        let config = Config::read(&Env::from_pairs([]))?;
        assert_eq!(
            (config.port, config.api_token.as_str()),
            (8091, DEFAULT_TOKEN)
        );
        assert!(Config::read(&Env::from_pairs([("PORT", "sms")])).is_err());
        Ok(())
    }
}
