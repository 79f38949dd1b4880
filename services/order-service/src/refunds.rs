//! Refund requests: the customer's request starts the `refund` process on the workflow
//! engine, and this service works two of its steps (`mark-refunded`, `refund-rejected`).
//!
//! The request row and the process are written in two systems, so the order matters: the row
//! is committed first (the unique index on open requests decides a concurrent second request,
//! 409), then the process is started with the row's id; if the engine cannot be reached the row
//! is deleted again and the customer gets a 503 to retry. A crash between the two writes leaves
//! an open row without a process; the next request for the order removes it once it is older
//! than [`ABANDONED_AFTER_SECS`] (far longer than a start takes), so the customer is blocked
//! for two minutes at most.
//!
//! The steps are idempotent: `mark-refunded` moves the order `PAID -> REFUNDED` (with its
//! `order.refunded` event, in the same transaction) and closes the request only while it is
//! open, so a task that runs again after a lost completion finds the work done and changes
//! nothing.

use anyhow::Context as _;
use chrono::Utc;
use contracts::CloudEvent;
use contracts::order::OrderRefundRejected;
use serde_json::Value;
use uuid::Uuid;
use workflow::{EngineClient, LockedTask, StartProcess, TaskFailure, Variables, Worker};

use crate::domain::status::Trigger;
use crate::saga::{self, Advanced, EVENT_SOURCE, RefundFacts, SagaSettings};
use crate::store::orders::OrderRow;
use crate::store::refunds::{self, NewRefund, RefundRow};

/// The process every refund request runs (`workflow/models/refund.bpmn`).
pub const PROCESS_KEY: &str = "refund";
/// The topics of the process this service works.
pub const TOPIC_MARK_REFUNDED: &str = "mark-refunded";
pub const TOPIC_REFUND_REJECTED: &str = "refund-rejected";
/// An open request without a process is abandoned after this long (a start call gives up
/// after 13 seconds: 3 to connect, 10 to answer).
pub const ABANDONED_AFTER_SECS: i32 = 120;
/// The approval table counts the customer's refunds over this many days.
const HISTORY_DAYS: i32 = 90;

/// Settings of the refund feature.
#[derive(Debug, Clone)]
pub struct RefundSettings {
    /// How long after the payment a refund may be requested.
    pub window: chrono::Duration,
    /// How long an approval may wait before the process rejects it (ISO 8601 duration).
    pub approval_timeout: String,
    /// How long an approval may wait before the admins are reminded (ISO 8601 duration,
    /// shorter than `approval_timeout`).
    pub approval_reminder: String,
    /// Written into every process this deployment starts, and the only processes whose tasks
    /// its workers take (see [`workflow::NAMESPACE_VARIABLE`]).
    pub namespace: String,
}

