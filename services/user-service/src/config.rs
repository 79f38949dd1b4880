//! Typed configuration, read once from the environment and validated at start.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use secrecy::{ExposeSecret as _, SecretString};

/// The admin password used by the local profile; any other profile refuses to start with it.
pub const DEFAULT_ADMIN_PASSWORD: &str = "admin-dev-password";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A developer machine: generated keys and the default admin password are allowed.
    Local,
    /// Anything else: every secret must be provided.
    Production,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub profile: Profile,
    pub host: String,
    pub port: u16,
    pub database_url: SecretString,
    pub kafka_brokers: String,
    /// Prepended to every topic name (isolates test runs sharing a broker).
    pub topic_prefix: String,
    pub zipkin_endpoint: Option<String>,
    pub jwt_private_key_path: PathBuf,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub admin_email: Option<String>,
    pub admin_password: SecretString,
    /// Failed logins per e-mail before it is locked.
    pub login_max_failures: i32,
    /// First lock duration; it doubles with every further failure, up to an hour.
    pub login_lockout: Duration,
    /// Whether this process runs the outbox relay (tests switch it off to play crashes).
    pub run_outbox_relay: bool,
    pub request_timeout: Duration,
    /// Threads hashing passwords, each holding one 12 MiB Argon2 buffer.
    pub password_workers: usize,
}

impl Config {
    /// Reads `USER_SERVICE_*`-free, conventional variables (see README).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let profile = match var("APP_PROFILE").as_deref() {
            None | Some("local") => Profile::Local,
            Some("production") => Profile::Production,
            Some(other) => bail!("APP_PROFILE must be local or production, not {other:?}"),
        };
        let secs = |name: &str, default: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_secs(match var(name) {
                Some(value) => value
                    .parse()
                    .with_context(|| format!("{name} must be seconds"))?,
                None => default,
            }))
        };
        let config = Self {
            profile,
            host: var("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: match var("PORT") {
                Some(port) => port.parse().context("PORT must be a port number")?,
                None => 8081,
            },
            database_url: SecretString::from(
                var("DATABASE_URL")
                    .unwrap_or_else(|| "postgres://shop:shop@127.0.0.1:5432/users".into()),
            ),
            kafka_brokers: var("KAFKA_BROKERS").unwrap_or_else(|| "127.0.0.1:9092".into()),
            topic_prefix: var("KAFKA_TOPIC_PREFIX").unwrap_or_default(),
            zipkin_endpoint: Some(
                var("ZIPKIN_ENDPOINT")
                    .unwrap_or_else(|| "http://127.0.0.1:9411/api/v2/spans".into()),
            )
            .filter(|endpoint| endpoint != "off"),
            jwt_private_key_path: var("JWT_PRIVATE_KEY_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".local/secrets/jwt-ed25519.pem")),
            jwt_issuer: var("JWT_ISSUER").unwrap_or_else(|| "ferroshop-users".into()),
            jwt_audience: var("JWT_AUDIENCE").unwrap_or_else(|| "ferroshop".into()),
            access_token_ttl: secs("ACCESS_TOKEN_TTL_SECS", 900)?,
            refresh_token_ttl: secs("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
            admin_email: match var("ADMIN_EMAIL") {
                Some(email) => Some(email),
                None if profile == Profile::Local => Some("admin@example.com".into()),
                None => None,
            },
            admin_password: SecretString::from(
                var("ADMIN_PASSWORD").unwrap_or_else(|| DEFAULT_ADMIN_PASSWORD.into()),
            ),
            login_max_failures: match var("LOGIN_MAX_FAILURES") {
                Some(value) => value
                    .parse()
                    .context("LOGIN_MAX_FAILURES must be a number")?,
                None => 5,
            },
            login_lockout: secs("LOGIN_LOCKOUT_SECS", 30)?,
            run_outbox_relay: true,
            request_timeout: secs("REQUEST_TIMEOUT_SECS", 10)?,
            password_workers: match var("PASSWORD_HASH_WORKERS") {
                Some(value) => value
                    .parse()
                    .context("PASSWORD_HASH_WORKERS must be a number")?,
                None => std::thread::available_parallelism()
                    .map(usize::from)
                    .unwrap_or(2),
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// Refuses configurations that are unsafe outside a developer machine.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.profile == Profile::Production
            && self.admin_email.is_some()
            && self.admin_password.expose_secret() == DEFAULT_ADMIN_PASSWORD
        {
            bail!("ADMIN_PASSWORD is the local default; set a real one outside APP_PROFILE=local");
        }
        if self.login_max_failures < 1 {
            bail!("LOGIN_MAX_FAILURES must be at least 1");
        }
        Ok(())
    }
}
