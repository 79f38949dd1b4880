//! Events on `product.events` (key: product id). The topic is compacted: every event carries
//! the full product snapshot after the change, so the latest record per key is the product and
//! a consumer started late rebuilds its replica by reading the topic from the beginning.
//! Snapshots carry `version`; a replica applies a snapshot only when it is newer than the one it
//! holds, which makes redelivered or reordered records harmless.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventData;
use crate::topics::PRODUCT_EVENTS;

/// An amount of money: an integer number of minor units (cents) and an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    /// ISO 4217 code in upper case, e.g. `EUR`.
    pub currency: String,
}

/// A product picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductImage {
    pub url: String,
    #[serde(default)]
    pub alt: String,
}

/// Stock levels. `available` can be reserved by orders; reserved units become `sold` when the
/// order is paid, or return to `available` when it is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevels {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

/// The whole product as it is after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductSnapshot {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub tags: Vec<String>,
    pub price: Money,
    /// Free-form nested attributes (dimensions, materials, ...).
    pub specs: serde_json::Value,
    pub images: Vec<ProductImage>,
    pub stock: StockLevels,
    /// `false` once deleted; inactive products cannot be ordered.
    pub active: bool,
    /// Increases with every change; newer snapshots have higher versions.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A product was added to the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductCreated(pub ProductSnapshot);

impl EventData for ProductCreated {
    const TYPE: &'static str = "product.created.v1";
    const TOPIC: &'static str = PRODUCT_EVENTS;
}

/// A product's details, price or stock changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductUpdated(pub ProductSnapshot);

impl EventData for ProductUpdated {
    const TYPE: &'static str = "product.updated.v1";
    const TOPIC: &'static str = PRODUCT_EVENTS;
}

/// A product was withdrawn (soft delete: the snapshot has `active: false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductDeleted(pub ProductSnapshot);

impl EventData for ProductDeleted {
    const TYPE: &'static str = "product.deleted.v1";
    const TOPIC: &'static str = PRODUCT_EVENTS;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloudEvent;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn snapshot_is_the_event_data_itself_and_round_trips() -> TestResult {
        let snapshot = ProductSnapshot {
            id: Uuid::nil(),
            sku: "SKU-1".into(),
            name: "Kettle".into(),
            description: String::new(),
            category: "kitchen".into(),
            tags: vec!["steel".into()],
            price: Money {
                amount: 2999,
                currency: "EUR".into(),
            },
            specs: serde_json::json!({"power": {"watts": 2200}}),
            images: vec![],
            stock: StockLevels {
                available: 3,
                reserved: 0,
                sold: 0,
            },
            active: true,
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let event = CloudEvent::new("/product-service", "x", ProductCreated(snapshot.clone()))
            .into_untyped()?;
        assert_eq!(event.event_type, "product.created.v1");
        assert_eq!(event.data["price"]["amount"], 2999);
        assert_eq!(event.data["specs"]["power"]["watts"], 2200);
        let back = event.decode::<ProductCreated>()?;
        assert_eq!(back.data.0, snapshot);
        Ok(())
    }
}
