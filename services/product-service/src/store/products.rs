//! The `products` collection: one document per product, holding its catalog data, stock,
//! recent stock adjustments and the events not yet published (the single-document outbox).

use std::collections::BTreeMap;

use anyhow::Context as _;
use contracts::product::{Money, ProductImage, ProductSnapshot, StockLevels};
use futures::TryStreamExt as _;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::listing::{Cursor, Sort, SortKey};
use crate::events::outbox::PendingEvent;

pub const COLLECTION: &str = "products";

/// A product as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductDoc {
    /// The product id (UUID v7 as a string, so the id order is the creation order).
    #[serde(rename = "_id")]
    pub id: String,
    pub sku: String,
    pub name: String,
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
    /// Events of committed changes the relay has not published yet.
    #[serde(default)]
    pub pending_events: Vec<PendingEvent>,
    /// Whether `pending_events` holds anything (`messaging::mongo::PENDING_FLAG`).
    #[serde(default)]
    pub outbox_pending: bool,
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
            name: self.name.clone(),
            description: self.description.clone(),
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

/// What `GET /api/products` asks for, already validated.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Escaped, literal regular expression (see `domain::search`).
    pub text_pattern: Option<String>,
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    pub sort: Sort,
    pub after: Option<Cursor>,
    pub limit: i64,
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

    /// Creates the indexes the queries need; creating an existing index is a no-op, so every
    /// replica runs this at start (and a restart against the same database works).
    pub async fn ensure_indexes(&self) -> anyhow::Result<()> {
        let unique = IndexOptions::builder().unique(true).build();
        let indexes = [
            IndexModel::builder()
                .keys(doc! {"sku": 1})
                .options(unique)
                .build(),
            IndexModel::builder()
                .keys(doc! {"price.amount": 1, "_id": 1})
                .build(),
            IndexModel::builder()
                .keys(doc! {"name": 1, "_id": 1})
                .build(),
            IndexModel::builder()
                .keys(doc! {"category": 1, "price.amount": 1})
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

    /// One page of active products (plus one more, to tell whether another page exists).
    pub async fn list(&self, query: &ListQuery) -> anyhow::Result<Vec<ProductDoc>> {
        let (filter, sort) = list_filter(query);
        self.collection
            .find(filter)
            .sort(sort)
            .limit(query.limit + 1)
            .projection(doc! {"pending_events": 0, "adjustments": 0, "reservations": 0})
            .await
            .context("listing products")?
            .try_collect()
            .await
            .context("reading the product list")
    }
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

/// The sort key of `product` under `sort`, for the next page's cursor.
pub fn sort_key(product: &ProductDoc, sort: Sort) -> Option<SortKey> {
    match sort {
        Sort::Newest => None,
        Sort::Price | Sort::PriceDesc => Some(SortKey::Amount(product.price.amount)),
        Sort::Name => Some(SortKey::Text(product.name.clone())),
    }
}

/// The MongoDB filter and sort of a listing. Keyset pagination: after a cursor, the next page
/// holds the items strictly after `(key, id)` in the sort order.
pub fn list_filter(query: &ListQuery) -> (Document, Document) {
    let mut clauses = vec![doc! {"active": true}];
    if let Some(pattern) = &query.text_pattern {
        let regex = doc! {"$regex": pattern, "$options": "i"};
        clauses.push(doc! {"$or": [
            {"name": regex.clone()},
            {"description": regex.clone()},
            {"tags": regex},
        ]});
    }
    if let Some(category) = &query.category {
        clauses.push(doc! {"category": category});
    }
    if let Some(min) = query.min_price {
        clauses.push(doc! {"price.amount": {"$gte": min}});
    }
    if let Some(max) = query.max_price {
        clauses.push(doc! {"price.amount": {"$lte": max}});
    }
    if query.in_stock {
        clauses.push(doc! {"stock.available": {"$gt": 0_i64}});
    }
    let (field, direction) = match query.sort {
        Sort::Newest => ("_id", -1),
        Sort::Price => ("price.amount", 1),
        Sort::PriceDesc => ("price.amount", -1),
        Sort::Name => ("name", 1),
    };
    let beyond = if query.sort.descending() {
        "$lt"
    } else {
        "$gt"
    };
    if let Some(cursor) = &query.after {
        let id = cursor.id.to_string();
        let key = match &cursor.key {
            Some(SortKey::Amount(amount)) => Some(Bson::Int64(*amount)),
            Some(SortKey::Text(text)) => Some(Bson::String(text.clone())),
            None => None,
        };
        clauses.push(match key {
            Some(key) if field != "_id" => doc! {"$or": [
                {field: {beyond: key.clone()}},
                {field: key, "_id": {beyond: &id}},
            ]},
            _ => doc! {"_id": {beyond: &id}},
        });
    }
    let sort = if field == "_id" {
        doc! {"_id": direction}
    } else {
        doc! {field: direction, "_id": direction}
    };
    (doc! {"$and": clauses}, sort)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sort: Sort) -> ListQuery {
        ListQuery {
            text_pattern: None,
            category: None,
            min_price: None,
            max_price: None,
            in_stock: false,
            sort,
            after: None,
            limit: 20,
        }
    }

    #[test]
    fn listing_only_shows_active_products_newest_first_by_default() {
        let (filter, sort) = list_filter(&query(Sort::Newest));
        assert_eq!(filter, doc! {"$and": [{"active": true}]});
        assert_eq!(sort, doc! {"_id": -1});
    }

    #[test]
    fn keyset_continues_after_the_cursor_with_the_id_as_tie_breaker() {
        let id = Uuid::nil();
        let mut q = query(Sort::PriceDesc);
        q.after = Some(Cursor {
            sort: Sort::PriceDesc,
            key: Some(SortKey::Amount(500)),
            id,
        });
        let (filter, sort) = list_filter(&q);
        assert_eq!(sort, doc! {"price.amount": -1, "_id": -1});
        let expected = doc! {"$or": [
            {"price.amount": {"$lt": 500_i64}},
            {"price.amount": 500_i64, "_id": {"$lt": id.to_string()}},
        ]};
        assert_eq!(
            filter
                .get_array("$and")
                .ok()
                .and_then(|a| a.last())
                .cloned(),
            Some(Bson::Document(expected))
        );
    }
}
