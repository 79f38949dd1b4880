//! `cargo xtask seed`: loads a realistic bilingual (English and Simplified Chinese) catalog
//! through product-service's admin API, as an admin signed in at user-service. Products are generated deterministically from their index,
//! so a second run creates only what is missing: an existing SKU (409) is left as it is.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::services::{self, SERVICES};

/// A text in both catalog languages: (English, Simplified Chinese).
type Both = (&'static str, &'static str);

/// Per category: slug, product kinds and brands (as shoppers type them in each language),
/// price range in fen (CNY minor units), and how its specs look.
struct Category {
    slug: &'static str,
    kinds: &'static [Both],
    brands: &'static [Both],
    fen: (i64, i64),
    specs: fn(&mut Rng) -> Value,
}

const CATEGORIES: &[Category] = &[
    Category {
        slug: "audio",
        kinds: &[
            ("Bluetooth Headphones", "蓝牙耳机"),
            ("Noise Cancelling Headphones", "降噪耳机"),
            ("True Wireless Earbuds", "真无线耳机"),
            ("Bluetooth Speaker", "蓝牙音箱"),
            ("Smart Speaker", "智能音箱"),
            ("Wired Earphones", "有线耳机"),
        ],
        brands: &[
            ("Sony", "索尼"),
            ("Xiaomi", "小米"),
            ("Huawei", "华为"),
            ("Bose", "Bose"),
            ("JBL", "JBL"),
            ("Edifier", "漫步者"),
        ],
        fen: (4_900, 299_900),
        specs: |r| {
            json!({
                "connectivity": {"bluetooth": format!("5.{}", r.range(0, 3)), "ports": ["USB-C"]},
                "battery": {"hours": r.range(4, 60)},
                "noise_cancelling": r.range(0, 1) == 1,
                "colour": r.pick(&["black", "white", "silver", "blue"]),
            })
        },
    },
    Category {
        slug: "computing",
        kinds: &[
            ("Mechanical Keyboard", "机械键盘"),
            ("Wireless Mouse", "无线鼠标"),
            ("Gaming Mouse", "游戏鼠标"),
            ("4K Monitor", "4K显示器"),
            ("Laptop", "笔记本电脑"),
            ("USB-C Charger", "USB-C充电器"),
            ("Power Bank", "充电宝"),
        ],
        brands: &[
            ("Logitech", "罗技"),
            ("Lenovo", "联想"),
            ("Razer", "雷蛇"),
            ("Dell", "戴尔"),
            ("Anker", "安克"),
            ("Keychron", "Keychron"),
        ],
        fen: (9_900, 1_299_900),
        specs: |r| {
            json!({
                "power": {"watts": r.range(5, 140)},
                "connectivity": {"wireless": r.range(0, 1) == 1, "ports": ["USB-C", "USB-A"]},
                "warranty_months": r.pick(&["12", "24", "36"]),
                "colour": r.pick(&["black", "white", "graphite"]),
            })
        },
    },
    Category {
        slug: "phones",
        kinds: &[
            ("Smartphone", "智能手机"),
            ("Phone Case", "手机壳"),
            ("Smart Watch", "智能手表"),
            ("Fitness Band", "运动手环"),
            ("Screen Protector", "钢化膜"),
            ("Wireless Charger", "无线充电器"),
        ],
        brands: &[
            ("Xiaomi", "小米"),
            ("Huawei", "华为"),
            ("Apple", "苹果"),
            ("OPPO", "OPPO"),
            ("vivo", "vivo"),
            ("Honor", "荣耀"),
        ],
        fen: (2_900, 999_900),
        specs: |r| {
            json!({
                "storage_gb": r.pick(&["128", "256", "512"]),
                "network": "5G",
                "battery": {"capacity_mah": r.range(300, 6_000)},
                "colour": r.pick(&["black", "white", "green", "purple"]),
            })
        },
    },
    Category {
        slug: "kitchen",
        kinds: &[
            ("Electric Kettle", "电热水壶"),
            ("Rice Cooker", "电饭煲"),
            ("Air Fryer", "空气炸锅"),
            ("Non-stick Wok", "不粘炒锅"),
            ("Vacuum Flask", "保温杯"),
            ("Coffee Machine", "咖啡机"),
        ],
        brands: &[
            ("Midea", "美的"),
            ("Supor", "苏泊尔"),
            ("Joyoung", "九阳"),
            ("Philips", "飞利浦"),
            ("Bear", "小熊"),
            ("Thermos", "膳魔师"),
        ],
        fen: (3_900, 399_900),
        specs: |r| {
            json!({
                "capacity_l": r.range(1, 6),
                "power": {"watts": r.range(300, 2_200)},
                "materials": [r.pick(&["stainless steel", "ceramic", "glass", "aluminium"])],
                "care": {"dishwasher_safe": r.range(0, 1) == 1},
            })
        },
    },
    Category {
        slug: "home",
        kinds: &[
            ("Robot Vacuum", "扫地机器人"),
            ("Air Purifier", "空气净化器"),
            ("LED Desk Lamp", "护眼台灯"),
            ("Memory Foam Pillow", "记忆棉枕头"),
            ("Dehumidifier", "除湿机"),
            ("Electric Fan", "电风扇"),
        ],
        brands: &[
            ("Xiaomi", "小米"),
            ("Dyson", "戴森"),
            ("Philips", "飞利浦"),
            ("Midea", "美的"),
            ("Gree", "格力"),
            ("Ecovacs", "科沃斯"),
        ],
        fen: (5_900, 599_900),
        specs: |r| {
            json!({
                "room_m2": r.range(10, 120),
                "noise_db": r.range(20, 65),
                "smart_home": r.range(0, 1) == 1,
                "colour": r.pick(&["white", "grey", "black"]),
            })
        },
    },
    Category {
        slug: "sports",
        kinds: &[
            ("Running Shoes", "跑步鞋"),
            ("Basketball Shoes", "篮球鞋"),
            ("Yoga Mat", "瑜伽垫"),
            ("Down Jacket", "羽绒服"),
            ("Dumbbells", "哑铃"),
            ("Camping Tent", "露营帐篷"),
        ],
        brands: &[
            ("Nike", "耐克"),
            ("Adidas", "阿迪达斯"),
            ("Li-Ning", "李宁"),
            ("Anta", "安踏"),
            ("Decathlon", "迪卡侬"),
            ("Keep", "Keep"),
        ],
        fen: (4_900, 149_900),
        specs: |r| {
            json!({
                "sizes": ["S", "M", "L", "XL"],
                "weight_g": r.range(80, 20_000),
                "fabric": {"main": r.pick(&["recycled polyester", "nylon", "TPE", "goose down"]), "waterproof": r.range(0, 1) == 1},
            })
        },
    },
];

