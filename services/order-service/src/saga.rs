//! Moving an order through its state machine: one function used by every writer (the saga
//! consumer, the owner's cancel, the expiry job and the workflow steps), so each change holds
//! the row's lock (taken by a guarded update, or by a read when the guard does not decide),
//! follows the rules of [`OrderStatus::apply`], records the history and enqueues its event in
//! the caller's transaction.

use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use contracts::CloudEvent;
use contracts::order::{
    OrderAwaitingPayment, OrderCancelled, OrderInReview, OrderPaid, OrderRefunded, OrderRejected,
};
use contracts::product::Money;
use contracts::topics::Topic;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::status::{OrderStatus, StatusStep, Transition, Trigger};
use crate::status_feed::{self, StatusChange};
use crate::store::orders::{self, OrderRow, StatusMove};

/// The CloudEvents `source` of everything this service emits.
pub const EVENT_SOURCE: &str = "/order-service";

/// What a request to move an order did.
#[derive(Debug)]
pub enum Advanced {
    /// The order moved; its event is enqueued. Carries the order as it is now.
    Moved(Box<OrderRow>),
    /// Nothing to do (a late or repeated message).
    Unchanged(Box<OrderRow>),
    /// The order's status forbids the request.
    Illegal(OrderStatus),
    NotFound,
}

/// Settings the transitions need.
#[derive(Debug, Clone)]
pub struct SagaSettings {
    pub topics: Topic,
    /// How long an order may await its payment once its stock is reserved.
    pub payment_timeout: Duration,
    /// How long a new order may wait for product-service's reservation answer.
    pub reservation_timeout: Duration,
    /// How many unpaid orders one customer may hold.
    pub open_orders: crate::domain::open_orders::OpenOrderLimit,
}

/// The approved refund request behind a move to `REFUNDED` (its event names them).
#[derive(Debug, Clone)]
pub struct RefundFacts {
    pub request_id: Uuid,
    pub reason: String,
}

/// Applies `trigger` to order `order_id` inside the caller's transaction.
pub async fn advance(
    tx: &mut PgConnection,
    settings: &SagaSettings,
    order_id: Uuid,
    trigger: Trigger,
    payment_id: Option<Uuid>,
    cause: &str,
) -> anyhow::Result<Advanced> {
    advance_with(tx, settings, order_id, trigger, payment_id, cause, None).await
}

/// [`advance`], with the refund request a move to `REFUNDED` needs for its event.
///
/// A trigger that moves orders out of one status only ([`Trigger::only_move`]: every step of
/// a checkout) is first written as a move guarded by that status, which takes the row lock
/// itself: one statement instead of the lock's read and the write. When the guard does not
/// match (a late or repeated message, an order for review), the order is locked and read and
/// the trigger decided on it, as every move was before.
pub async fn advance_with(
    tx: &mut PgConnection,
    settings: &SagaSettings,
    order_id: Uuid,
    trigger: Trigger,
    payment_id: Option<Uuid>,
    cause: &str,
    refund: Option<&RefundFacts>,
) -> anyhow::Result<Advanced> {
    if let Some(only) = trigger.only_move() {
        let now = Utc::now();
        let expires_at = expiry(settings, only.to, now)?;
        let announcement = announcement(order_id, only.to, only.reason, now)?;
        // The reservation answer does not know the risk check's verdict: an order for review
        // takes the other way (below), so the guard leaves it out.
        let not_for_review = matches!(trigger, Trigger::StockReserved);
        let change = StatusMove {
            status: only.to,
            reason: only.reason,
            payment_id,
            expires_at,
            cause,
        };
        if let Some(order) = orders::move_from(
            tx,
            order_id,
            only.from,
            not_for_review,
            &change,
            &announcement,
        )
        .await?
        {
            return moved(tx, settings, order, only, cause, refund).await;
        }
    }
    let Some(order) = orders::lock(tx, order_id).await? else {
        return Ok(Advanced::NotFound);
    };
    let status = order.status()?;
    // The reservation answer does not know the risk check's verdict; the order does.
    let trigger = match trigger {
        Trigger::StockReserved if order.needs_review() => Trigger::StockReservedForReview,
        other => other,
    };
    let (to, reason) = match status.apply(trigger) {
        Transition::Move { to, reason } => (to, reason),
        Transition::Ignore => return Ok(Advanced::Unchanged(Box::new(order))),
        Transition::Illegal => return Ok(Advanced::Illegal(status)),
    };
    let now = Utc::now();
    let expires_at = expiry(settings, to, now)?;
    // The order as the statement wrote it (its `updated_at` is the database's), not the row
    // read under the lock with the changed fields patched in.
    let Some(order) = orders::set_status(
        tx,
        order_id,
        &StatusMove {
            status: to,
            reason,
            payment_id,
            expires_at,
            cause,
        },
        &announcement(order_id, to, reason, now)?,
    )
    .await?
    else {
        // Not reachable while the row lock is held; answered as a missing order all the same.
        return Ok(Advanced::NotFound);
    };
    let step = StatusStep {
        from: status,
        to,
        reason,
    };
    moved(tx, settings, order, step, cause, refund).await
}

