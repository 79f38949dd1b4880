//! The listing orders the read model keeps (issue 13): the slots of every category, and of the
//! whole catalog, sorted in each order a listing without text can ask for — by id (newest, read
//! backwards), by price then id (cheapest; most expensive is the same list read backwards), and
//! by name then id in each answer language (the base name, then each of
//! [`language::SUPPORTED`]). These are exactly the orders `super::compare` puts hits in, with
//! the id tie-break the cursors carry, so a category listing's page is found by a binary search
//! for the cursor and a walk of at most `limit + 1` products (more only when `in_stock` skips
//! products that are out of stock), instead of collecting and ordering the whole category for
//! every page.
//!
//! Each order is a sorted `Vec<u32>` of slots: 4 bytes per product per order, 40 per product in
//! all (five orders, in its category and in the catalog), and cheap to walk. A change that moves
//! a product (a new product, a deletion, a change of category, price or name) costs a binary
//! search and a `memmove` of the tail in each of the ten lists; a stock change, the most common
//! change, moves nothing and costs nothing here.
//!
//! The initial load does not keep them: inserting 100,000 products one by one into sorted
//! vectors costs a `memmove` of half the catalog each, so the orders are built once, with one
//! sort per list, when the load is complete ([`super::Catalog::mark_loaded`]), and kept from then
//! on. Until then listings take the unordered path (`State::list_from_kept_counts`), which gives
//! the same pages.

use std::cmp::Ordering;

use uuid::Uuid;

use crate::domain::language;

/// The base name and one per supported language.
pub(super) const NAME_ORDERS: usize = language::SUPPORTED.len() + 1;

/// Which kept order a listing reads, and in which direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    Id,
    Price,
    /// By the name in the language of this index into [`name_languages`].
    Name(usize),
}

/// The language of each name order: `None` (the base name) first.
pub(super) fn name_languages() -> [Option<&'static str>; NAME_ORDERS] {
    let mut languages = [None; NAME_ORDERS];
    for (at, language) in language::SUPPORTED.iter().enumerate() {
        languages[at + 1] = Some(*language);
    }
    languages
}

/// The name order for an answer in `lang`, if one is kept.
pub(super) fn name_order(lang: Option<&str>) -> Option<Order> {
    name_languages()
        .iter()
        .position(|kept| *kept == lang)
        .map(Order::Name)
}

/// What the orders compare, by slot: the read model's rows and product views.
pub(super) trait SortKeys {
    fn id(&self, slot: u32) -> Uuid;
    fn amount(&self, slot: u32) -> i64;
    fn name(&self, slot: u32, lang: Option<&str>) -> &str;
}

/// The slots of one group of products (a category, or the catalog) in every kept order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct GroupOrders {
    by_id: Vec<u32>,
    by_price: Vec<u32>,
    by_name: [Vec<u32>; NAME_ORDERS],
}

impl GroupOrders {
    /// The slots in `order`, ascending.
    pub(super) fn slots(&self, order: Order) -> &[u32] {
        match order {
            Order::Id => &self.by_id,
            Order::Price => &self.by_price,
            Order::Name(at) => self.by_name.get(at).map_or(&[], Vec::as_slice),
        }
    }

    fn lists(&mut self) -> impl Iterator<Item = (Order, &mut Vec<u32>)> {
        [
            (Order::Id, &mut self.by_id),
            (Order::Price, &mut self.by_price),
        ]
        .into_iter()
        .chain(
            self.by_name
                .iter_mut()
                .enumerate()
                .map(|(at, list)| (Order::Name(at), list)),
        )
    }

    fn insert(&mut self, slot: u32, keys: &impl SortKeys) {
        for (order, list) in self.lists() {
            let at = list.partition_point(|&held| compare(order, held, slot, keys).is_lt());
            list.insert(at, slot);
        }
    }

