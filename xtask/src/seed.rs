//! `cargo xtask seed`: loads a realistic catalog through product-service's admin API, as an
//! admin signed in at user-service. Products are generated deterministically from their index,
//! so a second run creates only what is missing: an existing SKU (409) is left as it is.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::services::{self, SERVICES};

/// Per category: slug, product kinds, price range in cents, and how its specs look.
struct Category {
    slug: &'static str,
    kinds: &'static [&'static str],
    cents: (i64, i64),
    specs: fn(&mut Rng) -> Value,
}

const CATEGORIES: &[Category] = &[
    Category {
        slug: "kitchen",
        kinds: &[
            "Kettle",
            "Toaster",
            "Chef's knife",
            "Frying pan",
            "Coffee grinder",
            "Teapot",
        ],
        cents: (1_500, 24_900),
        specs: |r| {
            json!({
                "dimensions": {"width_cm": r.range(10, 40), "height_cm": r.range(8, 35), "depth_cm": r.range(10, 40)},
                "weight_g": r.range(300, 4_000),
                "materials": [r.pick(&["stainless steel", "cast iron", "ceramic", "glass", "bamboo"])],
                "care": {"dishwasher_safe": r.range(0, 1) == 1, "induction": r.range(0, 1) == 1},
            })
        },
    },
    Category {
        slug: "electronics",
        kinds: &[
            "Headphones",
            "USB-C charger",
            "Bluetooth speaker",
            "E-reader",
            "Webcam",
            "Power bank",
        ],
        cents: (1_999, 49_900),
        specs: |r| {
            json!({
                "power": {"watts": r.range(5, 120), "voltage": r.pick(&["5V", "9V", "12V", "20V"])},
                "connectivity": {"bluetooth": format!("5.{}", r.range(0, 3)), "ports": ["USB-C"]},
                "battery": {"capacity_mah": r.range(500, 20_000), "hours": r.range(4, 40)},
                "warranty_months": r.pick(&["12", "24", "36"]),
            })
        },
    },
    Category {
        slug: "office",
        kinds: &[
            "Desk lamp",
            "Notebook",
            "Fountain pen",
            "Monitor stand",
            "Desk organiser",
            "Office chair",
        ],
        cents: (499, 39_900),
        specs: |r| {
            json!({
                "dimensions": {"width_cm": r.range(5, 120), "height_cm": r.range(1, 130)},
                "colour": r.pick(&["black", "white", "oak", "graphite", "sage"]),
                "ergonomics": {"adjustable": r.range(0, 1) == 1, "max_load_kg": r.range(2, 150)},
            })
        },
    },
    Category {
        slug: "garden",
        kinds: &[
            "Watering can",
            "Pruning shears",
            "Planter",
            "Garden hose",
            "Bird feeder",
            "Trowel",
        ],
        cents: (799, 12_900),
        specs: |r| {
            json!({
                "material": r.pick(&["galvanised steel", "terracotta", "recycled plastic", "beech"]),
                "capacity_l": r.range(1, 25),
                "outdoor": {"uv_resistant": true, "frost_proof": r.range(0, 1) == 1},
            })
        },
    },
    Category {
        slug: "sports",
        kinds: &[
            "Yoga mat",
            "Running shoes",
            "Water bottle",
            "Resistance bands",
            "Cycling gloves",
            "Backpack",
        ],
        cents: (999, 18_900),
        specs: |r| {
            json!({
                "sizes": ["S", "M", "L", "XL"],
                "weight_g": r.range(80, 2_500),
                "fabric": {"main": r.pick(&["recycled polyester", "merino", "nylon", "TPE"]), "waterproof": r.range(0, 1) == 1},
            })
        },
    },
    Category {
        slug: "books",
        kinds: &[
            "Cookbook",
            "Travel guide",
            "Novel",
            "Field guide",
            "Design handbook",
            "Atlas",
        ],
        cents: (899, 5_900),
        specs: |r| {
            json!({
                "pages": r.range(96, 900),
                "binding": r.pick(&["hardcover", "paperback"]),
                "language": r.pick(&["en", "de", "fr", "zh"]),
                "published": {"year": r.range(1990, 2026)},
            })
        },
    },
];

