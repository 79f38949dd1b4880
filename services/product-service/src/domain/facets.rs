//! Facet counts shown beside a listing: categories, brands and price buckets.
//!
//! Each facet counts the products that pass every filter except its own (disjunctive
//! faceting), so a shopper who filtered on one brand still sees how many products the other
//! brands have. Prices are bucketed on fixed boundaries in minor units, whatever the currency
//! (the seeded catalog mixes a few; amounts are comparable enough for browsing).

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
    price: [u64; PRICE_BOUNDARIES.len() + 1],
}

impl FacetTally {
    /// A tally over `categories` category names and `brands` brand names.
    pub fn new(categories: usize, brands: usize) -> Self {
        Self {
            category: vec![0; categories],
            brand: vec![0; brands],
            price: [0; PRICE_BOUNDARIES.len() + 1],
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
        let price = (0..self.price.len())
            .filter(|&i| self.price[i] > 0)
            .map(|i| PriceBucket {
                min: if i == 0 { 0 } else { PRICE_BOUNDARIES[i - 1] },
                max: PRICE_BOUNDARIES.get(i).copied(),
                count: self.price[i],
            })
            .collect();
        Facets {
            category: top(&self.category, categories),
            brand: top(&self.brand, brands),
            price,
        }
    }
}

fn bucket(amount: i64) -> usize {
    PRICE_BOUNDARIES
        .iter()
        .position(|&boundary| amount < boundary)
        .unwrap_or(PRICE_BOUNDARIES.len())
}

/// The most frequent values first, then by value, at most [`MAX_VALUES`]; values counted
/// nowhere are left out.
fn top<S: AsRef<str>>(counts: &[u64], names: &[S]) -> Vec<FacetValue> {
    let mut values: Vec<FacetValue> = counts
        .iter()
        .zip(names)
        .filter(|(count, _)| **count > 0)
        .map(|(&count, name)| FacetValue {
            value: name.as_ref().to_owned(),
            count,
        })
        .collect();
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    values.truncate(MAX_VALUES);
    values
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
