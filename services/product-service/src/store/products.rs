//! The `products` collection: one document per product, holding its catalog data, stock,
//! recent stock adjustments and the events not yet published (the single-document outbox).

use std::collections::BTreeMap;

use anyhow::Context as _;
use contracts::product::{Money, ProductImage, ProductSnapshot, StockLevels, Translations};
use messaging::mongo::PendingEvent;
use mongodb::bson::{self, Document, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::stock::ADJUSTMENT_LOG_LEN;

pub const COLLECTION: &str = "products";

/// A product as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductDoc {
    /// The product id (UUID v7 as a string, so the id order is the creation order).
    #[serde(rename = "_id")]
    pub id: String,
    pub sku: String,
    /// The name, and the translations of name and description (see [`Naming`]).
    #[serde(flatten)]
    pub name: Naming,
    pub description: String,
    pub category: String,
    pub tags: Vec<String>,
    pub price: Money,
    pub specs: serde_json::Value,
    pub images: Vec<ProductImage>,
    pub stock: StockDoc,
    pub sold: i64,
    /// Stock at creation and the sum of every adjustment since; together with the levels they
    /// prove the invariant `initial_stock + adjusted_total = available + reserved + sold`.
    pub initial_stock: i64,
    pub adjusted_total: i64,
    /// The most recent adjustments (bounded; the full history is in the events).
    #[serde(default)]
    pub adjustments: Vec<Adjustment>,
    pub active: bool,
    pub version: i64,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    /// Units held for orders, by order id (`reservations.<order id>: quantity`); their sum is
    /// `stock.reserved`. An entry makes reserving, committing and releasing idempotent per
    /// (order, product): it exists exactly while the order holds units of this product.
    #[serde(default)]
    pub reservations: BTreeMap<String, i64>,
    /// Units returned to stock by refunded orders, by order id (`restocked.<order id>:
    /// quantity`), written with the stock change: the `restock` step is idempotent per
    /// (order, product) however often it runs. Kept for good (one small entry per returned
    /// line; refunds are rare next to orders), because removing it would reopen the window in
    /// which a slow duplicate of the step restocks again.
    #[serde(default)]
    pub restocked: BTreeMap<String, i64>,
    /// Events of committed changes the relay has not published yet.
    #[serde(default)]
    pub pending_events: Vec<PendingEvent>,
    /// Whether `pending_events` holds anything (`messaging::mongo::PENDING_FLAG`).
    #[serde(default)]
    pub outbox_pending: bool,
}

/// The product's name and, beside it, the translations of its name and description: document
/// fields `name` and `translations`. They share one flattened Rust field so that `ProductDoc`
/// kept its field list when translations arrived (code outside the catalog, such as the
/// inventory tests, builds it field by field; `"Kettle".into()` still fits).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Naming {
    #[serde(rename = "name")]
    pub text: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub translations: Translations,
}

