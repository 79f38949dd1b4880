//! The catalog read model: every active product of the catalog in memory, with a full-text
//! index, in every replica. It serves `GET /api/products/{id}`, listings, search and suggest
//! without a database round trip; MongoDB stays the source of truth for writes.
//!
//! It is fed from the compacted `product.events` topic ([`feed`]), whose every record carries
//! the whole product: a replica reads the topic from the beginning at start (readiness stays
//! red until it has read up to the end it saw at start) and then follows it. A snapshot is
//! applied only when its `version` is newer than the one held for the product (deleted
//! products keep their version as a tombstone), so redelivered, reordered and coalesced
//! snapshots are harmless whoever wrote them (admin writes, stock adjustments, reservations).
//!
//! Own writes: the admin write path ([`writes`]) applies the committed snapshot here (and
//! commits the index) before it answers, so the admin sees their write at once, in search
//! too; the same snapshot arriving later through the topic is then ignored by version. Other
//! replicas see it within the feed's lag, exported as `catalog_read_model_lag_seconds`.
//!
//! Stock-only changes (reservations, adjustments) do not touch the index: only the indexed
//! texts are compared, and the product view is swapped.
//!
//! Listings and the filters and facets of a search read a compact row per product (category
//! and brand as numbers into tables of names, price, stock, id), laid out by slot in one
//! vector: a category listing considers every product of the catalog, and walking 100,000
//! scattered product views cost tens of milliseconds where the rows take a few. Only the
//! products of the answered page are looked up in full.

pub mod feed;
pub mod index;
pub mod text;
pub mod writes;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock};

use contracts::product::ProductSnapshot;
use uuid::Uuid;

use crate::domain::facets::{FacetTally, Facets, Passes};
use crate::domain::listing::{Cursor, Sort, SortKey};
use index::SearchIndex;

/// One active product as held in memory.
#[derive(Debug)]
pub struct Listed {
    pub product: ProductSnapshot,
    /// Its document number in the index.
    slot: u32,
    /// `specs.brand`, as given.
    brand: Option<String>,
}

impl Listed {
    pub fn brand(&self) -> Option<&str> {
        self.brand.as_deref()
    }

    /// The name in `lang`, or the base name.
    pub fn name_in(&self, lang: Option<&str>) -> &str {
        lang.and_then(|lang| self.product.translations.get(lang))
            .map_or(self.product.name.as_str(), |t| t.name.as_str())
    }
}

/// What a listing or search asks for, already validated.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub text: Option<String>,
    pub category: Option<String>,
    /// Lower-cased.
    pub brand: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    pub sort: Option<Sort>,
    pub after: Option<Cursor>,
    pub limit: usize,
    pub lang: Option<&'static str>,
}

/// One page of an answer.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Arc<Listed>>,
    pub next_cursor: Option<String>,
    /// Products matching the text and every filter.
    pub total: u64,
    pub facets: Facets,
}

#[derive(Default)]
struct State {
    products: HashMap<Uuid, Arc<Listed>>,
    /// The newest version seen of every product, deleted ones included.
    versions: HashMap<Uuid, i64>,
    slots: HashMap<Uuid, u32>,
    by_slot: Vec<Uuid>,
    /// What filters, facets and sorts read, by slot.
    rows: Vec<Row>,
    categories: Names,
    /// Brands as given (the facet shows them so)...
    brands: Names,
    /// ... and lower-cased (the filter ignores case).
    brand_keys: Names,
}

/// The part of a product that listings filter, count and sort on.
#[derive(Debug, Clone, Copy, Default)]
struct Row {
    /// An active product holds this slot.
    live: bool,
    id: Uuid,
    category: u32,
    brand: Option<u32>,
    brand_key: Option<u32>,
    amount: i64,
    available: i64,
}

/// A table of the distinct values of a field (categories, brands): each value gets a number,
/// kept while the process runs.
#[derive(Default)]
struct Names {
    names: Vec<String>,
    numbers: HashMap<String, u32>,
}

impl Names {
    fn number(&mut self, name: &str) -> anyhow::Result<u32> {
        if let Some(&number) = self.numbers.get(name) {
            return Ok(number);
        }
        let number = u32::try_from(self.names.len())?;
        self.names.push(name.to_owned());
        self.numbers.insert(name.to_owned(), number);
        Ok(number)
    }

    fn find(&self, name: &str) -> Option<u32> {
        self.numbers.get(name).copied()
    }
}

/// A product an answer may hold, with what its sort compares.
struct Hit {
    score: f64,
    slot: u32,
    id: Uuid,
    amount: i64,
    /// Looked up only when sorting by name.
    named: Option<Arc<Listed>>,
}

