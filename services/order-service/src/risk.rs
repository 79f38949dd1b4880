//! The risk check of a new order: one evaluation of the decision table `order-risk` with the
//! order's amount, the customer's account age (customers replica) and orders in the last hour,
//! and the shipping country.
//!
//! It runs in `POST /api/orders` before the order is stored, so its cost is on every order's
//! path. The table is evaluated in this process ([`workflow::decision_table`]) from the XML
//! the engine has deployed, which [`RiskTable::run`] fetches at start and again every
//! `ORDER_RISK_TABLE_REFRESH_MS`. The engine stays where operations edit and see the rules
//! (Cockpit; a new deployment takes effect here within one refresh), but no order waits for
//! an HTTP call to the engine's JVM, and an engine outage changes no verdict once the table is
//! here. The engine's evaluate endpoint answers instead while the table has not been fetched
//! yet, when the deployed version uses DMN this process does not evaluate, and for a single
//! evaluation the in-process subset cannot be sure of; that call is bounded by
//! `ORDER_RISK_CHECK_TIMEOUT_MS`, and past it, or with the engine down too, the verdict of
//! [`risk::without_engine`] applies (the fail-open/fail-closed choice is explained there).
//! `order_risk_checks_total{source}` counts which of the three decided.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use workflow::decision_table::DecisionTable;
use workflow::{EngineClient, Variables};

use crate::domain::risk::{self, RiskInputs, Verdict};
use crate::store::customers;

/// Settings of the risk check and the review.
#[derive(Debug, Clone)]
pub struct RiskSettings {
    /// `ORDER_REVIEW_AMOUNT`: from this total (minor units) every order is reviewed; the
    /// table's other rules apply from shares of it.
    pub review_amount: i64,
    /// `ORDER_RISK_CHECK_TIMEOUT_MS`: how long an order waits for the engine's answer when the
    /// table is not evaluated here.
    pub check_timeout: Duration,
    /// `ORDER_REVIEW_TIMEOUT`: how long a held order waits for an admin (ISO 8601).
    pub review_timeout: String,
    /// `ORDER_REVIEW_START_INTERVAL_MS`: how often held orders without a process are looked
    /// for (see [`crate::review`]).
    pub start_interval: Duration,
}

/// What the replica knows of the engine's deployed table.
#[derive(Debug)]
enum TableState {
    /// Not fetched yet (or the engine has no such decision).
    Unknown,
    /// The version `definition_id`, evaluated here.
    Loaded {
        definition_id: String,
        table: Arc<DecisionTable>,
    },
    /// The version `definition_id` uses DMN outside the in-process subset: the engine
    /// evaluates it. Kept so that the same version is not parsed (and logged) again.
    EngineOnly { definition_id: String },
}

/// The deployed `order-risk` table, shared by every request of this replica.
#[derive(Debug, Clone)]
pub struct RiskTable(Arc<RwLock<TableState>>);

impl Default for RiskTable {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(TableState::Unknown)))
    }
}

impl RiskTable {
    /// The table evaluated here, if there is one.
    pub fn current(&self) -> Option<Arc<DecisionTable>> {
        match &*self.0.read().ok()? {
            TableState::Loaded { table, .. } => Some(Arc::clone(table)),
            TableState::Unknown | TableState::EngineOnly { .. } => None,
        }
    }

    fn known_version(&self) -> Option<String> {
        match &*self.0.read().ok()? {
            TableState::Loaded { definition_id, .. } | TableState::EngineOnly { definition_id } => {
                Some(definition_id.clone())
            }
            TableState::Unknown => None,
        }
    }

    fn set(&self, state: TableState) {
        if let Ok(mut guard) = self.0.write() {
            *guard = state;
        }
    }

