//! The customers replica's consumer (group `<prefix>order-service.customers`): records when
//! each user registered, for the risk check's account age. The write keeps the earliest time,
//! so redelivery and replay are harmless without a processed-event record; a new deployment
//! (a fresh group) rebuilds the replica by reading user.events from the beginning.

use contracts::EventData;
use contracts::topics::{Topic, USER_EVENTS};
use contracts::user::UserRegistered;
use messaging::{ConsumerSettings, Delivery, Handler, HandlerError};
use sqlx::PgPool;

use super::{decode, transient};
use crate::store::customers;

pub fn settings(topics: &Topic) -> ConsumerSettings {
    ConsumerSettings::new(
        topics.qualified("order-service.customers"),
        vec![topics.qualified(USER_EVENTS)],
    )
}

pub struct CustomerReplica(pub PgPool);

impl Handler for CustomerReplica {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let event = &delivery.event;
        if event.event_type != UserRegistered::TYPE {
            return Ok(());
        }
        let registered: UserRegistered = decode(event)?;
        let mut conn = self.0.acquire().await.map_err(transient)?;
        customers::record_registration(&mut conn, registered.user_id, event.time)
            .await
            .map_err(transient)?;
        Ok(())
    }
}
