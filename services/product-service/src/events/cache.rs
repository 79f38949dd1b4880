//! Cross-replica cache invalidation: every replica reads `product.events` in a group of its
//! own (`<prefix>product-service.cache.<uuid>`) and drops its cached copy of each product an
//! event names, so a write through one replica shows on the others at once instead of after
//! the cache TTL.
//!
//! A new group starts at the beginning of the (compacted) topic, so a replica replays one
//! snapshot per product at start; invalidating an absent entry costs nothing. Window: a read
//! that loaded the old version from MongoDB just before the event arrived can insert it after
//! the invalidation; that entry then lives until the TTL, as before.

use contracts::topics::{PRODUCT_EVENTS, Topic};
use messaging::{ConsumerSettings, Delivery, Handler, HandlerError};
use uuid::Uuid;

use crate::api::ProductCache;

/// A group per process: each replica must see every event.
pub fn settings(topics: &Topic) -> ConsumerSettings {
    ConsumerSettings::new(
        topics.qualified(&format!("product-service.cache.{}", Uuid::new_v4())),
        vec![topics.qualified(PRODUCT_EVENTS)],
    )
}

pub struct CacheInvalidation(pub ProductCache);

impl Handler for CacheInvalidation {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        match Uuid::parse_str(&delivery.event.subject) {
            Ok(id) => self.0.invalidate(&id).await,
            // Nothing of ours is cached under it; the catalog's own consumers judge the record.
            Err(_) => tracing::debug!(subject = %delivery.event.subject, "not a product id"),
        }
        Ok(())
    }
}