impl From<&str> for Naming {
    fn from(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            translations: Translations::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockDoc {
    pub available: i64,
    pub reserved: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    pub delta: i64,
    pub reason: String,
    pub at: bson::DateTime,
    /// The admin who made it.
    pub by: String,
}

pub fn to_chrono(at: bson::DateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or_default()
}

impl ProductDoc {
    pub fn uuid(&self) -> anyhow::Result<Uuid> {
        Uuid::parse_str(&self.id).with_context(|| format!("stored product id {:?}", self.id))
    }

    pub fn stock_levels(&self) -> StockLevels {
        StockLevels {
            available: self.stock.available,
            reserved: self.stock.reserved,
            sold: self.sold,
        }
    }

    /// The full product as events carry it.
    pub fn snapshot(&self) -> anyhow::Result<ProductSnapshot> {
        Ok(ProductSnapshot {
            id: self.uuid()?,
            sku: self.sku.clone(),
            name: self.name.text.clone(),
            description: self.description.clone(),
            translations: self.name.translations.clone(),
            category: self.category.clone(),
            tags: self.tags.clone(),
            price: self.price.clone(),
            specs: self.specs.clone(),
            images: self.images.clone(),
            stock: self.stock_levels(),
            active: self.active,
            version: self.version,
            created_at: to_chrono(self.created_at),
            updated_at: to_chrono(self.updated_at),
        })
    }
}

/// The catalog's MongoDB handle.
#[derive(Debug, Clone)]
pub struct Products {
    collection: Collection<ProductDoc>,
}

impl Products {
    pub fn new(db: &Database) -> Self {
        Self {
            collection: db.collection(COLLECTION),
        }
    }

    /// Creates the indexes the writes need (listings and search are served by the in-memory
    /// read model, `crate::catalog`, so there are no sort indexes). Creating an existing index
    /// is a no-op, so every replica runs this at start.
    pub async fn ensure_indexes(&self) -> anyhow::Result<()> {
        let unique = IndexOptions::builder().unique(true).build();
        let indexes = [
            IndexModel::builder()
                .keys(doc! {"sku": 1})
                .options(unique)
                .build(),
            // The relay looks for documents with pending events.
            IndexModel::builder()
                .keys(doc! {messaging::mongo::PENDING_FLAG: 1})
                .build(),
        ];
        self.collection
            .create_indexes(indexes)
            .await
            .context("creating the products indexes")?;
        Ok(())
    }

    /// Inserts a new product; `Ok(false)` when its SKU is taken (the unique index decides, so
    /// two concurrent creations cannot both win).
    pub async fn insert(&self, product: &ProductDoc) -> anyhow::Result<bool> {
        let mut product = product.clone();
        product.outbox_pending = !product.pending_events.is_empty();
        match self.collection.insert_one(&product).await {
            Ok(_) => Ok(true),
            Err(error) if super::is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(anyhow::Error::new(error).context("inserting a product")),
        }
    }

    pub async fn get(&self, id: &Uuid) -> anyhow::Result<Option<ProductDoc>> {
        self.collection
            .find_one(doc! {"_id": id.to_string()})
            .await
            .context("reading a product")
    }

    /// Commits `change`, decided on the product as read at `before_version` and leaving it as
    /// `after`, together with its `event`, provided the product is still active and at that
    /// version; `None` if another write came first (or the product was withdrawn).
    pub async fn commit_change(
        &self,
        before_version: i64,
        after: &ProductDoc,
        change: &ProductChange,
        event: Document,
    ) -> anyhow::Result<Option<ProductDoc>> {
        let (extra_filter, update) = change.documents(after)?;
        let mut filter = doc! {"active": true};
        filter.extend(extra_filter);
        let update = with_event(update, after, event);
        self.update_at_version(&after.uuid()?, before_version, filter, update)
            .await
    }

    /// Applies `update` if the product is still at `version` (and matches `extra_filter`);
    /// returns the product after the update, or `None` if someone else changed it first (or it
    /// is gone). One `findOneAndUpdate`: the filter and the change apply atomically, so a
    /// change decided on the product as read at `version` is applied to exactly that product.
    pub async fn update_at_version(
        &self,
        id: &Uuid,
        version: i64,
        extra_filter: Document,
        update: Document,
    ) -> anyhow::Result<Option<ProductDoc>> {
        let mut filter = doc! {"_id": id.to_string(), "version": version};
        filter.extend(extra_filter);
        self.collection
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After)
            .await
            .context("updating a product")
    }
}

/// A change to an existing product as it is written: the fields it touches and what the
/// database must still hold for it to apply. [`Products::commit_change`] adds the version, the
/// timestamp and the event.
#[derive(Debug, Clone, PartialEq)]
pub enum ProductChange {
    /// The catalog fields an admin edits (name, translations, description, category, tags,
    /// price, specs, images), set to the product's after the change. Unchanged fields are set
    /// to what they are; the version guard makes that safe.
    CatalogFields,
    /// Withdrawn from the catalog (`active: false`); the document stays, orders refer to it.
    Withdrawal,
    /// `delta` units of available stock, with the adjustment logged (the most recent
    /// `ADJUSTMENT_LOG_LEN`).
    StockAdjustment(Adjustment),
}

impl ProductChange {
    /// The filter beyond id and version, and the update's own operators, of this change to a
    /// product that becomes `after`.
    pub fn documents(&self, after: &ProductDoc) -> anyhow::Result<(Document, Document)> {
        Ok(match self {
            Self::CatalogFields => (
                Document::new(),
                doc! {"$set": {
                    "name": &after.name.text,
                    "translations": bson_of("translations", &after.name.translations)?,
                    "description": &after.description,
                    "category": &after.category,
                    "tags": &after.tags,
                    "price": bson_of("price", &after.price)?,
                    "specs": bson_of("specs", &after.specs)?,
                    "images": bson_of("images", &after.images)?,
                }},
            ),
            Self::Withdrawal => (Document::new(), doc! {"$set": {"active": false}}),
            Self::StockAdjustment(adjustment) => (
                // The version makes the update exact; the stock condition states the
                // invariant in the database too, whatever the caller computed.
                doc! {"stock.available": {"$gte": -adjustment.delta}},
                doc! {
                    "$inc": {"stock.available": adjustment.delta, "adjusted_total": adjustment.delta},
                    "$push": {"adjustments": {
                        "$each": [bson_of("adjustment", adjustment)?],
                        "$slice": -ADJUSTMENT_LOG_LEN,
                    }},
                },
            ),
        })
    }
}

fn bson_of<T: Serialize>(name: &str, value: &T) -> anyhow::Result<bson::Bson> {
    bson::to_bson(value).with_context(|| format!("storing the product's {name}"))
}

/// Completes `update` (the change's own operators) with the new version and timestamp of
/// `after` and the change's `event`, so the change and its event commit in one update.
pub fn with_event(mut update: Document, after: &ProductDoc, event: Document) -> Document {
    let stamp = doc! {"version": after.version, "updated_at": after.updated_at};
    match update.get_document_mut("$set") {
        Ok(set) => set.extend(stamp),
        Err(_) => {
            update.insert("$set", stamp);
        }
    }
    messaging::mongo::with_pending_event(update, event)
}

/// `before` as the next version: what a change starts from.
pub fn next_version(before: &ProductDoc) -> ProductDoc {
    let mut after = before.clone();
    after.version += 1;
    after.updated_at = bson::DateTime::now();
    after.pending_events.clear();
    after
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A product as stored, for tests of code that reads or changes one.
    pub(crate) fn sample_product() -> ProductDoc {
        let now = bson::DateTime::now();
        ProductDoc {
            id: Uuid::nil().to_string(),
            sku: "S".into(),
            name: Naming {
                text: "Kettle".into(),
                translations: Translations::from([(
                    "zh-CN".to_owned(),
                    contracts::product::Translation {
                        name: "水壶".into(),
                        description: String::new(),
                    },
                )]),
            },
            description: String::new(),
            category: "kitchen".into(),
            tags: vec![],
            price: Money {
                amount: 1,
                currency: "EUR".into(),
            },
            specs: serde_json::json!({}),
            images: vec![],
            stock: StockDoc {
                available: 1,
                reserved: 0,
            },
            sold: 0,
            initial_stock: 1,
            adjusted_total: 0,
            adjustments: vec![],
            reservations: Default::default(),
            restocked: Default::default(),
            active: true,
            version: 1,
            created_at: now,
            updated_at: now,
            pending_events: vec![],
            outbox_pending: false,
        }
    }

    #[test]
    fn the_name_and_its_translations_are_stored_as_two_top_level_fields() -> anyhow::Result<()> {
        let product = sample_product();
        let now = product.created_at;
        let stored = bson::to_document(&product)?;
        assert_eq!(stored.get_str("name")?, "Kettle");
        assert_eq!(
            stored
                .get_document("translations")?
                .get_document("zh-CN")?
                .get_str("name")?,
            "水壶"
        );
        let back: ProductDoc = bson::from_document(stored)?;
        assert_eq!(back.name.text, "Kettle");
        assert_eq!(back.created_at, now);
        assert_eq!(back.snapshot()?.translations.len(), 1);
        // Documents written before translations existed read as having none.
        let mut old = bson::to_document(&product)?;
        old.remove("translations");
        let old: ProductDoc = bson::from_document(old)?;
        assert!(old.name.translations.is_empty());
        Ok(())
    }

    #[test]
    fn a_stock_adjustment_keeps_available_stock_at_zero_or_above_in_its_filter()
    -> anyhow::Result<()> {
        let after = next_version(&sample_product());
        let adjustment = Adjustment {
            delta: -3,
            reason: "damaged".into(),
            at: after.updated_at,
            by: Uuid::nil().to_string(),
        };
        let (filter, update) = ProductChange::StockAdjustment(adjustment).documents(&after)?;
        assert_eq!(filter, doc! {"stock.available": {"$gte": 3_i64}});
        let inc = update.get_document("$inc")?;
        assert_eq!(inc.get_i64("stock.available")?, -3);
        assert_eq!(inc.get_i64("adjusted_total")?, -3);
        let pushed = update.get_document("$push")?.get_document("adjustments")?;
        assert_eq!(pushed.get_i32("$slice")?, -ADJUSTMENT_LOG_LEN);
        Ok(())
    }

    #[test]
    fn a_catalog_change_sets_every_edited_field_and_nothing_of_the_stock() -> anyhow::Result<()> {
        let mut after = next_version(&sample_product());
        after.name.text = "Kettle 2".into();
        let (filter, update) = ProductChange::CatalogFields.documents(&after)?;
        assert!(filter.is_empty());
        let set = update.get_document("$set")?;
        let mut fields: Vec<&str> = set.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "category",
                "description",
                "images",
                "name",
                "price",
                "specs",
                "tags",
                "translations"
            ]
        );
        assert_eq!(set.get_str("name")?, "Kettle 2");
        assert_eq!(update.len(), 1, "{update}");
        Ok(())
    }

    #[test]
    fn every_change_commits_with_its_version_timestamp_and_event() -> anyhow::Result<()> {
        let after = next_version(&sample_product());
        let (_, update) = ProductChange::Withdrawal.documents(&after)?;
        let update = with_event(update, &after, doc! {"id": "e-1"});
        let set = update.get_document("$set")?;
        assert!(!set.get_bool("active")?);
        assert_eq!(set.get_i64("version")?, 2);
        assert_eq!(set.get_datetime("updated_at")?, &after.updated_at);
        Ok(())
    }
}
