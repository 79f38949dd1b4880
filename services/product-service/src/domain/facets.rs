//! Facet counts shown beside a listing: categories, brands and price buckets.
//!
//! Each facet counts the products that pass every filter except its own (disjunctive
//! faceting), so a shopper who filtered on one brand still sees how many products the other
//! brands have. Prices are bucketed on fixed boundaries in minor units, whatever the currency
//! (the seeded catalog mixes a few; amounts are comparable enough for browsing).
//!
//! Two ways to reach the same numbers: [`FacetTally`] counts the products an answer considers,
//! one by one (any text, any filters); [`KeptCounts`] is kept up to date as products change
//! and answers a listing filtered on nothing but the category and stock without looking at a
//! product. At 100,000 products a category listing's facets count every category, so tallying
//! meant walking the whole catalog for every listing page; the kept counts make that O(number
//! of categories and brands). Each count is kept twice, over every product and over the ones
//! in stock, so a stock change (every reservation) is two O(1) updates per group.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

/// Bucket boundaries in minor units: under 10.00, 10-50, 50-100, 100-500, 500-1,000, 1,000+.
pub const PRICE_BOUNDARIES: [i64; 5] = [1_000, 5_000, 10_000, 50_000, 100_000];

/// How many facet values of one kind an answer lists (the most frequent).
pub const MAX_VALUES: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FacetValue {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PriceBucket {
    /// Inclusive lower bound in minor units.
    pub min: i64,
    /// Exclusive upper bound in minor units; absent for the last bucket.
    pub max: Option<i64>,
    pub count: u64,
}

/// The facets of one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Facets {
    pub category: Vec<FacetValue>,
    pub brand: Vec<FacetValue>,
    pub price: Vec<PriceBucket>,
}

/// Which filters one product passes.
#[derive(Debug, Clone, Copy)]
pub struct Passes {
    pub category: bool,
    pub brand: bool,
    pub price: bool,
    pub stock: bool,
}

impl Passes {
    pub fn all(self) -> bool {
        self.category && self.brand && self.price && self.stock
    }
}

/// Accumulates counts over the products a listing or search considered. Values are counted
/// by their number in the read model's tables of category and brand names (a listing counts
/// every product of the catalog: at 100,000 products, hashing and allocating a `String` per
/// product and facet was most of a category listing's time); [`FacetTally::finish`] turns them
/// into names.
#[derive(Debug)]
pub struct FacetTally {
    category: Vec<u64>,
    brand: Vec<u64>,
    price: [u64; BUCKETS],
}

impl FacetTally {
    /// A tally over `categories` category names and `brands` brand names.
    pub fn new(categories: usize, brands: usize) -> Self {
        Self {
            category: vec![0; categories],
            brand: vec![0; brands],
            price: [0; BUCKETS],
        }
    }

    /// Counts one product: each facet counts it if it passes every filter but that facet's own.
    pub fn add(&mut self, passes: Passes, category: u32, brand: Option<u32>, amount: i64) {
        if passes.brand
            && passes.price
            && passes.stock
            && let Some(count) = self.category.get_mut(category as usize)
        {
            *count += 1;
        }
        if let Some(brand) = brand
            && passes.category
            && passes.price
            && passes.stock
            && let Some(count) = self.brand.get_mut(brand as usize)
        {
            *count += 1;
        }
        if passes.category && passes.brand && passes.stock {
            self.price[bucket(amount)] += 1;
        }
    }

    /// The facets, with the names of the counted values (`categories[n]` is category `n`).
    pub fn finish<S: AsRef<str>>(self, categories: &[S], brands: &[S]) -> Facets {
        Facets {
            category: top(named(&self.category, categories)),
            brand: top(named(&self.brand, brands)),
            price: price_buckets(self.price),
        }
    }
}

/// Price buckets in the order of [`PRICE_BOUNDARIES`].
const BUCKETS: usize = PRICE_BOUNDARIES.len() + 1;

/// Which products a listing without text, brand or price filters is restricted to by its
/// category filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CategoryFilter {
    /// No category filter.
    Any,
    /// The category numbered so in the read model's table of names.
    Known(u32),
    /// A category no product has ever had: nothing passes the filter.
    Unknown,
}

