//! Typed configuration, read once from the environment and validated at start.

use std::time::Duration;

use auth::VerifierConfig;
use messaging::KafkaConfig;
use secrecy::SecretString;
use settings::Env;
use web::ServerConfig;

use crate::admission::AdmissionSettings;

#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (8083), `REQUEST_TIMEOUT_SECS` (10), `ZIPKIN_ENDPOINT`.
    pub server: ServerConfig,
    pub database_url: SecretString,
    pub kafka: KafkaConfig,
    /// Prepended to every topic name (isolates test runs sharing a broker).
    pub topic_prefix: String,
    /// user-service's JWKS and the claims required of access tokens.
    pub tokens: VerifierConfig,
    /// How long an order may wait for its reservation, and then for its payment, before the
    /// expiry job cancels it (`ORDER_PAYMENT_TIMEOUT_SECS`, default 15 minutes).
    pub payment_timeout: Duration,
    /// How long a new order may wait for its reservation (`ORDER_RESERVATION_TIMEOUT_SECS`,
    /// default: the payment timeout).
    pub reservation_timeout: Duration,
    /// How often the expiry job looks for expired orders (`ORDER_EXPIRY_INTERVAL_MS`).
    pub expiry_interval: Duration,
    /// Consumers of the saga's topics (`inventory.events`, `payment.events`) in this process
    /// (`SAGA_CONSUMERS`, 1 to 16, default 3), sharing their partitions: with one, the
    /// settlement step (payment.succeeded -> `PAID`) waited seconds behind a backlog once the
    /// checkout ran at the machine's capacity.
    pub saga_consumers: usize,
    /// Records each saga consumer handles at once (`SAGA_IN_FLIGHT`, 1 to 64, default 8),
    /// never two of one order at once: the transactions of different orders overlap and share
    /// PostgreSQL's commits instead of queueing one behind another in their partition.
    pub saga_in_flight: usize,
    /// Saga steps committed in one transaction at most (`SAGA_BATCH_MAX`, 1 to 256, default
    /// 32): the records the saga consumers handle at once share a commit
    /// (`events::saga::SagaCommits`); 1 gives each record a transaction of its own.
    pub saga_batch_max: usize,
    /// Whether this process runs the outbox relay (tests switch it off to play crashes).
    pub run_outbox_relay: bool,
    /// The workflow engine (`WORKFLOW_ENGINE_URL`, without `/engine-rest`).
    pub workflow_engine_url: String,
    /// Isolates this deployment's processes on a shared engine (`WORKFLOW_NAMESPACE`, default:
    /// the topic prefix, or `ferroshop` without one).
    pub workflow_namespace: String,
    /// How many days after the payment a refund may be requested (`ORDER_REFUND_WINDOW_DAYS`,
    /// default 14).
    pub refund_window_days: u32,
    /// How long a refund request may wait for an admin before it is rejected
    /// (`ORDER_REFUND_APPROVAL_TIMEOUT`, an ISO 8601 duration such as `P3D` or `PT1S`; default
    /// `P3D`). The engine's timer reads it; it is checked here so that a typo fails the start.
    pub refund_approval_timeout: String,
    /// How long a refund request waits for an admin before the admins get a reminder mail
    /// (`ORDER_REFUND_APPROVAL_REMINDER`, ISO 8601, default `P2D`). Counted, like the timeout,
    /// from the moment the request reached the admins, so the rejection follows the reminder
    /// after the difference of the two; a reminder that would not come first is refused at
    /// start.
    pub refund_approval_reminder: String,
    /// How many unpaid orders (`PENDING`, `AWAITING_PAYMENT`) one customer may hold
    /// (`ORDER_MAX_OPEN_PER_USER`, default 5; 0 switches the limit off).
    pub max_open_orders_per_user: u32,
    /// From this order total (minor units) every order is reviewed; the risk table's other
    /// rules apply from shares of it (`ORDER_REVIEW_AMOUNT`, default 1,000,000: 10,000.00 in a
    /// two-decimal currency, high enough that ordinary orders, tests and the bench never wait).
    pub review_amount: i64,
    /// How long the risk check waits for the engine when the table is not evaluated in-process
    /// (`ORDER_RISK_CHECK_TIMEOUT_MS`, default 1000).
    pub risk_check_timeout: Duration,
    /// How often the deployed risk table is fetched from the engine
    /// (`ORDER_RISK_TABLE_REFRESH_MS`, default 10000): a new deployment of `order-risk.dmn`
    /// decides new orders at most this long after it.
    pub risk_table_refresh: Duration,
    /// How long a held order waits for an admin before it is rejected (`ORDER_REVIEW_TIMEOUT`,
    /// ISO 8601, default `P2D`).
    pub review_timeout: String,
    /// How often held orders without a review process are looked for
    /// (`ORDER_REVIEW_START_INTERVAL_MS`, default 500).
    pub review_start_interval: Duration,
    /// When new orders are refused because the saga is behind (`ORDER_ADMISSION_*`).
    pub admission: crate::admission::AdmissionSettings,
    /// The consumer groups of `order.events` whose backlog admission control watches, logical
    /// names before the topic prefix (`ORDER_ADMISSION_WATCH_GROUPS`, comma-separated; default
    /// `payment-service.orders,product-service.inventory`; `off` for none).
    pub admission_watch_groups: Vec<String>,
}