/// Editions, as product names say them in each language.
const EDITIONS: &[Both] = &[
    ("Pro", "Pro"),
    ("Lite", "青春版"),
    ("Classic", "经典款"),
    ("Max", "Max"),
    ("Compact", "便携款"),
    ("2025 Edition", "2025新款"),
    ("Plus", "Plus"),
    ("Limited Edition", "限量版"),
];

/// Selling points: (English, Chinese).
const FEATURES: &[Both] = &[
    ("long battery life", "超长续航"),
    ("quiet and energy saving", "静音节能"),
    ("lightweight and portable", "轻巧便携"),
    ("a favourite for gifts", "送礼首选"),
    ("best value for money", "高性价比"),
    ("premium materials", "精选材质"),
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

/// Product number `i` of the seed catalog. Every product has both languages: even numbers
/// are written in English with a Chinese translation, odd ones the other way round, as an
/// import from either kind of supplier would be.
fn product(i: usize) -> Value {
    let mut r = Rng(i as u64);
    let category = &CATEGORIES[i % CATEGORIES.len()];
    let (kind_en, kind_zh) = category.kinds[(r.next() % category.kinds.len() as u64) as usize];
    let (brand_en, brand_zh) = category.brands[(r.next() % category.brands.len() as u64) as usize];
    let (edition_en, edition_zh) = EDITIONS[(r.next() % EDITIONS.len() as u64) as usize];
    let (feature_en, feature_zh) = FEATURES[(r.next() % FEATURES.len() as u64) as usize];
    let model = format!(
        "{}{}",
        r.pick(&["X", "S", "A", "M", "K", "G"]),
        r.range(1, 99)
    );
    let sku = format!("SEED-{}-{i:05}", &category.slug[..3].to_ascii_uppercase());
    // Prices end in 9 or 99 fen... and yuan, as shops like them.
    let amount = r.range(category.fen.0, category.fen.1) / 100 * 100 + 99;
    let days = r.pick(&["7", "15", "30"]);
    let en_name = format!("{brand_en} {kind_en} {model} {edition_en}");
    let zh_name = format!("{brand_zh} {kind_zh} {model} {edition_zh}");
    let en_description = format!(
        "The {brand_en} {model} {}, {edition_en}: {feature_en}. {days}-day returns.",
        kind_en.to_lowercase()
    );
    let zh_description =
        format!("{brand_zh}{kind_zh} {model}（{edition_zh}）：{feature_zh}。{days}天无理由退货。");
    let images: Vec<Value> = (1..=r.range(1, 3))
        .map(|n| {
            json!({
                "url": format!("https://images.ferroshop.dev/{}/{n}.jpg", sku.to_ascii_lowercase()),
                "alt": format!("{brand_en} {kind_en}, view {n}"),
            })
        })
        .collect();
    let (name, description, translations) = if i.is_multiple_of(2) {
        (
            en_name,
            en_description,
            json!({"zh-CN": {"name": zh_name, "description": zh_description}}),
        )
    } else {
        (
            zh_name,
            zh_description,
            json!({"en": {"name": en_name, "description": en_description}}),
        )
    };
    let mut specs = (category.specs)(&mut r);
    specs["brand"] = json!(brand_en);
    specs["model"] = json!(model);
    json!({
        "sku": sku,
        "name": name,
        "description": description,
        "translations": translations,
        "category": category.slug,
        "tags": [kind_en.to_lowercase(), kind_zh, brand_en.to_lowercase(), brand_zh],
        "price": {"amount": amount, "currency": "CNY"},
        "specs": specs,
        "images": images,
        "initial_stock": if r.range(0, 9) == 0 { 0 } else { r.range(1, 250) },
    })
}

/// Creations in flight at once.
const SEED_WORKERS: usize = 32;

/// What product-service said to one creation.
enum Created {
    New,
    Existing,
    /// 401: the admin's access token expired (they live minutes; seeding 100,000 takes longer).
    TokenExpired,
    /// 503 or 429: the service asks to come back later (`Retry-After`, if it said).
    Busy(Option<Duration>),
}

/// Creates one product.
fn create(
    client: &reqwest::blocking::Client,
    products: &str,
    token: &str,
    body: &Value,
) -> Result<Created> {
    let reply = client
        .post(format!("{products}/api/products"))
        .bearer_auth(token)
        .json(body)
        .send()
        .with_context(|| format!("creating {} at {products}", body["sku"]))?;
    match reply.status().as_u16() {
        201 => Ok(Created::New),
        409 => Ok(Created::Existing),
        401 => Ok(Created::TokenExpired),
        429 | 503 => Ok(Created::Busy(
            reply
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok()?.parse().ok())
                .map(Duration::from_secs),
        )),
        status => bail!(
            "creating {} answered {status}: {}",
            body["sku"],
            reply.text().unwrap_or_default()
        ),
    }
}

