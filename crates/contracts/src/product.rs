//! Events on `product.events` (key: product id). The topic is compacted: every event carries
//! the full product snapshot after the change, so the latest record per key is the product and
//! a consumer started late rebuilds its replica by reading the topic from the beginning.
//! Snapshots carry `version`; a replica applies a snapshot only when it is newer than the one it
//! holds, which makes redelivered or reordered records harmless.

use std::collections::BTreeMap;

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

/// A product's name and description in one more language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Translation {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// Translations by BCP 47 language tag (`en`, `zh-CN`).
pub type Translations = BTreeMap<String, Translation>;

/// The whole product as it is after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductSnapshot {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    /// `name` and `description` in other languages. Added after v1 went out: absent in older
    /// snapshots (an empty map) and omitted when empty, so old readers and writers still fit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub translations: Translations,
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
            translations: BTreeMap::from([(
                "zh-CN".to_owned(),
                Translation {
                    name: "水壶".into(),
                    description: String::new(),
                },
            )]),
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
        assert_eq!(event.data["translations"]["zh-CN"]["name"], "水壶");
        let back = event.decode::<ProductCreated>()?;
        assert_eq!(back.data.0, snapshot);
        Ok(())
    }

    #[test]
    fn snapshots_without_translations_still_decode() -> TestResult {
        let old = serde_json::json!({
            "id": Uuid::nil(), "sku": "S", "name": "Kettle", "description": "",
            "category": "kitchen", "tags": [], "price": {"amount": 1, "currency": "EUR"},
            "specs": {}, "images": [], "stock": {"available": 0, "reserved": 0, "sold": 0},
            "active": true, "version": 1,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        });
        let snapshot: ProductSnapshot = serde_json::from_value(old)?;
        assert!(snapshot.translations.is_empty());
        assert!(
            serde_json::to_value(&snapshot)?
                .get("translations")
                .is_none()
        );
        Ok(())
    }
}
