//! The saga consumer (group `<prefix>order-service.saga`): `inventory.*` and `payment.*`
//! events move orders. Each effect commits in one transaction with its processed-event record
//! and its own outgoing event, so a redelivered record changes nothing and a crash anywhere
//! leaves either all of it or none.

use contracts::EventData;
use contracts::inventory::{InventoryReservationFailed, InventoryReserved};
use contracts::payment::PaymentSucceeded;
use contracts::topics::{INVENTORY_EVENTS, PAYMENT_EVENTS, Topic};
use messaging::{ConsumerSettings, Delivery, Handler, HandlerError, mark_processed};
use sqlx::PgPool;
use uuid::Uuid;

use super::{decode, transient};
use crate::domain::status::Trigger;
use crate::saga::{self, Advanced, SagaSettings};

const CONSUMER: &str = "order-service.saga";

pub fn settings(topics: &Topic) -> ConsumerSettings {
    ConsumerSettings::new(
        topics.qualified(CONSUMER),
        vec![
            topics.qualified(INVENTORY_EVENTS),
            topics.qualified(PAYMENT_EVENTS),
        ],
    )
}

pub struct SagaEvents {
    pub pool: PgPool,
    pub settings: SagaSettings,
}

impl Handler for SagaEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
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
            _ => return Ok(()),
        };
        self.apply(event.id, order_id, trigger, payment_id, &event.event_type)
            .await
    }
}

impl SagaEvents {
    async fn apply(
        &self,
        event_id: Uuid,
        order_id: Uuid,
        trigger: Trigger,
        payment_id: Option<Uuid>,
        cause: &str,
    ) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await.map_err(transient)?;
        if !mark_processed(&mut tx, CONSUMER, event_id)
            .await
            .map_err(transient)?
        {
            tracing::debug!(%event_id, "already processed");
            return Ok(());
        }
        match saga::advance(
            &mut tx,
            &self.settings,
            order_id,
            trigger,
            payment_id,
            cause,
        )
        .await
        .map_err(transient)?
        {
            Advanced::Moved(_) => {}
            Advanced::Unchanged(order) => {
                tracing::info!(%order_id, status = %order.status, cause, "event does not move the order");
            }
            Advanced::Illegal(status) => {
                tracing::warn!(%order_id, %status, cause, "event refused by the order's status");
            }
            // Events are keyed and ordered after order.created, which this service committed
            // before publishing; an unknown order is another deployment's (or a forged) event.
            Advanced::NotFound => {
                return Err(HandlerError::Permanent(anyhow::anyhow!(
                    "{cause} for unknown order {order_id}"
                )));
            }
        }
        tx.commit().await.map_err(transient)?;
        Ok(())
    }
}