/// The new deadline a move to `to` sets: an order awaiting payment has `payment_timeout`.
fn expiry(
    settings: &SagaSettings,
    to: OrderStatus,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<Option<chrono::DateTime<Utc>>> {
    Ok(match to {
        OrderStatus::AwaitingPayment => Some(
            now + chrono::Duration::from_std(settings.payment_timeout)
                .context("payment timeout out of range")?,
        ),
        _ => None,
    })
}

/// What the move tells every replica's open streams when its transaction commits.
fn announcement(
    order_id: Uuid,
    to: OrderStatus,
    reason: Option<&str>,
    at: chrono::DateTime<Utc>,
) -> anyhow::Result<String> {
    status_feed::announcement(&StatusChange {
        order_id,
        status: to,
        status_reason: reason.map(str::to_owned),
        at,
    })
}

/// After a move is written: its event into the outbox, the log line and the metric.
async fn moved(
    tx: &mut PgConnection,
    settings: &SagaSettings,
    order: OrderRow,
    step: StatusStep,
    cause: &str,
    refund: Option<&RefundFacts>,
) -> anyhow::Result<Advanced> {
    let StatusStep { from, to, reason } = step;
    enqueue_status_event(tx, &settings.topics, &order, to, reason, refund).await?;
    tracing::info!(order_id = %order.id, from = %from, to = %to, cause, "order moved");
    metrics::counter!("order_transitions_total", "to" => to.as_str()).increment(1);
    Ok(Advanced::Moved(Box::new(order)))
}

async fn enqueue_status_event(
    tx: &mut PgConnection,
    topics: &Topic,
    order: &OrderRow,
    to: OrderStatus,
    reason: Option<&str>,
    refund: Option<&RefundFacts>,
) -> anyhow::Result<()> {
    let subject = order.id.to_string();
    let reason = reason.unwrap_or_default().to_owned();
    match to {
        OrderStatus::AwaitingPayment => {
            let data = OrderAwaitingPayment {
                order_id: order.id,
                user_id: order.user_id,
            };
            messaging::enqueue(tx, topics, CloudEvent::new(EVENT_SOURCE, subject, data)).await?;
        }
        OrderStatus::Paid => {
            let data = OrderPaid {
                order_id: order.id,
                user_id: order.user_id,
                total: Money {
                    amount: order.total_amount,
                    currency: order.currency.clone(),
                },
                payment_id: order.payment_id.unwrap_or_default(),
            };
            messaging::enqueue(tx, topics, CloudEvent::new(EVENT_SOURCE, subject, data)).await?;
        }
        OrderStatus::Review => {
            let data = OrderInReview {
                order_id: order.id,
                user_id: order.user_id,
                reason: order.risk_reason.clone().unwrap_or_else(|| reason.clone()),
            };
            messaging::enqueue(tx, topics, CloudEvent::new(EVENT_SOURCE, subject, data)).await?;
        }
        OrderStatus::Rejected => {
            let data = OrderRejected {
                order_id: order.id,
                user_id: order.user_id,
                reason,
            };
            messaging::enqueue(tx, topics, CloudEvent::new(EVENT_SOURCE, subject, data)).await?;
        }
        OrderStatus::Cancelled => {
            let data = OrderCancelled {
                order_id: order.id,
                user_id: order.user_id,
                reason,
            };
            messaging::enqueue(tx, topics, CloudEvent::new(EVENT_SOURCE, subject, data)).await?;
        }
        OrderStatus::Refunded => {
            let refund = refund.context("a move to REFUNDED needs its refund request")?;
            let data = OrderRefunded {
                order_id: order.id,
                user_id: order.user_id,
                refund_request_id: refund.request_id,
                amount: Money {
                    amount: order.total_amount,
                    currency: order.currency.clone(),
                },
                reason: refund.reason.clone(),
            };
            messaging::enqueue(tx, topics, CloudEvent::new(EVENT_SOURCE, subject, data)).await?;
        }
        // Orders are created PENDING by the API with their own event; nothing moves back.
        OrderStatus::Pending => anyhow::bail!("no transition leads to PENDING"),
    }
    Ok(())
}
