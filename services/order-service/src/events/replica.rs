//! The product replica's consumer (group `<prefix>order-service.products`): applies every
//! `product.*` snapshot that is newer than the stored one. Snapshots are versioned, so
//! redelivery and replay are harmless without a processed-event record; a new deployment (a
//! fresh group) rebuilds the replica by reading the compacted topic from the beginning.

use contracts::EventData;
use contracts::product::{ProductCreated, ProductDeleted, ProductUpdated};
use contracts::topics::{PRODUCT_EVENTS, Topic};
use messaging::{ConsumerSettings, Delivery, Handler, HandlerError};
use sqlx::PgPool;

use super::{decode, transient};
use crate::store::products;

pub fn settings(topics: &Topic) -> ConsumerSettings {
    ConsumerSettings::new(
        topics.qualified("order-service.products"),
        vec![topics.qualified(PRODUCT_EVENTS)],
    )
}

pub struct ProductReplica(pub PgPool);

impl Handler for ProductReplica {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let event = &delivery.event;
        let (snapshot, deleted) = match event.event_type.as_str() {
            ProductCreated::TYPE => (decode::<ProductCreated>(event)?.0, false),
            ProductUpdated::TYPE => (decode::<ProductUpdated>(event)?.0, false),
            ProductDeleted::TYPE => (decode::<ProductDeleted>(event)?.0, true),
            _ => return Ok(()),
        };
        let mut conn = self.0.acquire().await.map_err(transient)?;
        products::apply_snapshot(&mut conn, &snapshot, deleted)
            .await
            .map_err(transient)?;
        Ok(())
    }
}