    /// Fetches the engine's latest version of the table and takes it when it changed.
    /// Answers whether the table is now evaluated here.
    pub async fn refresh(&self, engine: &EngineClient) -> Result<bool, workflow::EngineError> {
        let deployed = engine.decision_xml(risk::DECISION_KEY).await?;
        if self.known_version().as_deref() == Some(deployed.id.as_str()) {
            return Ok(self.current().is_some());
        }
        match DecisionTable::parse(&deployed.dmn_xml, risk::DECISION_KEY) {
            Ok(table) => {
                tracing::info!(version = %deployed.id, "risk table loaded; evaluated in-process");
                self.set(TableState::Loaded {
                    definition_id: deployed.id,
                    table: Arc::new(table),
                });
                metrics::gauge!("order_risk_table_in_process").set(1.0);
                Ok(true)
            }
            Err(refusal) => {
                tracing::warn!(
                    version = %deployed.id,
                    %refusal,
                    "risk table version not evaluated in-process; the engine evaluates it"
                );
                self.set(TableState::EngineOnly {
                    definition_id: deployed.id,
                });
                metrics::gauge!("order_risk_table_in_process").set(0.0);
                Ok(false)
            }
        }
    }

    /// Refreshes every `interval` until `stop`. A failed fetch keeps the version it has: the
    /// rules were valid when fetched, and an engine outage should not change verdicts.
    pub async fn run(self, engine: EngineClient, interval: Duration, stop: CancellationToken) {
        loop {
            if let Err(error) = self.refresh(&engine).await {
                tracing::debug!(%error, "risk table not refreshed; keeping the version held");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Which evaluation decided (the `source` label of `order_risk_checks_total`).
fn count(source: &'static str) {
    metrics::counter!("order_risk_checks_total", "source" => source).increment(1);
}

/// The verdict of the table's outputs (the first matched rule's `outcome` and `reason`).
fn verdict_of(results: &[Variables]) -> Verdict {
    let first = results.first();
    let text = |name| first.and_then(|r| r.get(name)).and_then(Value::as_str);
    risk::from_outputs(text("outcome"), text("reason"))
}

/// Classifies an order of `user_id` about to be placed. Fails only when the customer's
/// history cannot be read (a busy or absent database, which the caller answers 503).
///
/// Takes the pool, not a connection: the connection goes back before the engine is asked.
/// Held through that call (up to the check's timeout, and every call waits that long while the
/// engine is slow to start), the places in flight had emptied the pool, and the API answered
/// "busy" to everything else.
pub async fn classify(
    pool: &PgPool,
    table: &RiskTable,
    engine: &EngineClient,
    settings: &RiskSettings,
    user_id: Uuid,
    amount: i64,
    shipping_country: &str,
) -> sqlx::Result<Verdict> {
    let started = Instant::now();
    let now = Utc::now();
    let (registered_at, recent) = {
        let mut conn = pool.acquire().await?;
        customers::risk_history(&mut conn, user_id, now - chrono::Duration::hours(1)).await?
    };
    let inputs = RiskInputs {
        amount,
        review_amount: settings.review_amount,
        account_age_days: risk::account_age_days(registered_at, now),
        orders_last_hour: i32::try_from(recent).unwrap_or(i32::MAX),
        shipping_country: shipping_country.to_owned(),
    };
    let variables = inputs.variables();
    let in_process = table.current().map(|table| table.evaluate(&variables));
    let verdict = match in_process {
        Some(Ok(results)) => {
            count("table");
            verdict_of(&results)
        }
        unanswered => {
            if let Some(Err(reason)) = unanswered {
                tracing::debug!(%reason, amount, "risk table left to the engine for this order");
            }
            ask_engine(engine, settings, variables, amount).await
        }
    };
    metrics::histogram!("order_risk_check_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("order_risk_verdicts_total", "risk" => verdict.risk.as_str()).increment(1);
    Ok(verdict)
}

/// The engine's evaluation, bounded by the check's timeout; without an answer in time, the
/// verdict without the table.
async fn ask_engine(
    engine: &EngineClient,
    settings: &RiskSettings,
    variables: Variables,
    amount: i64,
) -> Verdict {
    let evaluated = tokio::time::timeout(
        settings.check_timeout,
        engine.evaluate_decision(risk::DECISION_KEY, variables),
    )
    .await;
    match evaluated {
        Ok(Ok(results)) => {
            count("engine");
            return verdict_of(&results);
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, amount, "risk check failed; deciding without the table");
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = settings.check_timeout.as_millis(),
                amount,
                "risk check timed out; deciding without the table"
            );
        }
    }
    count("fallback");
    metrics::counter!("order_risk_check_failures_total").increment(1);
    risk::without_engine(amount, settings.review_amount)
}
