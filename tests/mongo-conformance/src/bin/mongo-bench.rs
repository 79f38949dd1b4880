//! `mongo-bench`: what the MongoDB-wire server at `--url` costs the services' typical
//! operations, on a database of its own that it drops afterwards. It loads a catalog of
//! `--products` documents shaped like product-service's (nested price, stock, specs, the
//! listing indexes), then measures:
//! - a find by `_id` (a product page or a reservation's read), serially: p50, p99;
//! - a category listing of 20 sorted by `price.amount` with the `_id` tie-break (a listing
//!   page), serially: p50, p99;
//! - guarded updates (`findOneAndUpdate` on `_id` + `version` + `stock.available >= 1`, as a
//!   reservation writes), serially and from 8 concurrent clients: per second.
//!
//! Prints one JSON object (for `cargo xtask bench`) or a table. Run it as
//! `cargo run --release -p mongo-conformance --bin mongo-bench -- --url mongodb://127.0.0.1:27017`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::TryStreamExt as _;
use hdrhistogram::Histogram;
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, ReturnDocument};
use mongodb::{Client, Collection, IndexModel};

#[derive(Debug, Parser)]
struct Args {
    /// The server to measure.
    #[arg(long, default_value = "mongodb://127.0.0.1:27017")]
    url: String,
    /// Catalog size.
    #[arg(long, default_value_t = 1000)]
    products: u32,
    /// Operations per latency measurement.
    #[arg(long, default_value_t = 2000)]
    samples: u32,
    /// How long each update-rate measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only print the server's write counters (`serverStatus.ferroshop` of the local server,
    /// MongoDB's `opcounters` elsewhere) as JSON, and exit: `cargo xtask bench` reads them
    /// before and after a run to count the writes one order costs.
    #[arg(long)]
    counters: bool,
}