impl Hit {
    fn name_in(&self, lang: Option<&str>) -> &str {
        self.named
            .as_ref()
            .map_or("", |listed| listed.name_in(lang))
    }
}

/// The read model; cheap to clone (shared).
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    state: RwLock<State>,
    index: SearchIndex,
    loaded: AtomicBool,
}

impl Catalog {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                state: RwLock::new(State::default()),
                index: SearchIndex::new()?,
                loaded: AtomicBool::new(false),
            }),
        })
    }

    /// Whether the initial load from the topic is complete.
    pub fn is_loaded(&self) -> bool {
        self.inner.loaded.load(AtomicOrdering::Acquire)
    }

    pub(crate) fn mark_loaded(&self) {
        self.inner.loaded.store(true, AtomicOrdering::Release);
    }

    pub fn len(&self) -> usize {
        self.read().products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-changed in a way that
        // matters more than stopping to serve: keep serving what is there.
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The active product `id`.
    pub fn get(&self, id: &Uuid) -> Option<Arc<Listed>> {
        self.read().products.get(id).cloned()
    }

    /// Applies `product` if it is newer than what is held. Returns whether the index changed
    /// (then [`Self::commit`] makes it searchable). Never waits for an index commit.
    pub fn apply(&self, product: ProductSnapshot) -> anyhow::Result<bool> {
        let mut state = self.write();
        let id = product.id;
        if state
            .versions
            .get(&id)
            .is_some_and(|&held| held >= product.version)
        {
            return Ok(false);
        }
        state.versions.insert(id, product.version);
        let slot = match state.slots.get(&id) {
            Some(&slot) => slot,
            None => {
                let slot = u32::try_from(state.by_slot.len())?;
                state.slots.insert(id, slot);
                state.by_slot.push(id);
                slot
            }
        };
        if !product.active {
            if let Some(row) = state.rows.get_mut(slot as usize) {
                row.live = false;
            }
            return Ok(match state.products.remove(&id) {
                Some(_) => {
                    self.inner.index.remove(slot);
                    true
                }
                None => false,
            });
        }
        let reindex = state
            .products
            .get(&id)
            .is_none_or(|held| !same_text(&held.product, &product));
        if reindex {
            self.inner.index.upsert(slot, &product);
        }
        let brand = product
            .specs
            .get("brand")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let brand_key = brand.as_deref().map(str::to_lowercase);
        let row = Row {
            live: true,
            id,
            category: state.categories.number(&product.category)?,
            brand: brand
                .as_deref()
                .map(|b| state.brands.number(b))
                .transpose()?,
            brand_key: brand_key
                .as_deref()
                .map(|b| state.brand_keys.number(b))
                .transpose()?,
            amount: product.price.amount,
            available: product.stock.available,
        };
        let at = slot as usize;
        if state.rows.len() <= at {
            state.rows.resize(at + 1, Row::default());
        }
        state.rows[at] = row;
        let listed = Listed {
            brand,
            slot,
            product,
        };
        state.products.insert(id, Arc::new(listed));
        Ok(reindex)
    }

    /// Makes applied changes searchable. Blocking: call it off the async workers.
    pub fn commit(&self) -> anyhow::Result<()> {
        self.inner.index.commit()
    }

    /// Applies `product` and commits the index, off the async workers: what an admin write
    /// calls before answering, so the admin's next read and search show it. The commit runs
    /// even when the snapshot was already applied (the feed can bring it first), since the
    /// feed may not have committed it yet.
    pub async fn apply_now(&self, product: ProductSnapshot) -> anyhow::Result<()> {
        let catalog = self.clone();
        tokio::task::spawn_blocking(move || {
            catalog.apply(product)?;
            catalog.commit()
        })
        .await?
    }

    /// A listing or search: filters, facets, sort, and the page after `request.after`.
    pub fn search(&self, request: &Request) -> anyhow::Result<Page> {
        let matches = match request.text.as_deref() {
            Some(text) => match self.inner.index.search(text)? {
                Some(found) => Some(found),
                // Nothing searchable in the text: nothing matches.
                None => Some(Vec::new()),
            },
            None => None,
        };
        let state = self.read();
        // A filter value no product has matches nothing (but the other facets still count).
        let category = request
            .category
            .as_deref()
            .map(|c| state.categories.find(c));
        let brand = request.brand.as_deref().map(|b| state.brand_keys.find(b));
        let sort = request.sort.unwrap_or(Sort::Newest);
        let lang = request.lang;
        let mut tally = FacetTally::new(state.categories.names.len(), state.brands.names.len());
        let mut hits: Vec<Hit> = Vec::new();
        let mut consider = |score: f64, slot: u32, row: &Row| {
            let passes = Passes {
                category: category.is_none_or(|want| want == Some(row.category)),
                brand: brand.is_none_or(|want| want.is_some() && want == row.brand_key),
                price: request.min_price.is_none_or(|min| row.amount >= min)
                    && request.max_price.is_none_or(|max| row.amount <= max),
                stock: !request.in_stock || row.available > 0,
            };
            tally.add(passes, row.category, row.brand, row.amount);
            if passes.all() {
                hits.push(Hit {
                    score,
                    slot,
                    id: row.id,
                    amount: row.amount,
                    named: None,
                });
            }
        };
        match &matches {
            Some(found) => {
                for &(slot, score) in found {
                    if let Some(row) = state.rows.get(slot as usize)
                        && row.live
                    {
                        consider(f64::from(score), slot, row);
                    }
                }
            }
            None => {
                for (slot, row) in (0_u32..).zip(&state.rows) {
                    if row.live {
                        consider(0.0, slot, row);
                    }
                }
            }
        }
        let total = hits.len() as u64;
        let facets = tally.finish(&state.categories.names, &state.brands.names);
        if sort == Sort::Name {
            for hit in &mut hits {
                hit.named = state.products.get(&hit.id).cloned();
            }
        }
        let order = |a: &Hit, b: &Hit| compare(sort, lang, a, b);
        if let Some(after) = &request.after {
            hits.retain(|hit| beyond(sort, lang, hit, after));
        }
        let wanted = request.limit + 1;
        if hits.len() > wanted {
            hits.select_nth_unstable_by(wanted - 1, order);
            hits.truncate(wanted);
        }
        hits.sort_by(order);
        let next_cursor = if hits.len() > request.limit {
            hits.truncate(request.limit);
            hits.last().map(|hit| {
                Cursor {
                    sort,
                    key: match sort {
                        Sort::Relevance => Some(SortKey::Score(hit.score)),
                        Sort::Newest => None,
                        Sort::Price | Sort::PriceDesc => Some(SortKey::Amount(hit.amount)),
                        Sort::Name => Some(SortKey::Text(hit.name_in(lang).to_owned())),
                    },
                    id: hit.id,
                }
                .encode()
            })
        } else {
            None
        };
        let items = hits
            .into_iter()
            .filter_map(|hit| {
                hit.named.or_else(|| {
                    state
                        .by_slot
                        .get(hit.slot as usize)
                        .and_then(|id| state.products.get(id))
                        .cloned()
                })
            })
            .collect();
        Ok(Page {
            items,
            next_cursor,
            total,
            facets,
        })
    }

    /// Products whose name completes `text`, best first, at most `limit`.
    pub fn suggest(&self, text: &str, limit: usize) -> anyhow::Result<Vec<Arc<Listed>>> {
        let mut found = self.inner.index.complete(text)?;
        let wanted = limit.min(found.len());
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0));
        if wanted > 0 && found.len() > wanted {
            found.select_nth_unstable_by(wanted - 1, order);
            found.truncate(wanted);
        }
        found.sort_by(order);
        let state = self.read();
        Ok(found
            .into_iter()
            .filter_map(|(slot, _)| {
                let id = state.by_slot.get(slot as usize)?;
                state.products.get(id).filter(|l| l.slot == slot).cloned()
            })
            .collect())
    }

    /// Documents in the index: equals the number of active products once committed.
    pub fn indexed(&self) -> u64 {
        self.inner.index.documents()
    }
}

