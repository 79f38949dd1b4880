//! The `order.events` consumer (group `<prefix>payment-service.orders`, from the earliest
//! offset, so a service started late rebuilds its replica from the log): each order event
//! updates the replica ([`crate::store::orders`]); `order.cancelled` then refunds the order's
//! succeeded payments ([`crate::refunds`]). Undecodable events are permanent failures
//! (dead-lettered); database trouble is transient (retried until the database is back).

use contracts::order::{
    OrderAwaitingPayment, OrderCancelled, OrderCreated, OrderPaid, OrderRejected,
};
use contracts::topics::{ORDER_EVENTS, Topic};
use contracts::{CloudEvent, EventData};
use messaging::{ConsumerSettings, Delivery, Handler, HandlerError};

use crate::domain::order_status::OrderStatus;
use crate::refunds::Refunds;
use crate::store::orders::{OrderFacts, Orders};

/// One group per deployment: replicas share the partitions, and one order's events (one key)
/// are handled in order by one replica at a time.
pub fn settings(topics: &Topic) -> ConsumerSettings {
    ConsumerSettings::new(
        topics.qualified("payment-service.orders"),
        vec![topics.qualified(ORDER_EVENTS)],
    )
}

pub struct OrderEvents {
    pub orders: Orders,
    pub refunds: Refunds,
}

fn decode<T: EventData>(event: &CloudEvent) -> Result<T, HandlerError> {
    event
        .decode::<T>()
        .map(|event| event.data)
        .map_err(|error| HandlerError::Permanent(error.into()))
}

impl Handler for OrderEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let event = &delivery.event;
        let facts = |order_id, user_id, status, total| OrderFacts {
            event_id: event.id,
            order_id,
            user_id,
            status,
            total,
        };
        let facts = match event.event_type.as_str() {
            OrderCreated::TYPE => {
                let data: OrderCreated = decode(event)?;
                facts(
                    data.order_id,
                    data.user_id,
                    OrderStatus::Pending,
                    Some(data.total),
                )
            }
            OrderAwaitingPayment::TYPE => {
                let data: OrderAwaitingPayment = decode(event)?;
                facts(
                    data.order_id,
                    data.user_id,
                    OrderStatus::AwaitingPayment,
                    None,
                )
            }
            OrderPaid::TYPE => {
                let data: OrderPaid = decode(event)?;
                facts(data.order_id, data.user_id, OrderStatus::Paid, None)
            }
            OrderCancelled::TYPE => {
                let data: OrderCancelled = decode(event)?;
                facts(data.order_id, data.user_id, OrderStatus::Cancelled, None)
            }
            OrderRejected::TYPE => {
                let data: OrderRejected = decode(event)?;
                facts(data.order_id, data.user_id, OrderStatus::Rejected, None)
            }
            other => {
                tracing::debug!(event_type = other, "not a payment concern; skipped");
                return Ok(());
            }
        };
        self.orders
            .apply(&facts)
            .await
            .map_err(HandlerError::Transient)?;
        if facts.status == OrderStatus::Cancelled {
            // The first half of the refund handshake: the cancellation is written, now look
            // for a succeeded charge. Runs on a redelivery too (the refund itself is once).
            if let Err(error) = self.refunds.refund_order(facts.order_id).await {
                // A payment left `refunding` is finished by the reconciler; anything else
                // (the database) is worth a retry of the record.
                tracing::warn!(
                    error = format!("{error:#}"),
                    "refunding a cancelled order failed"
                );
                let payments = self
                    .refunds
                    .payments
                    .of_order(
                        facts.order_id,
                        &[crate::domain::payment_status::PaymentStatus::Succeeded],
                    )
                    .await
                    .map_err(HandlerError::Transient)?;
                if !payments.is_empty() {
                    return Err(HandlerError::Transient(error));
                }
            }
        }
        Ok(())
    }
}