/// Write commands and commits so far, and the local server's write commands per namespace,
/// from `serverStatus`.
async fn print_counters(client: &Client) -> anyhow::Result<()> {
    let status = client
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await?;
    let number = |value: Option<&mongodb::bson::Bson>| -> i64 {
        match value {
            Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
            Some(mongodb::bson::Bson::Int64(n)) => *n,
            Some(mongodb::bson::Bson::Double(n)) => *n as i64,
            _ => -1,
        }
    };
    // A map of counts the local server keeps under `serverStatus.ferroshop` (empty on MongoDB,
    // which has no such counters).
    let counts = |name: &str| -> serde_json::Map<String, serde_json::Value> {
        status
            .get_document("ferroshop")
            .and_then(|ours| ours.get_document(name))
            .map(|counts| {
                counts
                    .iter()
                    .map(|(key, count)| (key.clone(), number(Some(count)).into()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (writes, commits) = match status.get_document("ferroshop") {
        Ok(ours) => (
            number(ours.get("writeCommands")),
            number(ours.get("commits")),
        ),
        Err(_) => {
            // MongoDB itself: inserts + updates + deletes; it has no commit counter.
            let ops = status.get_document("opcounters").ok();
            let op = |name: &str| number(ops.and_then(|ops| ops.get(name))).max(0);
            (op("insert") + op("update") + op("delete"), -1)
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "write_commands": writes,
            "commits": commits,
            // Write commands per namespace, and every command (reads too) by name and namespace.
            "writes_by_namespace": counts("writesByNamespace"),
            "commands": counts("commands"),
            // Full collection scans per namespace: a query no index answered.
            "collection_scans": counts("collectionScans"),
        })
    );
    Ok(())
}

const CATEGORIES: [&str; 6] = ["audio", "kitchen", "books", "garden", "toys", "sports"];

fn product(n: u32) -> Document {
    doc! {
        "_id": format!("0190{n:028}"),
        "sku": format!("SKU-{n:06}"),
        "name": format!("Product {n}"),
        "description": "A product of the benchmark catalog, with a description of some length.",
        "category": CATEGORIES[n as usize % CATEGORIES.len()],
        "tags": ["bench", "catalog"],
        "price": {"amount": i64::from((n * 7919) % 50_000 + 100), "currency": "EUR"},
        "specs": {"brand": "Acme", "dimensions": {"width_mm": 120_i64, "height_mm": 80_i64}},
        "images": [{"url": format!("https://img.example/{n}.jpg"), "alt": "front"}],
        "stock": {"available": 1_000_000_i64, "reserved": 0_i64},
        "sold": 0_i64,
        "active": true,
        "version": 1_i64,
        "reservations": {},
        "pending_events": [],
        "outbox_pending": false,
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

async fn guarded_updates(
    products: &Collection<Document>,
    ids: &[String],
    clients: usize,
    seconds: u64,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers = (0..clients).map(|c| {
        let products = products.clone();
        let ids = ids.to_vec();
        async move {
            let mut done: u64 = 0;
            let mut i = c;
            while Instant::now() < deadline {
                let id = &ids[i % ids.len()];
                i += clients;
                // Read the version, then write guarded by it (what every product write does).
                let current = products
                    .find_one(doc! {"_id": id})
                    .projection(doc! {"version": 1})
                    .await?
                    .context("product vanished")?;
                let version = current.get_i64("version")?;
                let written = products
                    .find_one_and_update(
                        doc! {"_id": id, "version": version, "stock.available": {"$gte": 1_i64}},
                        doc! {"$inc": {"stock.available": -1_i64, "stock.reserved": 1_i64, "version": 1_i64}},
                    )
                    .return_document(ReturnDocument::After)
                    .await?;
                if written.is_some() {
                    done += 1;
                }
            }
            anyhow::Ok(done)
        }
    });
    let mut total = 0;
    for outcome in futures::future::join_all(workers).await {
        total += outcome?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut options = ClientOptions::parse(&args.url).await?;
    options.server_selection_timeout = Some(Duration::from_secs(5));
    let client = Client::with_options(options)?;
    if args.counters {
        return print_counters(&client).await;
    }
    let db = client.database(&format!("bench_{}", std::process::id()));
    let products: Collection<Document> = db.collection("products");
    for keys in [
        doc! {"price.amount": 1, "_id": 1},
        doc! {"category": 1, "price.amount": 1},
        doc! {"outbox_pending": 1},
    ] {
        products
            .create_index(IndexModel::builder().keys(keys).build())
            .await?;
    }
    let docs: Vec<Document> = (0..args.products).map(product).collect();
    let ids: Vec<String> = docs
        .iter()
        .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
        .collect();
    for chunk in docs.chunks(500) {
        products.insert_many(chunk).await?;
    }

    let mut by_id = Histogram::<u64>::new(3)?;
    for n in 0..args.samples as usize {
        let started = Instant::now();
        products
            .find_one(doc! {"_id": &ids[(n * 7) % ids.len()]})
            .await?
            .context("product missing")?;
        by_id.record(started.elapsed().as_micros() as u64)?;
    }
    let mut listing = Histogram::<u64>::new(3)?;
    let listing_samples = (args.samples / 4).max(50);
    for n in 0..listing_samples as usize {
        let started = Instant::now();
        let page: Vec<Document> = products
            .find(doc! {"$and": [{"active": true}, {"category": CATEGORIES[n % CATEGORIES.len()]}]})
            .sort(doc! {"price.amount": 1, "_id": 1})
            .limit(21)
            .projection(doc! {"pending_events": 0, "reservations": 0})
            .await?
            .try_collect()
            .await?;
        anyhow::ensure!(page.len() == 21, "a listing page has 21 items");
        listing.record(started.elapsed().as_micros() as u64)?;
    }
    let serial = guarded_updates(&products, &ids, 1, args.seconds).await?;
    let concurrent = guarded_updates(&products, &ids, 8, args.seconds).await?;
    db.drop().await?;

    let report = serde_json::json!({
        "url": args.url,
        "products": args.products,
        "find_by_id_ms": {"p50": ms(&by_id, 0.5), "p99": ms(&by_id, 0.99)},
        "listing_ms": {"p50": ms(&listing, 0.5), "p99": ms(&listing, 0.99)},
        "guarded_updates_per_s": {"serial": serial, "clients_8": concurrent},
    });
    if args.json {
        println!("{report}");
    } else {
        println!("server                 {}", args.url);
        println!("catalog                {} products", args.products);
        println!(
            "find by _id            p50 {:.2} ms   p99 {:.2} ms",
            ms(&by_id, 0.5),
            ms(&by_id, 0.99)
        );
        println!(
            "listing of 20, sorted  p50 {:.2} ms   p99 {:.2} ms",
            ms(&listing, 0.5),
            ms(&listing, 0.99)
        );
        println!("guarded updates        {serial:.0}/s serially, {concurrent:.0}/s with 8 clients");
    }
    Ok(())
}