/// Whether two snapshots index the same text (then a stock change leaves the index alone).
fn same_text(a: &ProductSnapshot, b: &ProductSnapshot) -> bool {
    a.name == b.name
        && a.description == b.description
        && a.translations == b.translations
        && a.tags == b.tags
        && a.category == b.category
        && a.specs == b.specs
}

/// The order of `sort` (the id breaks ties; descending sorts run high to low on both).
fn compare(sort: Sort, lang: Option<&str>, a: &Hit, b: &Hit) -> Ordering {
    let ascending = match sort {
        Sort::Relevance => a.score.total_cmp(&b.score),
        Sort::Newest => Ordering::Equal,
        Sort::Price | Sort::PriceDesc => a.amount.cmp(&b.amount),
        Sort::Name => a.name_in(lang).cmp(b.name_in(lang)),
    }
    .then_with(|| a.id.cmp(&b.id));
    if sort.descending() {
        ascending.reverse()
    } else {
        ascending
    }
}

/// Whether `hit` comes strictly after the cursor's item in the order of `sort`.
fn beyond(sort: Sort, lang: Option<&str>, hit: &Hit, after: &Cursor) -> bool {
    let key = match (sort, &after.key) {
        (Sort::Relevance, Some(SortKey::Score(score))) => hit.score.total_cmp(score),
        (Sort::Price | Sort::PriceDesc, Some(SortKey::Amount(amount))) => hit.amount.cmp(amount),
        (Sort::Name, Some(SortKey::Text(name))) => hit.name_in(lang).cmp(name.as_str()),
        _ => Ordering::Equal,
    };
    let position = key.then_with(|| hit.id.cmp(&after.id));
    if sort.descending() {
        position == Ordering::Less
    } else {
        position == Ordering::Greater
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use contracts::product::{Money, StockLevels, Translation, Translations};

    use super::*;

    fn snapshot(id: u128, version: i64, name: &str, available: i64) -> ProductSnapshot {
        ProductSnapshot {
            id: Uuid::from_u128(id),
            sku: format!("SKU-{id}"),
            name: name.into(),
            description: String::new(),
            translations: Translations::from([(
                "zh-CN".to_owned(),
                Translation {
                    name: "蓝牙耳机".into(),
                    description: String::new(),
                },
            )]),
            category: "audio".into(),
            tags: vec![],
            price: Money {
                amount: 1_000 * i64::try_from(id).unwrap_or_default(),
                currency: "CNY".into(),
            },
            specs: serde_json::json!({"brand": "Sony"}),
            images: vec![],
            stock: StockLevels {
                available,
                reserved: 0,
                sold: 0,
            },
            active: true,
            version,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn request(text: Option<&str>) -> Request {
        Request {
            text: text.map(str::to_owned),
            limit: 10,
            ..Request::default()
        }
    }

    #[test]
    fn only_newer_versions_apply_and_deletions_stay_deleted() -> anyhow::Result<()> {
        let catalog = Catalog::new()?;
        assert!(catalog.apply(snapshot(1, 2, "Headphones", 3))?);
        assert!(!catalog.apply(snapshot(1, 1, "Old name", 3))?);
        assert!(!catalog.apply(snapshot(1, 2, "Same version", 3))?);
        // A stock-only change swaps the view but leaves the index alone.
        assert!(!catalog.apply(snapshot(1, 3, "Headphones", 0))?);
        assert_eq!(
            catalog
                .get(&Uuid::from_u128(1))
                .map(|l| l.product.stock.available),
            Some(0)
        );
        let mut deleted = snapshot(1, 4, "Headphones", 0);
        deleted.active = false;
        assert!(catalog.apply(deleted)?);
        assert!(!catalog.apply(snapshot(1, 3, "Headphones", 0))?);
        assert!(catalog.get(&Uuid::from_u128(1)).is_none());
        Ok(())
    }

    #[test]
    fn searches_rank_filter_facet_and_page() -> anyhow::Result<()> {
        let catalog = Catalog::new()?;
        for id in 1..=5 {
            catalog.apply(snapshot(id, 1, &format!("Headphones {id}"), id as i64 % 2))?;
        }
        catalog.apply(snapshot(9, 1, "Kettle", 1))?;
        catalog.commit()?;
        assert_eq!(catalog.indexed(), 6);
        let found = catalog.search(&request(Some("headphone")))?;
        assert_eq!(found.total, 5);
        let found = catalog.search(&request(Some("耳机")))?;
        assert_eq!(found.total, 6, "every product has the Chinese name");
        let mut in_stock = request(Some("headphones"));
        in_stock.in_stock = true;
        in_stock.sort = Some(Sort::PriceDesc);
        in_stock.limit = 2;
        let page = catalog.search(&in_stock)?;
        let ids: Vec<u128> = page.items.iter().map(|l| l.product.id.as_u128()).collect();
        assert_eq!(ids, [5, 3]);
        assert_eq!(page.total, 3);
        assert_eq!(page.facets.brand[0].count, 3);
        let token = page.next_cursor.unwrap_or_default();
        in_stock.after = Some(
            Cursor::decode(&token, Sort::PriceDesc)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?,
        );
        let rest = catalog.search(&in_stock)?;
        assert_eq!(rest.items.len(), 1);
        assert!(rest.next_cursor.is_none());
        assert!(catalog.search(&request(Some("?!😀")))?.items.is_empty());
        let suggested = catalog.suggest("kett", 5)?;
        assert_eq!(suggested.len(), 1);
        Ok(())
    }
}
