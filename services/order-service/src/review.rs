//! Review of risky orders: the `order-review` process on the workflow engine holds an order
//! the risk check sent to review (`REVIEW`, its stock reserved) until an admin decides or
//! its timer runs out, and this service works the outcome (`order-review-approved`,
//! `order-review-rejected`).
//!
//! The move to `REVIEW` commits in the saga consumer's transaction (with `order.in_review`)
//! and never waits for the engine; the process is started afterwards by [`ReviewStarter`],
//! which takes held orders without a process (`FOR UPDATE SKIP LOCKED`, so replicas share the
//! work), starts the process with the order id as business key and records its id. The engine
//! being down only delays the start: the row stays without a process and the next pass tries
//! again, so no Kafka record waits or is dead-lettered on the engine's account. A crash after
//! the start but before the id was recorded is healed by looking the business key up before
//! starting, so an order gets one process.
//!
//! The outcome steps move the order through [`saga::advance`] (row lock, state machine,
//! history and the outgoing event in one transaction): approved publishes
//! `order.awaiting_payment` and the checkout goes on; rejected publishes `order.rejected`
//! (`review_rejected` or `review_timeout`), on which product-service releases the stock and
//! notification-service mails the customer. A step that runs again finds the order moved on
//! and changes nothing.

use anyhow::Context as _;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use workflow::{EngineClient, LockedTask, StartProcess, TaskFailure, Variables, Worker};

use crate::domain::status::Trigger;
use crate::risk::RiskSettings;
use crate::saga::{self, Advanced, SagaSettings};
use crate::store::orders::{self, OrderRow};

/// The process of `workflow/models/order-review.bpmn`.
pub const PROCESS_KEY: &str = "order-review";
/// Its user task, as `/api/admin/approvals` lists it.
pub const TASK_KEY: &str = "review";
pub const TOPIC_APPROVED: &str = "order-review-approved";
pub const TOPIC_REJECTED: &str = "order-review-rejected";

/// Starts the review processes of held orders (see the module comment).
#[derive(Clone)]
pub struct ReviewStarter {
    pub pool: PgPool,
    pub engine: EngineClient,
    pub risk: RiskSettings,
    pub namespace: String,
}

impl ReviewStarter {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.risk.start_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            loop {
                match self.start_next().await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "starting an order review failed; retried on the next pass"
                        );
                        break;
                    }
                }
            }
        }
    }

    /// Starts the process of one held order; `false` when none waits.
    pub async fn start_next(&self) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let Some(order) = orders::lock_unstarted_reviews(&mut tx, 1).await?.pop() else {
            return Ok(false);
        };
        let business_key = order.id.to_string();
        let existing = self
            .engine
            .process_instances_by_business_key(PROCESS_KEY, &business_key)
            .await
            .context("looking for an earlier review process")?;
        let instance = match existing.into_iter().next() {
            Some(id) => id,
            None => {
                self.engine
                    .start_process(StartProcess {
                        key: PROCESS_KEY,
                        business_key: &business_key,
                        variables: self.variables(&order),
                    })
                    .await
                    .context("starting the review process")?
                    .id
            }
        };
        orders::set_review_process(&mut tx, order.id, &instance).await?;
        tx.commit().await?;
        tracing::info!(order_id = %order.id, process_instance_id = %instance, "order review started");
        metrics::counter!("order_reviews_started_total").increment(1);
        Ok(true)
    }

    fn variables(&self, order: &OrderRow) -> Variables {
        Variables::new()
            .string(workflow::NAMESPACE_VARIABLE, self.namespace.as_str())
            .string("orderId", order.id.to_string())
            .string("userId", order.user_id.to_string())
            .long("amount", order.total_amount)
            .string("currency", order.currency.as_str())
            .string(
                "riskReason",
                order.risk_reason.as_deref().unwrap_or_default(),
            )
            .string("shippingCountry", order.shipping_country())
            .string("reviewTimeout", self.risk.review_timeout.as_str())
    }
}

/// Adds the review's outcome steps to this service's worker.
pub fn with_steps(worker: Worker, pool: PgPool, saga: SagaSettings) -> Worker {
    let (approve_pool, approve_saga) = (pool.clone(), saga.clone());
    worker
        .topic(TOPIC_APPROVED, move |task| {
            let (pool, saga) = (approve_pool.clone(), approve_saga.clone());
            async move { decided(&pool, &saga, &task, Trigger::ReviewApproved).await }
        })
        .topic(TOPIC_REJECTED, move |task| {
            let (pool, saga) = (pool.clone(), saga.clone());
            async move {
                // The timer's path sets reviewTimedOut; an admin's rejection does not.
                let timed_out = task
                    .variables
                    .get("reviewTimedOut")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let trigger = if timed_out {
                    Trigger::ReviewTimedOut
                } else {
                    Trigger::ReviewRejected
                };
                decided(&pool, &saga, &task, trigger).await
            }
        })
}

/// Moves the reviewed order; a repeat or a decision after the customer cancelled changes
/// nothing.
async fn decided(
    pool: &PgPool,
    saga: &SagaSettings,
    task: &LockedTask,
    trigger: Trigger,
) -> Result<Variables, TaskFailure> {
    let order_id: Uuid = task
        .variables
        .get_str("orderId")?
        .parse()
        .context("orderId is not a UUID")?;
    let mut tx = pool.begin().await.context("beginning a transaction")?;
    let outcome = saga::advance(
        &mut tx,
        saga,
        order_id,
        trigger,
        None,
        &format!("order review ({trigger:?})"),
    )
    .await?;
    match outcome {
        Advanced::Moved(_) | Advanced::Unchanged(_) => {}
        Advanced::Illegal(status) => {
            return Err(TaskFailure::Retry(anyhow::anyhow!(
                "order {order_id} is {status}; the review's {trigger:?} does not apply"
            )));
        }
        Advanced::NotFound => {
            return Err(TaskFailure::Retry(anyhow::anyhow!(
                "order {order_id} does not exist"
            )));
        }
    }
    tx.commit()
        .await
        .context("committing the review's outcome")?;
    Ok(Variables::new())
}