impl Config {
    /// Reads conventional variables (see the service README).
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place this service reads its environment"
    )]
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(&Env::process())
    }

    /// The configuration `env` describes, validated.
    pub fn read(env: &Env) -> anyhow::Result<Self> {
        let payment_timeout = env.positive_seconds("ORDER_PAYMENT_TIMEOUT_SECS", 15 * 60)?;
        let topic_prefix = env.string_or("KAFKA_TOPIC_PREFIX", "");
        let review_amount: i64 = env.number("ORDER_REVIEW_AMOUNT", 1_000_000)?;
        anyhow::ensure!(review_amount > 0, "ORDER_REVIEW_AMOUNT must be at least 1");
        let refund_approval_timeout = iso_duration(env, "ORDER_REFUND_APPROVAL_TIMEOUT", "P3D")?;
        let refund_approval_reminder = iso_duration(env, "ORDER_REFUND_APPROVAL_REMINDER", "P2D")?;
        anyhow::ensure!(
            reminder_comes_first(&refund_approval_reminder, &refund_approval_timeout),
            "ORDER_REFUND_APPROVAL_REMINDER ({refund_approval_reminder}) must be shorter than \
             ORDER_REFUND_APPROVAL_TIMEOUT ({refund_approval_timeout}): the admins are reminded \
             before the request is rejected"
        );
        Ok(Self {
            server: ServerConfig::from_env(env, 8083, 10)?,
            database_url: env
                .secret_or("DATABASE_URL", "postgres://shop:shop@127.0.0.1:5432/orders"),
            kafka: KafkaConfig::from_env(env)?,
            tokens: VerifierConfig::from_env(env),
            payment_timeout,
            reservation_timeout: env
                .positive_seconds("ORDER_RESERVATION_TIMEOUT_SECS", payment_timeout.as_secs())?,
            expiry_interval: env.positive_millis("ORDER_EXPIRY_INTERVAL_MS", 5_000)?,
            saga_consumers: env.number_in("SAGA_CONSUMERS", 3, 1..=16)?,
            saga_in_flight: env.number_in("SAGA_IN_FLIGHT", 8, 1..=64)?,
            saga_batch_max: env.number_in("SAGA_BATCH_MAX", 32, 1..=256)?,
            run_outbox_relay: true,
            workflow_engine_url: env.string_or("WORKFLOW_ENGINE_URL", "http://127.0.0.1:8086"),
            workflow_namespace: env
                .get("WORKFLOW_NAMESPACE")
                .unwrap_or_else(|| workflow::default_namespace(&topic_prefix)),
            topic_prefix,
            refund_window_days: env.number("ORDER_REFUND_WINDOW_DAYS", 14)?,
            refund_approval_timeout,
            refund_approval_reminder,
            max_open_orders_per_user: env.number(
                "ORDER_MAX_OPEN_PER_USER",
                crate::domain::open_orders::DEFAULT_MAX_OPEN,
            )?,
            review_amount,
            risk_check_timeout: env.positive_millis("ORDER_RISK_CHECK_TIMEOUT_MS", 1_000)?,
            risk_table_refresh: env.positive_millis("ORDER_RISK_TABLE_REFRESH_MS", 10_000)?,
            review_timeout: iso_duration(env, "ORDER_REVIEW_TIMEOUT", "P2D")?,
            review_start_interval: env.positive_millis("ORDER_REVIEW_START_INTERVAL_MS", 500)?,
            admission: AdmissionSettings {
                max_wait: env.positive_millis(
                    "ORDER_ADMISSION_MAX_WAIT_MS",
                    AdmissionSettings::DEFAULT_MAX_WAIT.as_millis() as u64,
                )?,
                max_late: env.number(
                    "ORDER_ADMISSION_MAX_LATE",
                    AdmissionSettings::DEFAULT_MAX_LATE,
                )?,
                check_interval: env.positive_millis(
                    "ORDER_ADMISSION_CHECK_INTERVAL_MS",
                    AdmissionSettings::DEFAULT_CHECK_INTERVAL.as_millis() as u64,
                )?,
                max_backlog: env.positive_millis(
                    "ORDER_ADMISSION_MAX_BACKLOG_MS",
                    AdmissionSettings::DEFAULT_MAX_BACKLOG.as_millis() as u64,
                )?,
            },
            admission_watch_groups: match env.list("ORDER_ADMISSION_WATCH_GROUPS") {
                Some(groups) if groups == ["off"] => Vec::new(),
                Some(groups) => groups,
                None => AdmissionSettings::DEFAULT_WATCH_GROUPS
                    .iter()
                    .map(|group| (*group).to_owned())
                    .collect(),
            },
        })
    }
}

/// An ISO 8601 duration the engine's timers read (`P3D`, `PT12H`); checked here so that a
/// typo fails the start rather than the first timer.
fn iso_duration(env: &Env, name: &str, default: &str) -> anyhow::Result<String> {
    let value = env.string_or(name, default);
    anyhow::ensure!(
        is_iso_duration(&value),
        "{name} must be an ISO 8601 duration such as P3D or PT12H, not {value:?}"
    );
    Ok(value)
}

