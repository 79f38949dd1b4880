//! The saga consumer (group `<prefix>order-service.saga`): `inventory.*` and `payment.*`
//! events move orders. Each effect commits in one transaction with its processed-event record
//! and its own outgoing event, so a redelivered record changes nothing and a crash anywhere
//! leaves either all of it or none.
//!
//! Records handled side by side (the consumers' `in_flight`, several consumers) share their
//! commit: each handler hands its step to a [`SagaCommits`] writer, which takes every step
//! waiting at that moment (at most [`SagaCommits::new`]'s `max_batch`) and applies them in one
//! transaction: one statement records which events are new, then each new event moves its
//! order as a single record would, then one commit. The handlers learn the outcome only after
//! that commit, so a record's offset is never stored before its effect is durable. A batch
//! that cannot commit as a whole (an event for an unknown order, a lock conflict, the
//! database away) is rolled back and every step of it is applied again alone, with the
//! single-record path's own answer (retry, dead letter); a crash before the commit leaves
//! none of the batch, and the redelivered records apply exactly as single records do
//! (`a_batch_cut_off_before_its_commit_leaves_nothing_and_its_redelivery_moves_each_order_once`).

use std::sync::Arc;

use contracts::EventData;
use contracts::inventory::{InventoryReservationFailed, InventoryReserved};
use contracts::payment::PaymentSucceeded;
use contracts::topics::{INVENTORY_EVENTS, PAYMENT_EVENTS, Topic};
use messaging::{
    ConsumerSettings, Delivery, Handler, HandlerError, mark_processed, mark_processed_all,
};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument as _;
use uuid::Uuid;

use super::{decode, transient};
use crate::domain::status::Trigger;
use crate::saga::{self, Advanced, SagaSettings};

const CONSUMER: &str = "order-service.saga";

/// Writers applying batches at once: a batch waiting on a row lock (an owner's cancel, the
/// expiry job) does not hold up every other order, and while one batch commits the next one
/// gathers.
const WRITERS: usize = 2;

pub fn settings(topics: &Topic) -> ConsumerSettings {
    ConsumerSettings::new(
        topics.qualified(CONSUMER),
        vec![
            topics.qualified(INVENTORY_EVENTS),
            topics.qualified(PAYMENT_EVENTS),
        ],
    )
}

/// One saga event as it moves an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaStep {
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub trigger: Trigger,
    pub payment_id: Option<Uuid>,
    /// The event's type, recorded in the order's history.
    pub cause: String,
}

impl SagaStep {
    /// The step an event asks for; `None` for events the saga does not act on.
    pub fn of(delivery: &Delivery) -> Result<Option<Self>, HandlerError> {
        let event = &delivery.event;
        let (order_id, trigger, payment_id) = match event.event_type.as_str() {
            InventoryReserved::TYPE => {
                let data: InventoryReserved = decode(event)?;
                (data.order_id, Trigger::StockReserved, None)
            }
            InventoryReservationFailed::TYPE => {
                let data: InventoryReservationFailed = decode(event)?;
                (data.order_id, Trigger::StockShort, None)
            }
            PaymentSucceeded::TYPE => {
                let data: PaymentSucceeded = decode(event)?;
                (
                    data.order_id,
                    Trigger::PaymentSucceeded,
                    Some(data.payment_id),
                )
            }
            // payment.failed leaves the order awaiting payment (the customer may retry until
            // it expires); committed/released/refunded are other services' bookkeeping.
            _ => return Ok(None),
        };
        Ok(Some(Self {
            event_id: event.id,
            order_id,
            trigger,
            payment_id,
            cause: event.event_type.clone(),
        }))
    }
}

pub struct SagaEvents {
    pub pool: PgPool,
    pub settings: SagaSettings,
    /// Where steps go to share a commit; `None` applies each alone.
    pub commits: Option<SagaCommits>,
}

impl Handler for SagaEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let Some(step) = SagaStep::of(delivery)? else {
            return Ok(());
        };
        if let Some(commits) = &self.commits
            && commits.submit(step.clone()).await == Committed::Yes
        {
            return Ok(());
        }
        self.apply_alone(&step).await
    }
}

impl SagaEvents {
    /// The single-record path: the step in a transaction of its own, with its own answer for
    /// the consumer (a transient failure is retried, an unknown order dead-lettered).
    async fn apply_alone(&self, step: &SagaStep) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await.map_err(transient)?;
        if !mark_processed(&mut tx, CONSUMER, step.event_id)
            .await
            .map_err(transient)?
        {
            tracing::debug!(event_id = %step.event_id, "already processed");
            return Ok(());
        }
        match move_order(&mut tx, &self.settings, step)
            .await
            .map_err(transient)?
        {
            Moved::Done => {}
            // Events are keyed and ordered after order.created, which this service committed
            // before publishing; an unknown order is another deployment's (or a forged) event.
            Moved::UnknownOrder => {
                return Err(HandlerError::Permanent(anyhow::anyhow!(
                    "{} for unknown order {}",
                    step.cause,
                    step.order_id
                )));
            }
        }
        tx.commit().await.map_err(transient)?;
        Ok(())
    }
}

