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
    pub database_url: SecretString,
    pub kafka_brokers: String,
    /// Prepended to every topic name (isolates test runs sharing a broker).
    pub topic_prefix: String,
    pub zipkin_endpoint: Option<String>,
    /// user-service's JWKS, for verifying access tokens.
    pub jwks_url: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// How long an order may wait for its reservation, and then for its payment, before the
    /// expiry job cancels it (`ORDER_PAYMENT_TIMEOUT_SECS`, default 15 minutes).
    pub payment_timeout: Duration,
    /// How long a new order may wait for its reservation (`ORDER_RESERVATION_TIMEOUT_SECS`,
    /// default: the payment timeout).
    pub reservation_timeout: Duration,
    /// How often the expiry job looks for expired orders (`ORDER_EXPIRY_INTERVAL_MS`).
    pub expiry_interval: Duration,
    /// Whether this process runs the outbox relay (tests switch it off to play crashes).
    pub run_outbox_relay: bool,
    pub request_timeout: Duration,
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
    /// How long the risk check waits for the engine (`ORDER_RISK_CHECK_TIMEOUT_MS`, default
    /// 1000).
    pub risk_check_timeout: Duration,
    /// How long a held order waits for an admin before it is rejected (`ORDER_REVIEW_TIMEOUT`,
    /// ISO 8601, default `P2D`).
    pub review_timeout: String,
    /// How often held orders without a review process are looked for
    /// (`ORDER_REVIEW_START_INTERVAL_MS`, default 500).
    pub review_start_interval: Duration,
}

impl Config {
    /// Reads conventional variables (see the service README).
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
        let payment_timeout = Duration::from_secs(number("ORDER_PAYMENT_TIMEOUT_SECS", 15 * 60)?);
        anyhow::ensure!(
            !payment_timeout.is_zero(),
            "ORDER_PAYMENT_TIMEOUT_SECS must be at least 1"
        );
        let reservation_timeout = Duration::from_secs(number(
            "ORDER_RESERVATION_TIMEOUT_SECS",
            payment_timeout.as_secs(),
        )?);
        anyhow::ensure!(
            !reservation_timeout.is_zero(),
            "ORDER_RESERVATION_TIMEOUT_SECS must be at least 1"
        );
        let expiry_interval = Duration::from_millis(number("ORDER_EXPIRY_INTERVAL_MS", 5_000)?);
        anyhow::ensure!(
            !expiry_interval.is_zero(),
            "ORDER_EXPIRY_INTERVAL_MS must be at least 1"
        );
        let topic_prefix = var("KAFKA_TOPIC_PREFIX").unwrap_or_default();
        let refund_window_days = u32::try_from(number("ORDER_REFUND_WINDOW_DAYS", 14)?)
            .context("ORDER_REFUND_WINDOW_DAYS is too large")?;
        let refund_approval_timeout =
            var("ORDER_REFUND_APPROVAL_TIMEOUT").unwrap_or_else(|| "P3D".into());
        anyhow::ensure!(
            is_iso_duration(&refund_approval_timeout),
            "ORDER_REFUND_APPROVAL_TIMEOUT must be an ISO 8601 duration such as P3D or PT12H"
        );
        let refund_approval_reminder =
            var("ORDER_REFUND_APPROVAL_REMINDER").unwrap_or_else(|| "P2D".into());
        anyhow::ensure!(
            is_iso_duration(&refund_approval_reminder),
            "ORDER_REFUND_APPROVAL_REMINDER must be an ISO 8601 duration such as P2D or PT12H"
        );
        anyhow::ensure!(
            reminder_comes_first(&refund_approval_reminder, &refund_approval_timeout),
            "ORDER_REFUND_APPROVAL_REMINDER ({refund_approval_reminder}) must be shorter than \
             ORDER_REFUND_APPROVAL_TIMEOUT ({refund_approval_timeout}): the admins are reminded \
             before the request is rejected"
        );
        let max_open_orders_per_user = u32::try_from(number(
            "ORDER_MAX_OPEN_PER_USER",
            u64::from(crate::domain::open_orders::DEFAULT_MAX_OPEN),
        )?)
        .context("ORDER_MAX_OPEN_PER_USER is too large")?;
        let review_amount = i64::try_from(number("ORDER_REVIEW_AMOUNT", 1_000_000)?)
            .context("ORDER_REVIEW_AMOUNT is too large")?;
        anyhow::ensure!(review_amount > 0, "ORDER_REVIEW_AMOUNT must be at least 1");
        let risk_check_timeout =
            Duration::from_millis(number("ORDER_RISK_CHECK_TIMEOUT_MS", 1_000)?);
        anyhow::ensure!(
            !risk_check_timeout.is_zero(),
            "ORDER_RISK_CHECK_TIMEOUT_MS must be at least 1"
        );
        let review_timeout = var("ORDER_REVIEW_TIMEOUT").unwrap_or_else(|| "P2D".into());
        anyhow::ensure!(
            is_iso_duration(&review_timeout),
            "ORDER_REVIEW_TIMEOUT must be an ISO 8601 duration such as P2D or PT12H"
        );
        let review_start_interval =
            Duration::from_millis(number("ORDER_REVIEW_START_INTERVAL_MS", 500)?);
        anyhow::ensure!(
            !review_start_interval.is_zero(),
            "ORDER_REVIEW_START_INTERVAL_MS must be at least 1"
        );
        Ok(Self {
            max_open_orders_per_user,
            review_amount,
            risk_check_timeout,
            review_timeout,
            review_start_interval,
            refund_approval_timeout,
            refund_approval_reminder,
            workflow_engine_url: var("WORKFLOW_ENGINE_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8086".into()),
            workflow_namespace: var("WORKFLOW_NAMESPACE")
                .unwrap_or_else(|| workflow::default_namespace(&topic_prefix)),
            refund_window_days,
            host: var("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: match var("PORT") {
                Some(port) => port.parse().context("PORT must be a port number")?,
                None => 8083,
            },
            database_url: SecretString::from(
                var("DATABASE_URL")
                    .unwrap_or_else(|| "postgres://shop:shop@127.0.0.1:5432/orders".into()),
            ),
            kafka_brokers: var("KAFKA_BROKERS").unwrap_or_else(|| "127.0.0.1:9092".into()),
            topic_prefix,
            zipkin_endpoint: Some(
                var("ZIPKIN_ENDPOINT")
                    .unwrap_or_else(|| "http://127.0.0.1:9411/api/v2/spans".into()),
            )
            .filter(|endpoint| endpoint != "off"),
            jwks_url: var("JWKS_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8081/.well-known/jwks.json".into()),
            jwt_issuer: var("JWT_ISSUER").unwrap_or_else(|| "ferroshop-users".into()),
            jwt_audience: var("JWT_AUDIENCE").unwrap_or_else(|| "ferroshop".into()),
            payment_timeout,
            reservation_timeout,
            expiry_interval,
            run_outbox_relay: true,
            request_timeout: Duration::from_secs(number("REQUEST_TIMEOUT_SECS", 10)?),
        })
    }
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
}
