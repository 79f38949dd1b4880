//! Typed configuration, read once from the environment and validated at start.

#![allow(
    clippy::disallowed_methods,
    reason = "the one module of this service that reads its environment"
)]

use std::time::Duration;

use anyhow::{Context as _, bail};
use secrecy::SecretString;

/// The SMS gateway token of the local simulator (sms-sim's default).
pub const LOCAL_SMS_TOKEN: &str = "sms-sim-local-token";

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub database_url: SecretString,
    pub kafka_brokers: String,
    /// Prepended to every topic and consumer group (isolates test runs sharing a broker).
    pub topic_prefix: String,
    pub zipkin_endpoint: Option<String>,
    pub jwks_url: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub request_timeout: Duration,
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
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            match var(name) {
                Some(value) => value
                    .parse()
                    .with_context(|| format!("{name} must be a whole number")),
                None => Ok(default),
            }
        };
        let switch = |name: &str| -> anyhow::Result<bool> {
            match var(name).as_deref() {
                None | Some("on") => Ok(true),
                Some("off") => Ok(false),
                Some(_) => bail!("{name} must be on or off"),
            }
        };
        let topic_prefix = var("KAFKA_TOPIC_PREFIX").unwrap_or_default();
        let config = Self {
            host: var("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: number("PORT", 8085)?
                .try_into()
                .context("PORT must be a port number")?,
            database_url: SecretString::from(
                var("DATABASE_URL")
                    .unwrap_or_else(|| "postgres://shop:shop@127.0.0.1:5432/notifications".into()),
            ),
            kafka_brokers: var("KAFKA_BROKERS").unwrap_or_else(|| "127.0.0.1:9092".into()),
            workflow_engine_url: var("WORKFLOW_ENGINE_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8086".into()),
            workflow_namespace: var("WORKFLOW_NAMESPACE")
                .unwrap_or_else(|| workflow::default_namespace(&topic_prefix)),
            run_workflow_worker: switch("WORKFLOW_WORKER")?,
            admin_emails: var("NOTIFICATION_ADMIN_EMAILS")
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|address| !address.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            topic_prefix,
            zipkin_endpoint: Some(
                var("ZIPKIN_ENDPOINT")
                    .unwrap_or_else(|| "http://127.0.0.1:9411/api/v2/spans".into()),
            )
            .filter(|endpoint| endpoint != "off"),
            jwks_url: var("JWKS_URL").unwrap_or_else(|| {
                let users =
                    var("USER_SERVICE_URL").unwrap_or_else(|| "http://127.0.0.1:8081".into());
                format!("{users}/.well-known/jwks.json")
            }),
            jwt_issuer: var("JWT_ISSUER").unwrap_or_else(|| "ferroshop-users".into()),
            jwt_audience: var("JWT_AUDIENCE").unwrap_or_else(|| "ferroshop".into()),
            request_timeout: Duration::from_secs(number("REQUEST_TIMEOUT_SECS", 10)?),
            smtp: SmtpConfig {
                host: var("SMTP_HOST").unwrap_or_else(|| "127.0.0.1".into()),
                port: number("SMTP_PORT", 1025)?
                    .try_into()
                    .context("SMTP_PORT must be a port number")?,
                username: var("SMTP_USERNAME"),
                password: var("SMTP_PASSWORD").map(SecretString::from),
                from: var("MAIL_FROM")
                    .unwrap_or_else(|| "ferroshop <no-reply@ferroshop.local>".into()),
                timeout: Duration::from_secs(number("SMTP_TIMEOUT_SECS", 10)?),
            },
            sms: SmsConfig {
                base_url: var("SMS_SIM_URL")
                    .or_else(|| var("SMS_API_URL"))
                    .unwrap_or_else(|| "http://127.0.0.1:8091".into()),
                api_token: SecretString::from(
                    var("SMS_API_TOKEN").unwrap_or_else(|| LOCAL_SMS_TOKEN.into()),
                ),
                timeout: Duration::from_secs(number("SMS_TIMEOUT_SECS", 5)?),
            },
            delivery: DeliveryConfig {
                concurrency: number("NOTIFICATION_CONCURRENCY", 16)? as usize,
                max_attempts: number("NOTIFICATION_MAX_ATTEMPTS", 8)?
                    .try_into()
                    .context("NOTIFICATION_MAX_ATTEMPTS is too large")?,
                retry_base: Duration::from_millis(number("NOTIFICATION_RETRY_BASE_MS", 1000)?),
                lease: Duration::from_secs(number("NOTIFICATION_LEASE_SECS", 60)?),
                max_queue: number("NOTIFICATION_MAX_QUEUE", 10_000)?
                    .try_into()
                    .context("NOTIFICATION_MAX_QUEUE is too large")?,
                poll_interval: Duration::from_secs(1),
            },
            consumers_per_group: number("NOTIFICATION_CONSUMERS", 3)? as usize,
            run_consumers: true,
            run_senders: true,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
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
        if let Some(address) = self
            .admin_emails
            .iter()
            .find(|address| !address.contains('@') || address.contains(char::is_whitespace))
        {
            bail!("NOTIFICATION_ADMIN_EMAILS holds {address:?}, which is not an e-mail address");
        }
        Ok(())
    }
}