#[derive(Debug)]
pub enum RequestError {
    /// The order has an open request already.
    AlreadyOpen,
    /// The engine cannot be reached; nothing was kept.
    EngineUnavailable(String),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for RequestError {
    fn from(error: E) -> Self {
        RequestError::Other(error.into())
    }
}

/// Stores an open request for `order` and starts its process.
pub async fn request(
    pool: &sqlx::PgPool,
    engine: &EngineClient,
    settings: &RefundSettings,
    order: &OrderRow,
    reason: &str,
    items: Option<&Value>,
) -> Result<RefundRow, RequestError> {
    let id = Uuid::now_v7();
    let mut conn = pool.acquire().await?;
    let new = NewRefund {
        id,
        order_id: order.id,
        user_id: order.user_id,
        reason,
        items,
        amount: order.total_amount,
        currency: &order.currency,
    };
    let mut inserted = refunds::insert(&mut conn, &new).await?;
    if !inserted && refunds::delete_abandoned(&mut conn, order.id, ABANDONED_AFTER_SECS).await? {
        tracing::warn!(order_id = %order.id, "removed an open refund request whose process was never started");
        inserted = refunds::insert(&mut conn, &new).await?;
    }
    if !inserted {
        return Err(RequestError::AlreadyOpen);
    }
    let recent = refunds::refunded_since(&mut conn, order.user_id, HISTORY_DAYS).await?;
    let variables = Variables::new()
        .string(workflow::NAMESPACE_VARIABLE, settings.namespace.as_str())
        .string("requestId", id.to_string())
        .string("orderId", order.id.to_string())
        .string("userId", order.user_id.to_string())
        .long("amount", order.total_amount)
        .string("currency", order.currency.as_str())
        .string("reason", reason)
        .integer("recentRefunds", i32::try_from(recent).unwrap_or(i32::MAX))
        .string("approvalTimeout", settings.approval_timeout.as_str())
        .string("approvalReminder", settings.approval_reminder.as_str());
    let started = engine
        .start_process(StartProcess {
            key: PROCESS_KEY,
            business_key: &order.id.to_string(),
            variables,
        })
        .await;
    let instance = match started {
        Ok(instance) => instance,
        Err(error) => {
            refunds::delete_unstarted(&mut conn, id).await?;
            return Err(if error.is_transient() {
                RequestError::EngineUnavailable(error.to_string())
            } else {
                RequestError::Other(
                    anyhow::Error::new(error).context("starting the refund process"),
                )
            });
        }
    };
    refunds::set_process(&mut conn, id, &instance.id).await?;
    tracing::info!(order_id = %order.id, refund_request_id = %id, process_instance_id = %instance.id, "refund requested");
    metrics::counter!("refund_requests_total").increment(1);
    let mut rows = refunds::of_order(&mut conn, order.id).await?;
    rows.retain(|row| row.id == id);
    rows.pop()
        .context("the refund request just stored is missing")
        .map_err(RequestError::Other)
}

/// The worker of this service's refund steps.
pub fn worker(
    engine: EngineClient,
    pool: sqlx::PgPool,
    saga: SagaSettings,
    settings: &RefundSettings,
) -> Worker {
    let config = workflow::namespaced_config("order-service", &settings.namespace);
    let (mark_pool, mark_saga) = (pool.clone(), saga.clone());
    Worker::new(engine, config)
        .topic(TOPIC_MARK_REFUNDED, move |task| {
            let (pool, saga) = (mark_pool.clone(), mark_saga.clone());
            async move { mark_refunded(&pool, &saga, &task).await }
        })
        .topic(TOPIC_REFUND_REJECTED, move |task| {
            let (pool, saga) = (pool.clone(), saga.clone());
            async move { record_rejection(&pool, &saga, &task).await }
        })
}

fn request_id(task: &LockedTask) -> anyhow::Result<Uuid> {
    task.variables
        .get_str("requestId")?
        .parse()
        .context("requestId is not a UUID")
}

/// `mark-refunded`: the money is back; the order becomes `REFUNDED` and the request closes.
async fn mark_refunded(
    pool: &sqlx::PgPool,
    saga: &SagaSettings,
    task: &LockedTask,
) -> Result<Variables, TaskFailure> {
    let id = request_id(task)?;
    let mut tx = pool.begin().await.context("beginning a transaction")?;
    let request = refunds::lock(&mut tx, id)
        .await
        .context("reading the refund request")?
        .with_context(|| format!("no refund request {id}"))?;
    let facts = RefundFacts {
        request_id: id,
        reason: request.reason.clone(),
    };
    let outcome = saga::advance_with(
        &mut tx,
        saga,
        request.order_id,
        Trigger::RefundCompleted,
        None,
        &format!("refund request {id} paid back"),
        Some(&facts),
    )
    .await?;
    match outcome {
        Advanced::Moved(_) | Advanced::Unchanged(_) => {}
        Advanced::Illegal(status) => {
            return Err(TaskFailure::Retry(anyhow::anyhow!(
                "order {} is {status}, not PAID; it cannot be marked refunded",
                request.order_id
            )));
        }
        Advanced::NotFound => {
            return Err(TaskFailure::Retry(anyhow::anyhow!(
                "order {} does not exist",
                request.order_id
            )));
        }
    }
    refunds::close(&mut tx, id, refunds::REFUNDED)
        .await
        .context("closing the refund request")?;
    tx.commit().await.context("committing the refund")?;
    Ok(Variables::new().string("refundedAt", Utc::now().to_rfc3339()))
}

/// `refund-rejected`: an admin said no; the request closes, the order stays `PAID`, and
/// `order.refund_rejected` (the customer's mail) is written in the same transaction, once: a
/// repeat finds the request closed and writes nothing.
async fn record_rejection(
    pool: &sqlx::PgPool,
    saga: &SagaSettings,
    task: &LockedTask,
) -> Result<Variables, TaskFailure> {
    let id = request_id(task)?;
    let comment = task
        .variables
        .get("decisionComment")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .filter(|c| !c.is_empty());
    let mut tx = pool.begin().await.context("beginning a transaction")?;
    let request = refunds::lock(&mut tx, id)
        .await
        .context("reading the refund request")?
        .with_context(|| format!("no refund request {id}"))?;
    if refunds::close(&mut tx, id, refunds::REJECTED)
        .await
        .context("closing the refund request")?
    {
        let event = OrderRefundRejected {
            order_id: request.order_id,
            user_id: request.user_id,
            refund_request_id: id,
            reason: request.reason,
            comment,
        };
        messaging::enqueue(
            &mut tx,
            &saga.topics,
            CloudEvent::new(EVENT_SOURCE, request.order_id.to_string(), event),
        )
        .await
        .context("enqueueing order.refund_rejected")?;
    }
    tx.commit().await.context("committing the rejection")?;
    Ok(Variables::new())
}