/// One active product as [`KeptCounts`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub category: u32,
    pub brand: Option<u32>,
    pub amount: i64,
    pub in_stock: bool,
}

/// The facets of every listing filtered on nothing but the category and stock, kept up to date
/// as products are created, changed and deleted: the caller removes the product as it was
/// counted and adds it as it is now, so a change costs O(1) whatever the catalog's size.
///
/// It must agree with what [`FacetTally`] counts over the same products (the catalog's unit
/// test compares the two after random changes).
#[derive(Debug, Default)]
pub struct KeptCounts {
    catalog: GroupCounts,
    /// By category number.
    categories: Vec<GroupCounts>,
}

/// The counts over one group of products: a category, or the whole catalog. Within one
/// category every product passes the category filter, so the brand and price counts of the
/// group are those facets for a listing of that category.
#[derive(Debug, Default)]
struct GroupCounts {
    products: Twice,
    /// By brand number, brands with a product only (a category holds a few of all brands).
    brand: HashMap<u32, Twice>,
    price: [Twice; BUCKETS],
}

/// A count over every product of a group, and over those of them in stock.
#[derive(Debug, Default, Clone, Copy)]
struct Twice {
    every: u64,
    in_stock: u64,
}

impl Twice {
    fn add(&mut self, in_stock: bool) {
        self.every += 1;
        self.in_stock += u64::from(in_stock);
    }

    /// Saturating: a product is only removed as it was added, and a count that drifted below
    /// zero is better shown as 0 than wrapped (the comparison test catches any drift).
    fn remove(&mut self, in_stock: bool) {
        self.every = self.every.saturating_sub(1);
        self.in_stock = self.in_stock.saturating_sub(u64::from(in_stock));
    }

    fn get(self, in_stock_only: bool) -> u64 {
        if in_stock_only {
            self.in_stock
        } else {
            self.every
        }
    }
}

impl GroupCounts {
    fn add(&mut self, product: Counted) {
        self.products.add(product.in_stock);
        if let Some(brand) = product.brand {
            self.brand.entry(brand).or_default().add(product.in_stock);
        }
        self.price[bucket(product.amount)].add(product.in_stock);
    }

    fn remove(&mut self, product: Counted) {
        self.products.remove(product.in_stock);
        if let Some(brand) = product.brand
            && let Some(count) = self.brand.get_mut(&brand)
        {
            count.remove(product.in_stock);
            // A brand gone from the group leaves no entry behind to iterate or to hold memory.
            if count.every == 0 {
                self.brand.remove(&brand);
            }
        }
        self.price[bucket(product.amount)].remove(product.in_stock);
    }
}

impl KeptCounts {
    /// Counts an active product.
    pub fn add(&mut self, product: Counted) {
        self.catalog.add(product);
        let at = product.category as usize;
        if self.categories.len() <= at {
            self.categories.resize_with(at + 1, GroupCounts::default);
        }
        if let Some(group) = self.categories.get_mut(at) {
            group.add(product);
        }
    }

    /// Uncounts a product exactly as it was counted by [`Self::add`].
    pub fn remove(&mut self, product: Counted) {
        self.catalog.remove(product);
        if let Some(group) = self.categories.get_mut(product.category as usize) {
            group.remove(product);
        }
    }

    /// The products of a listing restricted to `category`, and to products in stock when
    /// `in_stock`: its total.
    pub fn products(&self, category: CategoryFilter, in_stock: bool) -> u64 {
        match category {
            CategoryFilter::Any => self.catalog.products.get(in_stock),
            CategoryFilter::Known(number) => self
                .categories
                .get(number as usize)
                .map_or(0, |group| group.products.get(in_stock)),
            CategoryFilter::Unknown => 0,
        }
    }

