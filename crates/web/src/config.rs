//! What every service process reads the same way to serve: where it listens, how long a
//! request may take, and where its spans go (`HOST`, `PORT`, `REQUEST_TIMEOUT_SECS`,
//! `ZIPKIN_ENDPOINT`). Each service's `Config` holds one [`ServerConfig`]; only the default
//! port and request timeout differ between services.

use std::time::Duration;

use settings::Env;

/// The listener, the request deadline and the span exporter of one service process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `HOST` (default `127.0.0.1`).
    pub host: String,
    /// `PORT`; 0 picks a free port (tests).
    pub port: u16,
    /// The longest a request may take before it is answered 503 (`REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
    /// Zipkin's span collector (`ZIPKIN_ENDPOINT`, `off` disables export).
    pub zipkin_endpoint: Option<String>,
}

impl ServerConfig {
    /// `HOST`, `PORT`, `REQUEST_TIMEOUT_SECS` and `ZIPKIN_ENDPOINT`, with this service's
    /// default port and request timeout (whole seconds).
    pub fn from_env(
        env: &Env,
        default_port: u16,
        default_timeout_secs: u64,
    ) -> anyhow::Result<Self> {
        let request_timeout = env.seconds("REQUEST_TIMEOUT_SECS", default_timeout_secs)?;
        Self::with_request_timeout(env, default_port, request_timeout)
    }

    /// As [`ServerConfig::from_env`] for a service whose request timeout follows from its other
    /// settings rather than from `REQUEST_TIMEOUT_SECS` (psp-sim: its slow card's delay).
    pub fn with_request_timeout(
        env: &Env,
        default_port: u16,
        request_timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            host: env.string_or("HOST", "127.0.0.1"),
            port: env.port("PORT", default_port)?,
            request_timeout,
            zipkin_endpoint: env.unless_off("ZIPKIN_ENDPOINT", telemetry::DEFAULT_ZIPKIN_ENDPOINT),
        })
    }

    /// A test's server: `127.0.0.1`, a free port, no span export.
    pub fn for_tests(request_timeout: Duration) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            request_timeout,
            zipkin_endpoint: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_local_stack() -> anyhow::Result<()> {
        let server = ServerConfig::from_env(&Env::from_pairs([]), 8083, 10)?;
        assert_eq!(
            server,
            ServerConfig {
                host: "127.0.0.1".into(),
                port: 8083,
                request_timeout: Duration::from_secs(10),
                zipkin_endpoint: Some(telemetry::DEFAULT_ZIPKIN_ENDPOINT.into()),
            }
        );
        Ok(())
    }

    #[test]
    fn the_environment_overrides_and_off_disables_spans() -> anyhow::Result<()> {
        let env = Env::from_pairs([
            ("HOST", "0.0.0.0"),
            ("PORT", "9000"),
            ("REQUEST_TIMEOUT_SECS", "3"),
            ("ZIPKIN_ENDPOINT", "off"),
        ]);
        let server = ServerConfig::from_env(&env, 8083, 10)?;
        assert_eq!(server.host, "0.0.0.0");
        assert_eq!(server.port, 9000);
        assert_eq!(server.request_timeout, Duration::from_secs(3));
        assert_eq!(server.zipkin_endpoint, None);
        let fixed = ServerConfig::with_request_timeout(&env, 8090, Duration::from_secs(35))?;
        assert_eq!(fixed.request_timeout, Duration::from_secs(35));
        Ok(())
    }

    #[test]
    fn an_invalid_port_or_timeout_names_its_variable() {
        let port = ServerConfig::from_env(&Env::from_pairs([("PORT", "80800")]), 1, 10);
        let message = port.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(
            message.starts_with("PORT must be a port number"),
            "{message}"
        );
        let timeout =
            ServerConfig::from_env(&Env::from_pairs([("REQUEST_TIMEOUT_SECS", "ten")]), 1, 10);
        let message = timeout.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(
            message.starts_with("REQUEST_TIMEOUT_SECS must be seconds"),
            "{message}"
        );
    }
}
