//! The catalog's write path: an admin's new products, changes, withdrawals and stock
//! adjustments, between the API (which reads and checks the request) and the store (which
//! knows the document and writes it).
//!
//! Every write to an existing product reads the product, computes the state after the change
//! and its event, and commits both with one `findOneAndUpdate` guarded by the version it read
//! ([`Products::commit_change`]). The event therefore carries exactly the committed snapshot.
//! A change to the catalog fields carries the client's `version`: stale, or overtaken by
//! another write before it commits, it is refused ([`WriteError::Stale`]). A withdrawal or a
//! stock adjustment has no version of its own, so one that loses a race to another writer of
//! the product (an order's reservation, say) is decided again on the product as it is then, a
//! bounded number of times (`messaging::mongo::ConflictRetry`), then refused as busy.
//!
//! A committed write is applied to this replica's read model ([`Catalog`]) before the call
//! returns, so the admin's next read (and search) shows it; other replicas get it from
//! `product.events`.

use contracts::EventData;
use contracts::product::{
    Money, ProductCreated, ProductDeleted, ProductImage, ProductUpdated, Translations,
};
use contracts::topics::Topic;
use messaging::mongo::{ConflictRetry, RelayWake};
use mongodb::bson;
use serde_json::Value;
use uuid::Uuid;
use web::FieldError;

use super::Catalog;
use crate::domain::stock;
use crate::events::pending_event;
use crate::store::products::{
    self, Adjustment, Naming, ProductChange, ProductDoc, Products, StockDoc,
};

/// Why a write was not made.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No such product, or it was withdrawn.
    #[error("no such product")]
    NotFound,
    #[error("a product with this SKU exists already")]
    SkuTaken,
    /// The product is no longer at the version the change was decided on.
    #[error("the product changed since it was read (it is at version {current_version})")]
    Stale { current_version: i64 },
    /// The product kept changing under concurrent writes.
    #[error("the product is changing too often right now")]
    Busy,
    /// The change would break a rule of the product as it is (stock below zero).
    #[error("the change is not allowed")]
    Refused(Vec<FieldError>),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A new product, its fields already checked (`domain::validation`).
#[derive(Debug, Clone)]
pub struct ProductDraft {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub translations: Translations,
    pub category: String,
    pub tags: Vec<String>,
    pub price: Money,
    pub specs: Value,
    pub images: Vec<ProductImage>,
    pub initial_stock: i64,
}

/// Changes to the catalog fields of a product, each already checked; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct CatalogEdits {
    pub name: Option<String>,
    pub translations: Option<Translations>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub tags: Option<Vec<String>>,
    pub price: Option<Money>,
    pub specs: Option<Value>,
    pub images: Option<Vec<ProductImage>>,
}

impl CatalogEdits {
    /// `product` with these edits made.
    fn apply_to(self, product: &mut ProductDoc) {
        replace(&mut product.name.text, self.name);
        replace(&mut product.name.translations, self.translations);
        replace(&mut product.description, self.description);
        replace(&mut product.category, self.category);
        replace(&mut product.tags, self.tags);
        replace(&mut product.price, self.price);
        replace(&mut product.specs, self.specs);
        replace(&mut product.images, self.images);
    }
}

fn replace<T>(field: &mut T, edit: Option<T>) {
    if let Some(value) = edit {
        *field = value;
    }
}

/// A write to an existing product, decided from the product as read.
struct Decided<T> {
    /// The product after the change (next version).
    after: ProductDoc,
    event: T,
    change: ProductChange,
}

/// The catalog's writes, with what they need: the products collection, the topics their
/// events go to, the relay to wake and this replica's read model.
#[derive(Clone)]
pub struct CatalogWrites {
    pub products: Products,
    pub topics: Topic,
    pub catalog: Catalog,
    /// Names each written product to the outbox relay, so its event leaves at once.
    pub relay_wake: RelayWake,
}

impl std::fmt::Debug for CatalogWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogWrites").finish_non_exhaustive()
    }
}

impl CatalogWrites {
    /// Adds `draft` as a new active product with its `product.created` event.
    pub async fn create(&self, draft: ProductDraft) -> Result<ProductDoc, WriteError> {
        let _writing = self.catalog.writing();
        let id = Uuid::now_v7();
        tracing::Span::current().record("product_id", tracing::field::display(id));
        let now = bson::DateTime::now();
        let mut product = ProductDoc {
            id: id.to_string(),
            sku: draft.sku,
            name: Naming {
                text: draft.name,
                translations: draft.translations,
            },
            description: draft.description,
            category: draft.category,
            tags: draft.tags,
            price: draft.price,
            specs: draft.specs,
            images: draft.images,
            stock: StockDoc {
                available: draft.initial_stock,
                reserved: 0,
            },
            sold: 0,
            initial_stock: draft.initial_stock,
            adjusted_total: 0,
            adjustments: Vec::new(),
            reservations: Default::default(),
            restocked: Default::default(),
            active: true,
            version: 1,
            created_at: now,
            updated_at: now,
            pending_events: Vec::new(),
            outbox_pending: false,
        };
        let event = ProductCreated(product.snapshot()?);
        product.pending_events = vec![pending_event(&self.topics, id, event)?];
        if !self.products.insert(&product).await? {
            return Err(WriteError::SkuTaken);
        }
        self.relay_wake.written(id.to_string());
        self.show_own_write(&product).await;
        Ok(product)
    }