    fn remove(&mut self, slot: u32, keys: &impl SortKeys) {
        for (order, list) in self.lists() {
            let at = list.partition_point(|&held| compare(order, held, slot, keys).is_lt());
            if list.get(at) == Some(&slot) {
                list.remove(at);
            } else if let Some(at) = list.iter().position(|&held| held == slot) {
                // Only if the keys changed without the slot being taken out first (a bug);
                // the linear search keeps the lists free of stale slots even then.
                tracing::warn!(slot, ?order, "a kept listing order was out of step");
                list.remove(at);
            }
        }
    }

    fn sort(&mut self, keys: &impl SortKeys) {
        for (order, list) in self.lists() {
            list.sort_unstable_by(|&a, &b| compare(order, a, b, keys));
            // Built by pushing: up to twice the room needed, ten lists per product.
            list.shrink_to_fit();
        }
    }
}

/// The kept orders of every category (by category number) and of the whole catalog.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Orders {
    catalog: GroupOrders,
    categories: Vec<GroupOrders>,
}

impl Orders {
    /// The orders of `live` (slot, category number) pairs, one sort per list.
    pub(super) fn build(live: impl Iterator<Item = (u32, u32)>, keys: &impl SortKeys) -> Self {
        let mut orders = Self::default();
        for (slot, category) in live {
            orders.catalog.lists().for_each(|(_, list)| list.push(slot));
            orders
                .category_mut(category)
                .lists()
                .for_each(|(_, list)| list.push(slot));
        }
        orders.catalog.sort(keys);
        for group in &mut orders.categories {
            group.sort(keys);
        }
        orders
    }

    fn category_mut(&mut self, category: u32) -> &mut GroupOrders {
        let at = category as usize;
        if self.categories.len() <= at {
            self.categories.resize_with(at + 1, GroupOrders::default);
        }
        // Just resized to hold `at`.
        &mut self.categories[at]
    }

    /// Adds `slot`, whose keys `keys` now gives, to the catalog's and its category's orders.
    pub(super) fn insert(&mut self, slot: u32, category: u32, keys: &impl SortKeys) {
        self.catalog.insert(slot, keys);
        self.category_mut(category).insert(slot, keys);
    }

    /// Takes `slot` out; `keys` must still give the keys it was inserted with.
    pub(super) fn remove(&mut self, slot: u32, category: u32, keys: &impl SortKeys) {
        self.catalog.remove(slot, keys);
        if let Some(group) = self.categories.get_mut(category as usize) {
            group.remove(slot, keys);
        }
    }

    pub(super) fn catalog(&self) -> &GroupOrders {
        &self.catalog
    }

    pub(super) fn category(&self, category: u32) -> Option<&GroupOrders> {
        self.categories.get(category as usize)
    }

    /// Slots held over all lists (for the memory figures of the measurement test).
    #[cfg(test)]
    pub(super) fn slots_held(&self) -> usize {
        std::iter::once(&self.catalog)
            .chain(&self.categories)
            .map(|group| {
                group.by_id.len()
                    + group.by_price.len()
                    + group.by_name.iter().map(Vec::len).sum::<usize>()
            })
            .sum()
    }
}

/// The ascending order of `order`, the id breaking ties (as `super::compare` does).
fn compare(order: Order, a: u32, b: u32, keys: &impl SortKeys) -> Ordering {
    let key = match order {
        Order::Id => Ordering::Equal,
        Order::Price => keys.amount(a).cmp(&keys.amount(b)),
        Order::Name(at) => {
            let lang = name_languages().get(at).copied().flatten();
            keys.name(a, lang).cmp(keys.name(b, lang))
        }
    };
    key.then_with(|| keys.id(a).cmp(&keys.id(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_language_and_the_base_name_has_an_order() {
        assert_eq!(name_order(None), Some(Order::Name(0)));
        for language in language::SUPPORTED {
            assert!(name_order(Some(language)).is_some(), "{language}");
        }
        assert_eq!(name_order(Some("fr")), None);
    }
}
