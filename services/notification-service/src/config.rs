//! Typed configuration, read once from the environment and validated at start.

use std::time::Duration;

use anyhow::bail;
use auth::VerifierConfig;
use messaging::KafkaConfig;
use secrecy::SecretString;
use settings::Env;
use web::ServerConfig;

/// The SMS gateway token of the local simulator (sms-sim's default).
pub const LOCAL_SMS_TOKEN: &str = "sms-sim-local-token";

#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (8085), `REQUEST_TIMEOUT_SECS` (10), `ZIPKIN_ENDPOINT`.
    pub server: ServerConfig,
    pub database_url: SecretString,
    pub kafka: KafkaConfig,
    /// Prepended to every topic and consumer group (isolates test runs sharing a broker).
    pub topic_prefix: String,
    /// user-service's JWKS (`JWKS_URL`, default `$USER_SERVICE_URL/.well-known/jwks.json`) and
    /// the claims required of access tokens.
    pub tokens: VerifierConfig,
    pub smtp: SmtpConfig,
    pub sms: SmsConfig,
    pub delivery: DeliveryConfig,
    /// Kafka consumers per group in this process. Each handles one record at a time, so more
    /// of them (up to the partition count, 3) handle more partitions side by side.
    pub consumers_per_group: usize,
    /// Whether this process consumes events (tests switch it off to play a late start).
    pub run_consumers: bool,
    /// Whether this process sends (tests switch it off to inspect the queue).
    pub run_senders: bool,
    /// The workflow engine whose `notify-approval-reminder` tasks this service works
    /// (`WORKFLOW_ENGINE_URL`); `WORKFLOW_WORKER=off` disables the worker.
    pub workflow_engine_url: String,
    /// Isolates this deployment's processes on a shared engine (`WORKFLOW_NAMESPACE`, default:
    /// the topic prefix, or `ferroshop`).
    pub workflow_namespace: String,
    pub run_workflow_worker: bool,
    /// Addresses that receive the admins' reminders beside every admin account's contact
    /// (`NOTIFICATION_ADMIN_EMAILS`, comma-separated, optional): a team mailbox, or the
    /// fallback while the contacts predate roles (see `domain::reminder`).
    pub admin_emails: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The `From` of every mail.
    pub from: String,
    /// Connect, command and data timeout: a slow server fails the attempt instead of holding
    /// a sender forever.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct SmsConfig {
    /// The gateway's base URL; `/v1/messages` is appended.
    pub base_url: String,
    pub api_token: SecretString,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Messages in flight at once (the sender pool's size).
    pub concurrency: usize,
    /// Attempts per message before it is marked failed and dead-lettered.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt, with jitter, up to 30 s.
    pub retry_base: Duration,
    /// How long a claimed message belongs to its sender. A sender that dies (crash, kill)
    /// leaves the message claimed; after the lease another one takes it over. Must exceed
    /// the longest send (the SMTP/SMS timeouts).
    pub lease: Duration,
    /// Unsent messages above which the consumers pause (back-pressure).
    pub max_queue: i64,
    /// How often idle senders look for work when no wake-up came.
    pub poll_interval: Duration,
}