/// A plain ISO 8601 duration: `P`, then number-unit pairs (`Y M W D`, and after `T`: `H M S`).
fn is_iso_duration(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let pairs = |part: &str, units: &str| -> bool {
        let mut digits = 0;
        for c in part.chars() {
            if c.is_ascii_digit() {
                digits += 1;
            } else if units.contains(c) && digits > 0 {
                digits = 0;
            } else {
                return false;
            }
        }
        digits == 0
    };
    let has_amount = |part: &str| part.chars().any(|c| c.is_ascii_digit());
    pairs(date, "YMWD")
        && time.is_none_or(|t| pairs(t, "HMS") && has_amount(t))
        && (has_amount(date) || time.is_some())
}

/// The length of a duration made of weeks, days, hours, minutes and seconds; `None` for one
/// with years or months, whose length depends on the date it starts from.
fn fixed_seconds(duration: &str) -> Option<u64> {
    let rest = duration.strip_prefix('P')?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total: u64 = 0;
    for (part, units) in [
        (date, [('W', 604_800), ('D', 86_400), ('Y', 0), ('M', 0)]),
        (time, [('H', 3_600), ('M', 60), ('S', 1), ('\0', 0)]),
    ] {
        let mut amount: u64 = 0;
        for c in part.chars() {
            if let Some(digit) = c.to_digit(10) {
                amount = amount.checked_mul(10)?.checked_add(u64::from(digit))?;
                continue;
            }
            let (_, seconds) = units.iter().find(|(unit, _)| *unit == c)?;
            if *seconds == 0 {
                return None;
            }
            total = total.checked_add(amount.checked_mul(*seconds)?)?;
            amount = 0;
        }
    }
    Some(total)
}

/// Whether the reminder fires before the timeout. Durations with years or months cannot be
/// compared without a start date; they are taken as given.
fn reminder_comes_first(reminder: &str, timeout: &str) -> bool {
    match (fixed_seconds(reminder), fixed_seconds(timeout)) {
        (Some(reminder), Some(timeout)) => reminder < timeout,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::{fixed_seconds, is_iso_duration, reminder_comes_first};

    #[test]
    fn fixed_durations_have_a_length_and_calendar_ones_none() {
        assert_eq!(fixed_seconds("PT1S"), Some(1));
        assert_eq!(fixed_seconds("P2D"), Some(172_800));
        assert_eq!(
            fixed_seconds("P1W2DT3H4M5S"),
            Some(604_800 + 172_800 + 10_800 + 245)
        );
        assert_eq!(fixed_seconds("PT90M"), Some(5_400));
        assert_eq!(fixed_seconds("P1M"), None);
        assert_eq!(fixed_seconds("P1Y"), None);
    }

    #[test]
    fn the_reminder_must_come_before_the_rejection() {
        assert!(reminder_comes_first("P2D", "P3D"));
        assert!(reminder_comes_first("PT2S", "PT6S"));
        assert!(!reminder_comes_first("P3D", "P3D"));
        assert!(!reminder_comes_first("PT1H", "PT30M"));
        // A month's length depends on when it starts: not compared.
        assert!(reminder_comes_first("P20D", "P1M"));
    }

    #[test]
    fn approval_timeouts_are_iso_durations() {
        for good in ["P3D", "PT1S", "P1DT12H", "PT90M", "P2W"] {
            assert!(is_iso_duration(good), "{good}");
        }
        for bad in ["", "P", "PT", "3D", "P3", "PT1X", "P1H", "PDT1S"] {
            assert!(!is_iso_duration(bad), "{bad}");
        }
    }

    #[test]
    fn defaults_are_the_local_stack() -> anyhow::Result<()> {
        let config = super::Config::read(&super::Env::from_pairs([]))?;
        assert_eq!(config.server.port, 8083);
        assert_eq!(config.payment_timeout, std::time::Duration::from_secs(900));
        assert_eq!(config.reservation_timeout, config.payment_timeout);
        assert_eq!(config.workflow_namespace, workflow::default_namespace(""));
        assert_eq!(config.review_timeout, "P2D");
        assert_eq!(config.saga_consumers, 3);
        assert_eq!(config.saga_in_flight, 8);
        assert_eq!(config.saga_batch_max, 32);
        Ok(())
    }

    #[test]
    fn a_refused_value_names_its_variable() {
        let refusal = |name: &'static str, value: &'static str| {
            super::Config::read(&super::Env::from_pairs([(name, value)]))
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        for (name, value) in [
            ("ORDER_EXPIRY_INTERVAL_MS", "0"),
            ("ORDER_EXPIRY_INTERVAL_MS", "5s"),
            ("ORDER_REVIEW_TIMEOUT", "2 days"),
            ("ORDER_REVIEW_AMOUNT", "0"),
            ("ORDER_REFUND_WINDOW_DAYS", "-1"),
        ] {
            let message = refusal(name, value);
            assert!(message.starts_with(name), "{name}={value}: {message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