/// The admin's access token, shared by the seeding workers and renewed by signing in again
/// when product-service stops accepting it.
struct AdminSession<'a> {
    client: &'a reqwest::blocking::Client,
    users: String,
    token: std::sync::Mutex<String>,
}

impl<'a> AdminSession<'a> {
    fn sign_in(client: &'a reqwest::blocking::Client, users: String) -> Result<Self> {
        let token = Self::login(client, &users)?;
        Ok(Self {
            client,
            users,
            token: std::sync::Mutex::new(token),
        })
    }

    fn login(client: &reqwest::blocking::Client, users: &str) -> Result<String> {
        let (email, password) = services::admin_credentials();
        services::login(client, users, &email, &password)
    }

    fn token(&self) -> Result<String> {
        self.token
            .lock()
            .map(|token| token.clone())
            .map_err(|_| anyhow::anyhow!("a seeding worker panicked"))
    }

    /// Signs in again unless another worker already replaced `expired`; one login per expiry.
    fn renew(&self, expired: &str) -> Result<String> {
        let mut token = self
            .token
            .lock()
            .map_err(|_| anyhow::anyhow!("a seeding worker panicked"))?;
        if *token == expired {
            *token = Self::login(self.client, &self.users)?;
        }
        Ok(token.clone())
    }
}

