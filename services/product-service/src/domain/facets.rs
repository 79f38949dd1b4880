//! Facet counts shown beside a listing: categories, brands and price buckets.
//!
//! Each facet counts the products that pass every filter except its own (disjunctive
//! faceting), so a shopper who filtered on one brand still sees how many products the other
//! brands have. Prices are bucketed on fixed boundaries in minor units, whatever the currency
//! (the seeded catalog mixes a few; amounts are comparable enough for browsing).

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

/// Accumulates counts over the products a text search matched.
#[derive(Debug, Default)]
pub struct FacetCounter {
    category: HashMap<String, u64>,
    brand: HashMap<String, u64>,
    price: [u64; PRICE_BOUNDARIES.len() + 1],
}

impl FacetCounter {
    pub fn add(&mut self, passes: Passes, category: &str, brand: Option<&str>, amount: i64) {
        if passes.brand && passes.price && passes.stock {
            *self.category.entry(category.to_owned()).or_default() += 1;
        }
        if let Some(brand) = brand
            && passes.category
            && passes.price
            && passes.stock
        {
            *self.brand.entry(brand.to_owned()).or_default() += 1;
        }
        if passes.category && passes.brand && passes.stock {
            self.price[bucket(amount)] += 1;
        }
    }

    pub fn finish(self) -> Facets {
        let price = (0..self.price.len())
            .filter(|&i| self.price[i] > 0)
            .map(|i| PriceBucket {
                min: if i == 0 { 0 } else { PRICE_BOUNDARIES[i - 1] },
                max: PRICE_BOUNDARIES.get(i).copied(),
                count: self.price[i],
            })
            .collect();
        Facets {
            category: top(self.category),
            brand: top(self.brand),
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

/// The most frequent values first, then by value, at most [`MAX_VALUES`].
fn top(counts: HashMap<String, u64>) -> Vec<FacetValue> {
    let mut values: Vec<FacetValue> = counts
        .into_iter()
        .map(|(value, count)| FacetValue { value, count })
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
        let mut counter = FacetCounter::default();
        counter.add(ALL, "audio", Some("Sony"), 500);
        // Filtered out by brand only: still counted for the brand facet.
        counter.add(
            Passes {
                brand: false,
                ..ALL
            },
            "audio",
            Some("Xiaomi"),
            20_000,
        );
        // Out of stock: counted nowhere.
        counter.add(
            Passes {
                stock: false,
                ..ALL
            },
            "audio",
            Some("Sony"),
            500,
        );
        let facets = counter.finish();
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