/// What one step did to its order inside the caller's transaction.
enum Moved {
    /// Moved, or left as it was (a late or refused event, logged).
    Done,
    /// No such order: the event cannot apply (the caller decides what that means).
    UnknownOrder,
}

async fn move_order(
    tx: &mut PgConnection,
    settings: &SagaSettings,
    step: &SagaStep,
) -> anyhow::Result<Moved> {
    let order_id = step.order_id;
    let cause = step.cause.as_str();
    match saga::advance(tx, settings, order_id, step.trigger, step.payment_id, cause).await? {
        Advanced::Moved(_) => {}
        Advanced::Unchanged(order) => {
            tracing::info!(%order_id, status = %order.status, cause, "event does not move the order");
        }
        Advanced::Illegal(status) => {
            tracing::warn!(%order_id, %status, cause, "event refused by the order's status");
        }
        Advanced::NotFound => return Ok(Moved::UnknownOrder),
    }
    Ok(Moved::Done)
}

/// Whether a step was committed as part of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Committed {
    Yes,
    /// Not applied: the caller applies it alone.
    No,
}

/// A step waiting for its batch, with the record's span (the order's event joins the record's
/// trace) and the handler waiting for the outcome.
struct Waiting {
    step: SagaStep,
    span: tracing::Span,
    outcome: oneshot::Sender<Committed>,
}

/// The saga's shared commits: steps submitted while a batch is being written wait for the
/// next one and go in together (see the module documentation). Clones share the writers.
#[derive(Clone)]
pub struct SagaCommits {
    steps: mpsc::Sender<Waiting>,
}

impl SagaCommits {
    /// Starts the writers, which stop once every clone of the returned value is dropped.
    /// `max_batch` bounds the steps in one transaction (its locks and its length).
    pub fn new(pool: PgPool, settings: SagaSettings, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (steps, receiver) = mpsc::channel(max_batch.saturating_mul(WRITERS));
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(
                Arc::clone(&receiver),
                pool.clone(),
                settings.clone(),
                max_batch,
            ));
        }
        Self { steps }
    }

    async fn submit(&self, step: SagaStep) -> Committed {
        let (outcome, committed) = oneshot::channel();
        let waiting = Waiting {
            step,
            span: tracing::Span::current(),
            outcome,
        };
        if self.steps.send(waiting).await.is_err() {
            return Committed::No;
        }
        // A writer gone (the runtime shutting down) answers nothing: apply alone.
        committed.await.unwrap_or(Committed::No)
    }
}

/// One writer: takes the first step waiting and every other one already there, applies them
/// in one transaction and tells each handler the outcome.
async fn write_batches(
    receiver: Arc<Mutex<mpsc::Receiver<Waiting>>>,
    pool: PgPool,
    settings: SagaSettings,
    max_batch: usize,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            if receiver.recv_many(&mut batch, max_batch).await == 0 {
                return;
            }
        }
        let (steps, outcomes): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|waiting| ((waiting.step, waiting.span), waiting.outcome))
            .unzip();
        let outcome = match commit_batch(&pool, &settings, &steps).await {
            Ok(()) => {
                metrics::histogram!("saga_batch_steps").record(steps.len() as f64);
                Committed::Yes
            }
            Err(error) => {
                tracing::info!(
                    error = format!("{error:#}"),
                    steps = steps.len(),
                    "saga batch rolled back; its steps apply one by one"
                );
                Committed::No
            }
        };
        for waiting in outcomes {
            // The handler may have stopped waiting (shutdown); its record is redelivered.
            let _ = waiting.send(outcome);
        }
    }
}

async fn commit_batch(
    pool: &PgPool,
    settings: &SagaSettings,
    steps: &[(SagaStep, tracing::Span)],
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    apply_batch(&mut tx, settings, steps).await?;
    tx.commit().await?;
    Ok(())
}

/// Applies `steps` in the caller's transaction: records which events are new (one statement),
/// then moves each new event's order, in order-id order (two writers lock rows in the same
/// order; one order's steps keep their order). Fails, leaving the transaction to be rolled
/// back, when a step cannot apply (an unknown order): the caller applies the steps alone. The
/// caller commits; dropping the transaction instead is what a crash before the commit does.
pub async fn apply_batch(
    tx: &mut PgConnection,
    settings: &SagaSettings,
    steps: &[(SagaStep, tracing::Span)],
) -> anyhow::Result<()> {
    let event_ids: Vec<Uuid> = steps.iter().map(|(step, _)| step.event_id).collect();
    let mut new_events = mark_processed_all(tx, CONSUMER, &event_ids).await?;
    let mut ordered: Vec<&(SagaStep, tracing::Span)> = steps.iter().collect();
    ordered.sort_by_key(|(step, _)| step.order_id);
    for (step, span) in ordered {
        // An event delivered twice into one batch applies once (its id is taken on first use).
        let Some(position) = new_events.iter().position(|id| *id == step.event_id) else {
            span.in_scope(|| tracing::debug!(event_id = %step.event_id, "already processed"));
            continue;
        };
        new_events.swap_remove(position);
        match move_order(tx, settings, step)
            .instrument(span.clone())
            .await?
        {
            Moved::Done => {}
            Moved::UnknownOrder => {
                anyhow::bail!("{} for unknown order {}", step.cause, step.order_id)
            }
        }
    }
    Ok(())
}
