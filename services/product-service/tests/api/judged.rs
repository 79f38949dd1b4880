//! Ranking quality over the judged query set (`tests/search/judged_queries.json`, at least 40
//! queries, half of them Chinese: misspellings, brands, mixed-language queries and queries that
//! must return nothing) on a fixture catalog (`tests/search/fixture_catalog.json`) created
//! through the API in this test's own database, so the figure is deterministic.
//!
//! The metric is mean nDCG@10 with graded relevance (gain 2^rel - 1); a query that must return
//! nothing scores 1 when the answer is empty and 0 otherwise. The threshold was set from the
//! first honest run (see `THRESHOLD`); a change that ranks worse fails here.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::helpers::{TestResult, spawn_app};

/// The first honest run scored 0.947 over 52 queries (brand 1.000, en 0.939, misspelled
/// 0.963, mixed 0.833, nothing 1.000, zh 0.959); the threshold leaves room for small ranking
/// shifts only.
const THRESHOLD: f64 = 0.93;

#[derive(Deserialize)]
struct Fixture {
    products: Vec<Value>,
}

#[derive(Deserialize)]
struct Judged {
    queries: Vec<JudgedQuery>,
}

#[derive(Deserialize)]
struct JudgedQuery {
    q: String,
    kind: String,
    relevant: HashMap<String, u32>,
}

/// Percent-encodes every byte but ASCII letters and digits.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b.is_ascii_alphanumeric() {
            true => (b as char).to_string(),
            false => format!("%{b:02X}"),
        })
        .collect()
}

/// nDCG@k of `ranked` SKUs against graded `relevant` ones.
fn ndcg(ranked: &[String], relevant: &HashMap<String, u32>, k: usize) -> f64 {
    if relevant.is_empty() {
        return if ranked.is_empty() { 1.0 } else { 0.0 };
    }
    let gain = |rel: u32| f64::from((1u32 << rel) - 1);
    let discount = |rank: usize| (rank as f64 + 2.0).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, sku)| gain(relevant.get(sku).copied().unwrap_or(0)) / discount(i))
        .sum();
    let mut ideal: Vec<u32> = relevant.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .into_iter()
        .take(k)
        .enumerate()
        .map(|(i, rel)| gain(rel) / discount(i))
        .sum();
    dcg / idcg
}

#[test]
fn ndcg_is_one_for_the_ideal_order_and_lower_otherwise() {
    let relevant = HashMap::from([("A".to_owned(), 2), ("B".to_owned(), 1)]);
    let order = |skus: &[&str]| skus.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!((ndcg(&order(&["A", "B"]), &relevant, 10) - 1.0).abs() < 1e-9);
    assert!(ndcg(&order(&["B", "A"]), &relevant, 10) < 1.0);
    assert_eq!(ndcg(&order(&["X"]), &relevant, 10), 0.0);
    assert_eq!(ndcg(&[], &HashMap::new(), 10), 1.0);
    assert_eq!(ndcg(&order(&["X"]), &HashMap::new(), 10), 0.0);
}

#[tokio::test]
async fn judged_queries_rank_above_the_threshold() -> TestResult {
    let fixture: Fixture = serde_json::from_str(include_str!("../search/fixture_catalog.json"))?;
    let judged: Judged = serde_json::from_str(include_str!("../search/judged_queries.json"))?;
    let chinese = judged
        .queries
        .iter()
        .filter(|q| q.q.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
        .count();
    assert!(judged.queries.len() >= 40 && chinese * 2 >= judged.queries.len());

    let app = spawn_app().await;
    for product in &fixture.products {
        app.created(product).await?;
    }
    let mut total = 0.0;
    let mut by_kind: HashMap<&str, (f64, usize)> = HashMap::new();
    let mut report = Vec::new();
    for query in &judged.queries {
        let reply = app
            .get(&format!("/api/products?limit=10&q={}", encode(&query.q)))
            .await?;
        assert_eq!(reply.status, StatusCode::OK, "{}: {reply:?}", query.q);
        let ranked: Vec<String> = reply.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["sku"].as_str().map(str::to_owned))
            .collect();
        let score = ndcg(&ranked, &query.relevant, 10);
        total += score;
        let kind = by_kind.entry(query.kind.as_str()).or_default();
        kind.0 += score;
        kind.1 += 1;
        report.push(format!("{score:.3}  {:<16} {:?}", query.q, ranked));
    }
    let mean = total / judged.queries.len() as f64;
    let mut kinds: Vec<String> = by_kind
        .iter()
        .map(|(kind, (sum, n))| format!("{kind} {:.3} ({n})", sum / *n as f64))
        .collect();
    kinds.sort();
    println!(
        "mean nDCG@10 = {mean:.3} over {} queries; {}\n{}",
        judged.queries.len(),
        kinds.join(", "),
        report.join("\n")
    );
    assert!(
        mean >= THRESHOLD,
        "mean nDCG@10 {mean:.3} is below {THRESHOLD}:\n{}",
        report.join("\n")
    );
    Ok(())
}