/// How often one product is tried while product-service answers 503 or 429.
const BUSY_ATTEMPTS: u32 = 6;

/// Creates product `body`, signing in again when the token expired on the way and trying
/// again later while the service is busy (a create is idempotent by SKU: one that went
/// through before its answer was lost answers 409 the next time); `Ok(false)` when its SKU
/// exists already.
fn create_signed_in(
    client: &reqwest::blocking::Client,
    products: &str,
    session: &AdminSession,
    body: &Value,
) -> Result<bool> {
    let mut token = session.token()?;
    let mut renewed = false;
    let mut busy = 0;
    loop {
        match create(client, products, &token, body)? {
            Created::New => return Ok(true),
            Created::Existing => return Ok(false),
            Created::TokenExpired if !renewed => {
                token = session.renew(&token)?;
                renewed = true;
            }
            Created::TokenExpired => {
                bail!(
                    "product-service refused a fresh admin token for {}",
                    body["sku"]
                )
            }
            Created::Busy(_) if busy + 1 >= BUSY_ATTEMPTS => {
                bail!(
                    "product-service stayed busy (503/429) for {} over {BUSY_ATTEMPTS} attempts",
                    body["sku"]
                )
            }
            Created::Busy(retry_after) => {
                busy += 1;
                let backoff = Duration::from_millis(250 << busy.min(5));
                std::thread::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(10)));
            }
        }
    }
}

fn service_url(name: &str) -> Result<String> {
    SERVICES
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("{name} is not a known service"))?
        .base_url()
}

/// What a seed run did.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub created: usize,
    pub existing: usize,
}

pub fn seed(count: usize) -> Result<Seeded> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let users = services::user_service_url()?;
    let products = service_url("product-service")?;
    let session = AdminSession::sign_in(&client, users)?;

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
    // Several creations in flight: product-service commits its search index once for all the
    // writes that queued behind a commit (group commit), so parallel requests seed many times
    // faster than one at a time, and 100,000 products become practical.
    let next = AtomicUsize::new(0);
    let (created, existing) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let failure: std::sync::Mutex<Option<anyhow::Error>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..SEED_WORKERS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let stopped = failure.lock().map(|f| f.is_some()).unwrap_or(true);
                    if i >= count || stopped {
                        return;
                    }
                    match create_signed_in(&client, &products, &session, &product(i)) {
                        Ok(true) => created.fetch_add(1, Ordering::Relaxed),
                        Ok(false) => existing.fetch_add(1, Ordering::Relaxed),
                        Err(error) => {
                            if let Ok(mut failure) = failure.lock() {
                                failure.get_or_insert(error);
                            }
                            return;
                        }
                    };
                    bar.inc(1);
                    bar.set_message(format!(
                        "{} created, {} already there",
                        created.load(Ordering::Relaxed),
                        existing.load(Ordering::Relaxed)
                    ));
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().ok().flatten() {
        bar.abandon();
        return Err(error);
    }
    let (created, existing) = (created.into_inner(), existing.into_inner());
    bar.finish();
    println!("seeded {count} products: {created} created, {existing} already there");
    Ok(Seeded { created, existing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_are_bilingual_with_the_words_chinese_shoppers_type() {
        let english = product(0);
        assert!(english["translations"]["zh-CN"]["name"].is_string());
        let chinese = product(1);
        assert!(chinese["translations"]["en"]["name"].is_string());
        let names: String = (0..600)
            .map(|i| {
                let p = product(i);
                format!("{} {}", p["name"], p["translations"])
            })
            .collect();
        for word in [
            "蓝牙耳机",
            "机械键盘",
            "索尼",
            "小米",
            "Sony",
            "Xiaomi",
            "电热水壶",
        ] {
            assert!(names.contains(word), "{word}");
        }
        let sku = product(99_999)["sku"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(sku.ends_with("99999"), "{sku}");
    }

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