    /// Makes `edits` to product `id`, provided it is still at `version`, with its
    /// `product.updated` event.
    pub async fn update(
        &self,
        id: &Uuid,
        version: i64,
        edits: CatalogEdits,
    ) -> Result<ProductDoc, WriteError> {
        let _writing = self.catalog.writing();
        let before = self.current(id).await?;
        if before.version != version {
            return Err(WriteError::Stale {
                current_version: before.version,
            });
        }
        let mut after = products::next_version(&before);
        edits.apply_to(&mut after);
        let decided = Decided {
            event: ProductUpdated(after.snapshot()?),
            after,
            change: ProductChange::CatalogFields,
        };
        match self.commit(before.version, decided).await? {
            Some(committed) => Ok(committed),
            // Another write came between the read and the update: the client's version is
            // stale now (or the product was withdrawn: not found).
            None => Err(WriteError::Stale {
                current_version: self.current(id).await?.version,
            }),
        }
    }

    /// Withdraws product `id` with its `product.deleted` event.
    pub async fn withdraw(&self, id: &Uuid) -> Result<(), WriteError> {
        let _writing = self.catalog.writing();
        self.change_with_retry(id, |before| {
            let mut after = products::next_version(before);
            after.active = false;
            Ok(Decided {
                event: ProductDeleted(after.snapshot()?),
                after,
                change: ProductChange::Withdrawal,
            })
        })
        .await?;
        Ok(())
    }

    /// Adds `delta` units of available stock to product `id` (removes them when negative,
    /// never below zero), logged with `reason` and the admin `by`, with its `product.updated`
    /// event.
    pub async fn adjust_stock(
        &self,
        id: &Uuid,
        delta: i64,
        reason: &str,
        by: Uuid,
    ) -> Result<ProductDoc, WriteError> {
        let _writing = self.catalog.writing();
        self.change_with_retry(id, |before| {
            let available = stock::apply(before.stock.available, delta)
                .map_err(|error| WriteError::Refused(vec![error]))?;
            let mut after = products::next_version(before);
            after.stock.available = available;
            after.adjusted_total += delta;
            let adjustment = Adjustment {
                delta,
                reason: reason.to_owned(),
                at: after.updated_at,
                by: by.to_string(),
            };
            Ok(Decided {
                event: ProductUpdated(after.snapshot()?),
                after,
                change: ProductChange::StockAdjustment(adjustment),
            })
        })
        .await
    }

    /// The active product, or [`WriteError::NotFound`].
    async fn current(&self, id: &Uuid) -> Result<ProductDoc, WriteError> {
        self.products
            .get(id)
            .await?
            .filter(|product| product.active)
            .ok_or(WriteError::NotFound)
    }

    /// Commits `decided` (decided on a read at `before_version`) with its event; `None` if
    /// another write came first.
    async fn commit<T: EventData>(
        &self,
        before_version: i64,
        decided: Decided<T>,
    ) -> Result<Option<ProductDoc>, WriteError> {
        let Decided {
            after,
            event,
            change,
        } = decided;
        let id = after.uuid()?;
        let event = pending_event(&self.topics, id, event)?.to_document()?;
        let committed = self
            .products
            .commit_change(before_version, &after, &change, event)
            .await?;
        if let Some(committed) = &committed {
            self.relay_wake.written(id.to_string());
            self.show_own_write(committed).await;
        }
        Ok(committed)
    }

    /// Reads active product `id`, lets `decide` compute the change (or refuse it), and
    /// commits it; a change that lost a race is decided again on a fresh read, a bounded
    /// number of times, then [`WriteError::Busy`].
    async fn change_with_retry<T: EventData>(
        &self,
        id: &Uuid,
        decide: impl Fn(&ProductDoc) -> Result<Decided<T>, WriteError>,
    ) -> Result<ProductDoc, WriteError> {
        let mut retry = ConflictRetry::new();
        loop {
            let before = self.current(id).await?;
            let decided = decide(&before)?;
            if let Some(committed) = self.commit(before.version, decided).await? {
                return Ok(committed);
            }
            if !retry.again().await {
                tracing::warn!(
                    conflicts = retry.conflicts(),
                    "the product kept changing; giving up"
                );
                return Err(WriteError::Busy);
            }
        }
    }

    /// Puts a committed write into this replica's read model before the answer goes out, so
    /// the admin's next read (and search) shows it. A failure here is logged, not answered:
    /// the write is committed, and its event brings it to the model anyway.
    async fn show_own_write(&self, product: &ProductDoc) {
        let applied = match product.snapshot() {
            Ok(snapshot) => self.catalog.apply_now(snapshot).await,
            Err(error) => Err(error),
        };
        if let Err(error) = applied {
            tracing::error!(
                error = format!("{error:#}"),
                "cannot apply an own write to the read model"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::products::tests::sample_product;

    #[test]
    fn edits_change_only_the_fields_they_name() {
        let before = sample_product();
        let mut edited = before.clone();
        CatalogEdits {
            name: Some("Kettle 2".into()),
            price: Some(Money {
                amount: 3499,
                currency: "EUR".into(),
            }),
            ..CatalogEdits::default()
        }
        .apply_to(&mut edited);
        assert_eq!(edited.name.text, "Kettle 2");
        assert_eq!(edited.price.amount, 3499);
        assert_eq!(edited.name.translations, before.name.translations);
        assert_eq!(edited.description, before.description);
        assert_eq!(edited.category, before.category);
        assert_eq!(edited.tags, before.tags);
        assert_eq!(edited.specs, before.specs);
        assert_eq!(edited.stock, before.stock);
        assert_eq!(edited.version, before.version);
    }

    #[test]
    fn no_edits_leave_the_product_as_it_was() -> anyhow::Result<()> {
        let before = sample_product();
        let mut edited = before.clone();
        CatalogEdits::default().apply_to(&mut edited);
        assert_eq!(bson::to_document(&edited)?, bson::to_document(&before)?);
        Ok(())
    }
}
