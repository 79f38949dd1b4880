//! The `order.events` consumer (group `<prefix>product-service.inventory`): decodes each order
//! event and hands it to [`Inventory`]. Undecodable or impossible orders are permanent failures
//! (dead-lettered to `order.events.dlt`); database trouble is transient (retried with backoff
//! until the database is back, the record held meanwhile). Event types this service has no
//! part in are skipped.

use contracts::order::{OrderCancelled, OrderCreated, OrderPaid, OrderRejected};
use contracts::topics::{ORDER_EVENTS, Topic};
use contracts::{CloudEvent, EventData};
use messaging::{ConsumerSettings, Delivery, Handler, HandlerError};

use super::Inventory;
use crate::domain::reservation;

/// Consumer settings: one group per deployment (the topic prefix), so the replicas share the
/// partitions and each order's events are handled in order by one of them at a time.
pub fn settings(topics: &Topic) -> ConsumerSettings {
    ConsumerSettings::new(
        topics.qualified("product-service.inventory"),
        vec![topics.qualified(ORDER_EVENTS)],
    )
}

pub struct OrderEvents(pub Inventory);

fn decode<T: EventData>(event: &CloudEvent) -> Result<T, HandlerError> {
    event
        .decode::<T>()
        .map(|event| event.data)
        .map_err(|error| HandlerError::Permanent(error.into()))
}

fn transient(error: anyhow::Error) -> HandlerError {
    HandlerError::Transient(error)
}

impl Handler for OrderEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let event = &delivery.event;
        let inventory = &self.0;
        match event.event_type.as_str() {
            OrderCreated::TYPE => {
                let order: OrderCreated = decode(event)?;
                let lines = reservation::lines(&order.items).map_err(|reason| {
                    HandlerError::Permanent(anyhow::anyhow!("order {}: {reason}", order.order_id))
                })?;
                inventory
                    .reserve(order.order_id, &lines)
                    .await
                    .map_err(transient)
            }
            OrderPaid::TYPE => {
                let paid: OrderPaid = decode(event)?;
                inventory.commit(paid.order_id).await.map_err(transient)
            }
            OrderCancelled::TYPE => {
                let cancelled: OrderCancelled = decode(event)?;
                inventory
                    .release(cancelled.order_id, OrderCancelled::TYPE)
                    .await
                    .map_err(transient)
            }
            OrderRejected::TYPE => {
                let rejected: OrderRejected = decode(event)?;
                inventory
                    .release(rejected.order_id, OrderRejected::TYPE)
                    .await
                    .map_err(transient)
            }
            other => {
                tracing::debug!(event_type = other, "not an inventory concern; skipped");
                Ok(())
            }
        }
    }
}