    /// The facets of a listing restricted to `category`, and to products in stock when
    /// `in_stock` (the same as [`FacetTally`] over such a listing, with no other filter).
    pub fn facets<S: AsRef<str>>(
        &self,
        category: CategoryFilter,
        in_stock: bool,
        categories: &[S],
        brands: &[S],
    ) -> Facets {
        // The category facet ignores the category filter: every category's own count.
        let category_facet = top(self
            .categories
            .iter()
            .zip(categories)
            .map(|(group, name)| (group.products.get(in_stock), name.as_ref())));
        let group = match category {
            CategoryFilter::Any => Some(&self.catalog),
            CategoryFilter::Known(number) => self.categories.get(number as usize),
            CategoryFilter::Unknown => None,
        };
        let Some(group) = group else {
            return Facets {
                category: category_facet,
                brand: Vec::new(),
                price: Vec::new(),
            };
        };
        Facets {
            category: category_facet,
            brand: top(group.brand.iter().filter_map(|(&brand, count)| {
                brands
                    .get(brand as usize)
                    .map(|name| (count.get(in_stock), name.as_ref()))
            })),
            price: price_buckets(group.price.map(|count| count.get(in_stock))),
        }
    }
}

fn price_buckets(counts: [u64; BUCKETS]) -> Vec<PriceBucket> {
    (0..BUCKETS)
        .filter(|&i| counts[i] > 0)
        .map(|i| PriceBucket {
            min: if i == 0 { 0 } else { PRICE_BOUNDARIES[i - 1] },
            max: PRICE_BOUNDARIES.get(i).copied(),
            count: counts[i],
        })
        .collect()
}

fn bucket(amount: i64) -> usize {
    PRICE_BOUNDARIES
        .iter()
        .position(|&boundary| amount < boundary)
        .unwrap_or(PRICE_BOUNDARIES.len())
}

/// Dense counts by number, with the name of each number.
fn named<'a, S: AsRef<str>>(
    counts: &'a [u64],
    names: &'a [S],
) -> impl Iterator<Item = (u64, &'a str)> {
    counts
        .iter()
        .zip(names)
        .map(|(&count, name)| (count, name.as_ref()))
}

/// The most frequent values first, then by value, at most [`MAX_VALUES`]; values counted
/// nowhere are left out. Names are distinct, so the order is the same whatever order the
/// counts come in (dense from a tally, a hash map's from kept counts).
///
/// Names are copied only for the values shown: a category holds hundreds of brands, and
/// allocating a `String` for each was most of a kept-counts listing's time.
fn top<'a>(counted: impl Iterator<Item = (u64, &'a str)>) -> Vec<FacetValue> {
    let mut values: Vec<(u64, &str)> = counted.filter(|(count, _)| *count > 0).collect();
    values.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    values.truncate(MAX_VALUES);
    values
        .into_iter()
        .map(|(count, name)| FacetValue {
            value: name.to_owned(),
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Passes = Passes {
        category: true,
        brand: true,
        price: true,
        stock: true,
    };

    #[test]
    fn each_facet_ignores_its_own_filter() {
        let (categories, brands) = (["audio", "kitchen"], ["Sony", "Xiaomi"]);
        let mut counter = FacetTally::new(categories.len(), brands.len());
        counter.add(ALL, 0, Some(0), 500);
        // Filtered out by brand only: still counted for the brand facet.
        counter.add(
            Passes {
                brand: false,
                ..ALL
            },
            0,
            Some(1),
            20_000,
        );
        // Out of stock: counted nowhere.
        counter.add(
            Passes {
                stock: false,
                ..ALL
            },
            0,
            Some(0),
            500,
        );
        let facets = counter.finish(&categories, &brands);
        assert_eq!(
            facets.category,
            vec![FacetValue {
                value: "audio".into(),
                count: 1
            }]
        );
        assert_eq!(facets.brand.len(), 2);
        assert_eq!(
            facets.price,
            vec![PriceBucket {
                min: 0,
                max: Some(1_000),
                count: 1
            }]
        );
    }

    #[test]
    fn buckets_cover_every_amount() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(999), 0);
        assert_eq!(bucket(1_000), 1);
        assert_eq!(bucket(99_999), 4);
        assert_eq!(bucket(100_000_000), 5);
    }
}
