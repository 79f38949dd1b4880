//! The risk check of a new order: one evaluation of the decision table `order-risk` on the
//! workflow engine, with the order's amount, the customer's account age (customers replica)
//! and orders in the last hour, and the shipping country.
//!
//! It runs in `POST /api/orders` before the order is stored, so its cost is on every order's
//! path: two indexed reads and one HTTP call to the engine, which evaluates the table in
//! memory (measured in docs/ARCHITECTURE.md). The call is bounded by
//! `ORDER_RISK_CHECK_TIMEOUT_MS`; past it, or with the engine down, the verdict of
//! [`risk::without_engine`] applies (the fail-open/fail-closed choice is explained there).
//! Evaluating in-process would save the HTTP hop but needs a FEEL engine in Rust and would
//! split the rules' source of truth from the engine operations edit them in.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;
use workflow::EngineClient;

use crate::domain::risk::{self, RiskInputs, Verdict};
use crate::store::{customers, orders};

/// Settings of the risk check and the review.
#[derive(Debug, Clone)]
pub struct RiskSettings {
    /// `ORDER_REVIEW_AMOUNT`: from this total (minor units) every order is reviewed; the
    /// table's other rules apply from shares of it.
    pub review_amount: i64,
    /// `ORDER_RISK_CHECK_TIMEOUT_MS`: how long an order waits for the table's answer.
    pub check_timeout: Duration,
    /// `ORDER_REVIEW_TIMEOUT`: how long a held order waits for an admin (ISO 8601).
    pub review_timeout: String,
    /// `ORDER_REVIEW_START_INTERVAL_MS`: how often held orders without a process are looked
    /// for (see [`crate::review`]).
    pub start_interval: Duration,
}

/// Classifies an order of `user_id` about to be placed.
pub async fn classify(
    conn: &mut PgConnection,
    engine: &EngineClient,
    settings: &RiskSettings,
    user_id: Uuid,
    amount: i64,
    shipping_country: &str,
) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    let now = Utc::now();
    let registered_at = customers::registered_at(conn, user_id).await?;
    let recent = orders::placed_since(conn, user_id, now - chrono::Duration::hours(1)).await?;
    let inputs = RiskInputs {
        amount,
        review_amount: settings.review_amount,
        account_age_days: risk::account_age_days(registered_at, now),
        orders_last_hour: i32::try_from(recent).unwrap_or(i32::MAX),
        shipping_country: shipping_country.to_owned(),
    };
    let evaluated = tokio::time::timeout(
        settings.check_timeout,
        engine.evaluate_decision(risk::DECISION_KEY, inputs.variables()),
    )
    .await;
    let verdict = match evaluated {
        Ok(Ok(results)) => {
            let first = results.first();
            let text = |name| first.and_then(|r| r.get(name)).and_then(Value::as_str);
            risk::from_outputs(text("outcome"), text("reason"))
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, amount, "risk check failed; deciding without the table");
            metrics::counter!("order_risk_check_failures_total").increment(1);
            risk::without_engine(amount, settings.review_amount)
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = settings.check_timeout.as_millis(),
                amount,
                "risk check timed out; deciding without the table"
            );
            metrics::counter!("order_risk_check_failures_total").increment(1);
            risk::without_engine(amount, settings.review_amount)
        }
    };
    metrics::histogram!("order_risk_check_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("order_risk_verdicts_total", "risk" => verdict.risk.as_str()).increment(1);
    Ok(verdict)
}
