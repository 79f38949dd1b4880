//! Search, filters, sort orders and cursor pages over a small catalog.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestResult, product_body, spawn_app, string};

const WORDS: [&str; 6] = ["Kettle", "Lamp", "Mug", "Chair", "Desk", "Pan"];

/// 30 products: prices repeat (ties broken by id), three categories, every fifth out of stock.
async fn seed(app: &TestApp) -> anyhow::Result<Vec<Value>> {
    let mut created = Vec::new();
    for i in 0..30 {
        let mut body = product_body(&format!("LIST-{i:02}"));
        body["name"] = json!(format!("{} {:02}", WORDS[i % WORDS.len()], 29 - i));
        body["category"] = json!(["kitchen", "office", "garden"][i % 3]);
        body["price"]["amount"] = json!(100 * (1 + (i as i64 % 7)));
        body["initial_stock"] = json!(if i % 5 == 0 { 0 } else { 3 });
        created.push(app.created(&body).await?);
    }
    Ok(created)
}

/// Walks every page of `query` with `limit`; returns the ids in the order served.
async fn walk(app: &TestApp, query: &str, limit: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/api/products?limit={limit}&{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = app.get(&path).await?;
        anyhow::ensure!(page.status == StatusCode::OK, "{path}: {page:?}");
        let items = page.body["items"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(items.len() <= limit, "page larger than the limit");
        for item in &items {
            ids.push(string(&item["id"])?);
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(ids),
        }
    }
    anyhow::bail!("more than 100 pages")
}

fn ids_sorted_by(
    products: &[Value],
    key: impl Fn(&Value) -> (i64, String),
    desc: bool,
) -> Vec<String> {
    let mut sorted: Vec<(i64, String, String)> = products
        .iter()
        .map(|p| {
            let (n, s) = key(p);
            (n, s, p["id"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    sorted.sort();
    if desc {
        sorted.reverse();
    }
    sorted.into_iter().map(|(_, _, id)| id).collect()
}

#[tokio::test]
async fn every_sort_order_pages_through_everything_once_in_order() -> TestResult {
    let app = spawn_app().await;
    let products = seed(&app).await?;
    let price = |p: &Value| {
        (
            p["price"]["amount"].as_i64().unwrap_or_default(),
            String::new(),
        )
    };
    let name = |p: &Value| (0, p["name"].as_str().unwrap_or_default().to_owned());
    let newest = |_: &Value| (0, String::new());
    let expectations = [
        ("sort=price", ids_sorted_by(&products, price, false)),
        ("sort=-price", ids_sorted_by(&products, price, true)),
        ("sort=name", ids_sorted_by(&products, name, false)),
        ("sort=newest", ids_sorted_by(&products, newest, true)),
        ("", ids_sorted_by(&products, newest, true)),
    ];
    for (query, expected) in expectations {
        for limit in [1, 7, 30, 100] {
            let served = walk(&app, query, limit).await?;
            assert_eq!(served, expected, "{query} limit {limit}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn pages_stay_stable_when_products_are_added_while_paging() -> TestResult {
    let app = spawn_app().await;
    let products = seed(&app).await?;
    let first = app.get("/api/products?sort=price&limit=10").await?;
    let mut seen: Vec<String> = first.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| string(&p["id"]))
        .collect::<Result<_, _>>()?;
    // A cheaper product lands before the cursor, a pricier one after it.
    let mut cheap = product_body("LIST-NEW-1");
    cheap["price"]["amount"] = json!(1);
    app.created(&cheap).await?;
    let mut dear = product_body("LIST-NEW-2");
    dear["price"]["amount"] = json!(100_000);
    let dear = app.created(&dear).await?;

    let mut cursor = string(&first.body["next_cursor"])?;
    loop {
        let page = app
            .get(&format!(
                "/api/products?sort=price&limit=10&cursor={cursor}"
            ))
            .await?;
        for item in page.body["items"].as_array().into_iter().flatten() {
            seen.push(string(&item["id"])?);
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an item was served twice");
    for product in &products {
        assert!(
            seen.contains(&string(&product["id"])?),
            "an item was skipped"
        );
    }
    assert_eq!(seen.last(), Some(&string(&dear["id"])?));
    Ok(())
}

#[tokio::test]
async fn filters_combine_and_only_show_matching_active_products() -> TestResult {
    let app = spawn_app().await;
    let products = seed(&app).await?;
    let served = walk(
        &app,
        "category=office&min_price=200&max_price=500&in_stock=true&sort=price",
        100,
    )
    .await?;
    let expected: HashSet<String> = products
        .iter()
        .filter(|p| {
            let amount = p["price"]["amount"].as_i64().unwrap_or_default();
            p["category"] == "office"
                && (200..=500).contains(&amount)
                && p["stock"]["available"].as_i64() > Some(0)
        })
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(served.iter().cloned().collect::<HashSet<_>>(), expected);
    assert_eq!(served.len(), expected.len());

    // A deleted product is no longer listed.
    let gone = string(&products[1]["id"])?;
    app.delete(&gone).await?;
    assert!(!walk(&app, "", 100).await?.contains(&gone));
    Ok(())
}

/// Issue 13 changed the contract: search is ranked word search (case, stems and small typos
/// ignored), no longer a literal substring match, so operator characters are just punctuation
/// between words; they still never break a query or reach a pattern engine.
#[tokio::test]
async fn search_matches_words_over_name_description_and_tags_and_ignores_operators() -> TestResult {
    let app = spawn_app().await;
    let mut cable = product_body("SEARCH-1");
    cable["name"] = json!("Cable (USB-C) 1.5m");
    cable["tags"] = json!(["charging"]);
    let cable = app.created(&cable).await?;
    let mut lamp = product_body("SEARCH-2");
    lamp["name"] = json!("Desk lamp");
    lamp["description"] = json!("Warm LIGHT for reading");
    lamp["tags"] = json!(["Bedroom"]);
    let lamp = app.created(&lamp).await?;
    let mut decoy = product_body("SEARCH-3");
    decoy["name"] = json!("Cable USBXC 1x5m");
    decoy["tags"] = json!([]);
    decoy["description"] = json!("");
    let decoy = app.created(&decoy).await?;

    let find = |q: &'static str| {
        let app = &app;
        async move {
            let path = format!("/api/products?q={}", urlencode(q));
            let reply = app.get(&path).await?;
            anyhow::ensure!(reply.status == StatusCode::OK, "{q}: {reply:?}");
            let mut ids: Vec<String> = reply.body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["id"].as_str().map(str::to_owned))
                .collect();
            ids.sort();
            Ok::<Vec<String>, anyhow::Error>(ids)
        }
    };
    let cable_id = string(&cable["id"])?;
    let lamp_id = string(&lamp["id"])?;
    let decoy_id = string(&decoy["id"])?;
    // `usb-c` alone would also find `USBXC`, one typo away.
    assert_eq!(find("(usb-c) 1.5m").await?, std::slice::from_ref(&cable_id));
    assert_eq!(find("CHARGING").await?, std::slice::from_ref(&cable_id));
    assert_eq!(find("charge").await?, std::slice::from_ref(&cable_id));
    assert_eq!(find("light for").await?, std::slice::from_ref(&lamp_id));
    assert_eq!(find("bedroom").await?, std::slice::from_ref(&lamp_id));
    assert_eq!(find("lamps").await?, std::slice::from_ref(&lamp_id));
    assert_eq!(find("lampp").await?, std::slice::from_ref(&lamp_id));
    let mut cables = vec![cable_id, decoy_id];
    cables.sort();
    assert_eq!(find("^Cable$").await?, cables);
    for nothing in [".*", "((", "[a-z]+", "\\", "$where", "{}"] {
        assert!(
            find(nothing).await?.is_empty(),
            "{nothing} must find nothing"
        );
    }
    Ok(())
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn bad_parameters_are_422_naming_the_parameter() -> TestResult {
    let app = spawn_app().await;
    app.created(&product_body("PARAM-1")).await?;
    app.created(&product_body("PARAM-2")).await?;
    let price_cursor = app.get("/api/products?sort=price&limit=1").await?;
    let price_cursor = string(&price_cursor.body["next_cursor"])?;
    let cases: Vec<(String, &str)> = vec![
        ("limit=0".into(), "limit"),
        ("limit=101".into(), "limit"),
        ("limit=abc".into(), "limit"),
        ("cursor=garbage".into(), "cursor"),
        ("cursor=eyJzIjoibmV3ZXN0In0".into(), "cursor"),
        (format!("sort=name&cursor={price_cursor}"), "cursor"),
        ("sort=rating".into(), "sort"),
        ("min_price=-1".into(), "min_price"),
        ("max_price=1.5".into(), "max_price"),
        ("min_price=10&max_price=5".into(), "max_price"),
        ("in_stock=maybe".into(), "in_stock"),
        ("category=Not%20a%20slug".into(), "category"),
        // Issue 13 raised the bound from 100 to 200 characters.
        (format!("q={}", "x".repeat(201)), "q"),
        ("lang=fr".into(), "lang"),
    ];
    for (query, field) in cases {
        let reply = app.get(&format!("/api/products?{query}")).await?;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {reply:?}"
        );
        assert_eq!(reply.fields(), [field], "{query}");
    }
    Ok(())
}