impl Config {
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place this service reads its environment"
    )]
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(&Env::process())
    }

    /// The configuration `env` describes, validated.
    pub fn read(env: &Env) -> anyhow::Result<Self> {
        let users = env.string_or("USER_SERVICE_URL", "http://127.0.0.1:8081");
        let topic_prefix = env.string_or("KAFKA_TOPIC_PREFIX", "");
        let config = Self {
            server: ServerConfig::from_env(env, 8085, 10)?,
            database_url: env.secret_or(
                "DATABASE_URL",
                "postgres://shop:shop@127.0.0.1:5432/notifications",
            ),
            kafka: KafkaConfig::from_env(env)?,
            workflow_engine_url: env.string_or("WORKFLOW_ENGINE_URL", "http://127.0.0.1:8086"),
            workflow_namespace: env
                .get("WORKFLOW_NAMESPACE")
                .unwrap_or_else(|| workflow::default_namespace(&topic_prefix)),
            run_workflow_worker: env.switch("WORKFLOW_WORKER", true)?,
            admin_emails: env.list("NOTIFICATION_ADMIN_EMAILS").unwrap_or_default(),
            topic_prefix,
            tokens: VerifierConfig::with_default_jwks(
                env,
                format!("{users}/.well-known/jwks.json"),
            ),
            smtp: SmtpConfig {
                host: env.string_or("SMTP_HOST", "127.0.0.1"),
                port: env.port("SMTP_PORT", 1025)?,
                username: env.get("SMTP_USERNAME"),
                password: env.secret("SMTP_PASSWORD"),
                from: env.string_or("MAIL_FROM", "ferroshop <no-reply@ferroshop.local>"),
                timeout: env.seconds("SMTP_TIMEOUT_SECS", 10)?,
            },
            sms: SmsConfig {
                base_url: env
                    .get("SMS_SIM_URL")
                    .or_else(|| env.get("SMS_API_URL"))
                    .unwrap_or_else(|| "http://127.0.0.1:8091".into()),
                api_token: env.secret_or("SMS_API_TOKEN", LOCAL_SMS_TOKEN),
                timeout: env.seconds("SMS_TIMEOUT_SECS", 5)?,
            },
            delivery: DeliveryConfig {
                concurrency: env.number("NOTIFICATION_CONCURRENCY", 16)?,
                max_attempts: env.number("NOTIFICATION_MAX_ATTEMPTS", 8)?,
                retry_base: env.millis("NOTIFICATION_RETRY_BASE_MS", 1000)?,
                lease: env.seconds("NOTIFICATION_LEASE_SECS", 60)?,
                max_queue: env.number("NOTIFICATION_MAX_QUEUE", 10_000)?,
                poll_interval: Duration::from_secs(1),
            },
            consumers_per_group: env.number("NOTIFICATION_CONSUMERS", 3)?,
            run_consumers: true,
            run_senders: true,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(address) = self
            .admin_emails
            .iter()
            .find(|address| !address.contains('@') || address.contains(char::is_whitespace))
        {
            bail!("NOTIFICATION_ADMIN_EMAILS holds {address:?}, which is not an e-mail address");
        }
        let delivery = &self.delivery;
        if delivery.concurrency == 0 || delivery.concurrency > 1024 {
            bail!("NOTIFICATION_CONCURRENCY must be between 1 and 1024");
        }
        if self.consumers_per_group == 0 || self.consumers_per_group > 64 {
            bail!("NOTIFICATION_CONSUMERS must be between 1 and 64");
        }
        if delivery.max_attempts < 1 {
            bail!("NOTIFICATION_MAX_ATTEMPTS must be at least 1");
        }
        if delivery.lease <= self.smtp.timeout.max(self.sms.timeout) {
            bail!("NOTIFICATION_LEASE_SECS must exceed the SMTP and SMS timeouts");
        }
        if delivery.max_queue < 1 {
            bail!("NOTIFICATION_MAX_QUEUE must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_set_follows_user_service_unless_given() -> anyhow::Result<()> {
        let config = Config::read(&Env::from_pairs([(
            "USER_SERVICE_URL",
            "http://users:8081",
        )]))?;
        assert_eq!(config.server.port, 8085);
        assert_eq!(config.smtp.port, 1025);
        assert_eq!(
            config.tokens.jwks_url,
            "http://users:8081/.well-known/jwks.json"
        );
        let given = Config::read(&Env::from_pairs([
            ("USER_SERVICE_URL", "http://users:8081"),
            ("JWKS_URL", "http://keys/jwks.json"),
        ]))?;
        assert_eq!(given.tokens.jwks_url, "http://keys/jwks.json");
        Ok(())
    }

    #[test]
    fn a_refused_value_names_its_variable() {
        for (name, value) in [
            ("SMTP_PORT", "smtp"),
            ("NOTIFICATION_CONCURRENCY", "0"),
            ("NOTIFICATION_LEASE_SECS", "1"),
        ] {
            let message = Config::read(&Env::from_pairs([(name, value)]))
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(message.starts_with(name), "{name}={value}: {message}");
        }
    }
}