const BRANDS: &[&str] = &[
    "Nordwerk",
    "Lumen & Co",
    "Kestrel",
    "Aubergine",
    "Fjell",
    "Tidewater",
    "Oakhaus",
    "Meridian",
];
const ADJECTIVES: &[&str] = &[
    "Classic", "Compact", "Pro", "Everyday", "Travel", "Heritage", "Studio", "Eco",
];

/// A small deterministic generator (SplitMix64), so product `i` is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % (high - low + 1) as u64) as i64
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Product number `i` of the seed catalog.
fn product(i: usize) -> Value {
    let mut r = Rng(i as u64);
    let category = &CATEGORIES[i % CATEGORIES.len()];
    let kind = r.pick(category.kinds);
    let brand = r.pick(BRANDS);
    let adjective = r.pick(ADJECTIVES);
    let sku = format!("SEED-{}-{i:05}", &category.slug[..3].to_ascii_uppercase());
    // Prices end in 9 or 99 cents, as shops like them.
    let amount = r.range(category.cents.0, category.cents.1) / 100 * 100 + 99;
    let images: Vec<Value> = (1..=r.range(1, 3))
        .map(|n| {
            json!({
                "url": format!("https://images.ferroshop.dev/{}/{n}.jpg", sku.to_ascii_lowercase()),
                "alt": format!("{brand} {kind}, view {n}"),
            })
        })
        .collect();
    json!({
        "sku": sku,
        "name": format!("{brand} {adjective} {kind}"),
        "description": format!(
            "The {adjective} {} by {brand}: made to last, easy to care for, and backed by our {}-day returns.",
            kind.to_lowercase(),
            r.pick(&["30", "60", "90"])
        ),
        "category": category.slug,
        "tags": [kind.to_lowercase(), brand.to_lowercase(), adjective.to_lowercase()],
        "price": {"amount": amount, "currency": r.pick(&["EUR", "EUR", "EUR", "USD", "GBP"])},
        "specs": (category.specs)(&mut r),
        "images": images,
        "initial_stock": if r.range(0, 9) == 0 { 0 } else { r.range(1, 250) },
    })
}

fn service_url(name: &str) -> Result<String> {
    SERVICES
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("{name} is not a known service"))?
        .base_url()
}

pub fn seed(count: usize) -> Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let users = services::user_service_url()?;
    let products = service_url("product-service")?;
    let (email, password) = services::admin_credentials();
    let login = client
        .post(format!("{users}/api/users/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .with_context(|| format!("signing in at {users} (is `cargo xtask up` running?)"))?;
    if !login.status().is_success() {
        bail!(
            "signing in as {email} failed: {} {}",
            login.status(),
            login.text().unwrap_or_default()
        );
    }
    let token = login.json::<Value>().context("reading the login answer")?["access_token"]
        .as_str()
        .context("the login answer has no access_token")?
        .to_owned();

    let bar = ProgressBar::new(count as u64);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>14.bold} [{bar:40.cyan/blue}] {pos}/{len} {msg} {elapsed:.dim}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix("seed");
    let (mut created, mut existing) = (0, 0);
    for i in 0..count {
        let body = product(i);
        let reply = client
            .post(format!("{products}/api/products"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .with_context(|| format!("creating {} at {products}", body["sku"]))?;
        match reply.status().as_u16() {
            201 => created += 1,
            409 => existing += 1,
            status => bail!(
                "creating {} answered {status}: {}",
                body["sku"],
                reply.text().unwrap_or_default()
            ),
        }
        bar.inc(1);
        bar.set_message(format!("{created} created, {existing} already there"));
    }
    bar.finish();
    println!("seeded {count} products: {created} created, {existing} already there");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_are_deterministic_varied_and_valid_looking() {
        assert_eq!(product(7), product(7));
        let skus: std::collections::HashSet<String> = (0..1_000)
            .map(|i| product(i)["sku"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(skus.len(), 1_000);
        for i in 0..200 {
            let p = product(i);
            let amount = p["price"]["amount"].as_i64().unwrap_or_default();
            assert!((1..=100_000_000).contains(&amount));
            assert!(p["specs"].is_object());
            assert!(!p["images"].as_array().map(Vec::is_empty).unwrap_or(true));
        }
    }
}
