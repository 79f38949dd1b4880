//! Search features over a small bilingual catalog: both languages searchable, the answer's
//! language, facets, filters, sort orders, suggest, and bad input that never costs a 500 or a
//! slow answer.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestResult, product_body, spawn_app, string};
use crate::judged::encode;

/// Three audio products (two Sony, one Xiaomi) and a kettle, each in English with Chinese.
async fn catalog(app: &TestApp) -> anyhow::Result<Vec<Value>> {
    let items = [
        (
            "S-1",
            "Sony Noise Cancelling Headphones",
            "索尼 降噪耳机",
            "audio",
            "Sony",
            249_900,
            5,
        ),
        (
            "S-2",
            "Sony Bluetooth Earbuds",
            "索尼 蓝牙耳机",
            "audio",
            "Sony",
            99_900,
            0,
        ),
        (
            "S-3",
            "Xiaomi Bluetooth Earbuds",
            "小米 蓝牙耳机",
            "audio",
            "Xiaomi",
            19_900,
            9,
        ),
        (
            "S-4",
            "Xiaomi Electric Kettle",
            "小米 电热水壶",
            "kitchen",
            "Xiaomi",
            9_900,
            3,
        ),
    ];
    let mut created = Vec::new();
    for (sku, en, zh, category, brand, amount, stock) in items {
        let mut body = product_body(sku);
        body["name"] = json!(en);
        body["description"] = json!(format!("{en}, a shopper's favourite"));
        body["translations"] = json!({"zh-CN": {"name": zh, "description": format!("{zh}，热销")}});
        body["category"] = json!(category);
        body["specs"] = json!({"brand": brand});
        body["price"] = json!({"amount": amount, "currency": "CNY"});
        body["initial_stock"] = json!(stock);
        body["tags"] = json!([]);
        created.push(app.created(&body).await?);
    }
    Ok(created)
}

async fn skus(app: &TestApp, query: &str) -> anyhow::Result<Vec<String>> {
    let reply = app.get(&format!("/api/products?{query}")).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "{query}: {reply:?}");
    reply.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| string(&item["sku"]))
        .collect()
}

#[tokio::test]
async fn both_languages_are_searchable_and_lang_picks_the_answers_language() -> TestResult {
    let app = spawn_app().await;
    catalog(&app).await?;
    let mut chinese = skus(&app, &format!("q={}", encode("耳机"))).await?;
    chinese.sort();
    let mut english = skus(&app, "q=earbuds%20headphones").await?;
    english.sort();
    assert_eq!(chinese, ["S-1", "S-2", "S-3"]);
    assert!(english.is_empty(), "every word must match: {english:?}");
    assert_eq!(
        skus(&app, &format!("q={}", encode("索尼 earbuds"))).await?,
        ["S-2"]
    );

    let zh = app.get("/api/products?q=kettle&lang=zh-CN").await?;
    assert_eq!(zh.body["items"][0]["name"], "小米 电热水壶", "{zh:?}");
    assert_eq!(zh.body["items"][0]["lang"], "zh-CN");
    let header = app
        .send(
            app.client
                .get(app.url("/api/products?q=kettle"))
                .header("Accept-Language", "zh-CN,zh;q=0.9,en;q=0.8"),
        )
        .await?;
    assert_eq!(header.body["items"][0]["name"], "小米 电热水壶");
    let english = app
        .send(
            app.client
                .get(app.url("/api/products?q=kettle&lang=en"))
                .header("Accept-Language", "zh-CN"),
        )
        .await?;
    assert_eq!(english.body["items"][0]["name"], "Xiaomi Electric Kettle");
    let id = string(&zh.body["items"][0]["id"])?;
    let page = app.get(&format!("/api/products/{id}?lang=zh")).await?;
    assert_eq!(page.body["name"], "小米 电热水壶");
    assert_eq!(page.body["translations"]["zh-CN"]["name"], "小米 电热水壶");
    Ok(())
}

#[tokio::test]
async fn facets_filters_and_sort_orders_answer_together() -> TestResult {
    let app = spawn_app().await;
    catalog(&app).await?;
    let reply = app
        .get(&format!("/api/products?q={}&brand=sony", encode("耳机")))
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["total"], 2);
    // The brand facet ignores the brand filter: Xiaomi's earbuds are still counted.
    assert_eq!(
        reply.body["facets"]["brand"],
        json!([{"value": "Sony", "count": 2}, {"value": "Xiaomi", "count": 1}])
    );
    assert_eq!(
        reply.body["facets"]["category"],
        json!([{"value": "audio", "count": 2}])
    );
    assert_eq!(
        reply.body["facets"]["price"],
        json!([
            {"min": 50_000, "max": 100_000, "count": 1},
            {"min": 100_000, "max": null, "count": 1},
        ])
    );

    assert_eq!(
        skus(&app, "sort=price_asc").await?,
        ["S-4", "S-3", "S-2", "S-1"]
    );
    assert_eq!(
        skus(&app, "sort=price_desc&in_stock=true").await?,
        ["S-1", "S-3", "S-4"]
    );
    assert_eq!(skus(&app, "sort=name&category=kitchen").await?, ["S-4"]);
    assert_eq!(
        skus(&app, "sort=name&lang=zh-CN&brand=XIAOMI").await?,
        ["S-4", "S-3"],
        "小米 电热水壶 sorts before 小米 蓝牙耳机 in byte order"
    );
    assert_eq!(
        skus(&app, "min_price=10000&max_price=100000").await?,
        ["S-3", "S-2"]
    );
    // Unknown filter values are no error: they match nothing.
    assert!(skus(&app, "brand=nokia").await?.is_empty());
    assert!(skus(&app, "category=garden").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn relevance_pages_walk_every_match_once() -> TestResult {
    let app = spawn_app().await;
    catalog(&app).await?;
    let mut seen = Vec::new();
    let mut path = format!("/api/products?q={}&limit=1", encode("耳机"));
    for _ in 0..10 {
        let page = app.get(&path).await?;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        for item in page.body["items"].as_array().into_iter().flatten() {
            seen.push(string(&item["sku"])?);
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/api/products?q={}&limit=1&cursor={cursor}", encode("耳机"));
            }
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["S-1", "S-2", "S-3"]);
    Ok(())
}

#[tokio::test]
async fn suggest_completes_what_is_typed_in_either_language() -> TestResult {
    let app = spawn_app().await;
    catalog(&app).await?;
    let names = |reply: &crate::helpers::Reply| -> Vec<String> {
        reply.body["suggestions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect()
    };
    let typed = app.get("/api/products/suggest?q=ket").await?;
    assert_eq!(typed.status, StatusCode::OK, "{typed:?}");
    assert_eq!(names(&typed), ["Xiaomi Electric Kettle"]);
    let zh = app
        .get(&format!(
            "/api/products/suggest?lang=zh-CN&q={}",
            encode("小米 电热")
        ))
        .await?;
    assert_eq!(names(&zh), ["小米 电热水壶"]);
    let sony = app
        .get("/api/products/suggest?q=sony%20blu&limit=5")
        .await?;
    assert_eq!(names(&sony), ["Sony Bluetooth Earbuds"]);
    for nothing in ["", "%20%20", "%21%3F", encode("😀").as_str()] {
        let reply = app
            .get(&format!("/api/products/suggest?q={nothing}"))
            .await?;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["suggestions"], json!([]), "{nothing}");
    }
    for (query, field) in [
        (format!("q={}", "a".repeat(51)), "q"),
        ("q=a&limit=0".to_owned(), "limit"),
        ("q=a&limit=21".to_owned(), "limit"),
        ("q=a&lang=xx".to_owned(), "lang"),
    ] {
        let reply = app.get(&format!("/api/products/suggest?{query}")).await?;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(reply.fields(), [field]);
    }
    Ok(())
}

/// Every one of these answers 200 (possibly empty) or a 4xx problem document, fast: the
/// 2-second bound guards against hangs and pathological queries, it is no performance target.
#[tokio::test]
async fn bad_input_is_a_4xx_or_an_empty_answer_never_a_500_or_a_slow_one() -> TestResult {
    let app = spawn_app().await;
    catalog(&app).await?;
    let long_latin = "headphones ".repeat(1_000);
    let long_chinese = "蓝牙耳机".repeat(900);
    let many_words = (0..45)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let queries: Vec<String> = vec![
        "q=".into(),
        "q=%20%20%20".into(),
        format!("q={}", encode("!?.,;:()[]{}<>\"'`~@#$%^&*-_=+|\\/")),
        format!("q={}", encode("😀🎧🔥")),
        format!("q={}", encode("。，！？、")),
        format!("q={}", encode("ヘッドホン")),
        format!("q={}", encode("наушники")),
        format!("q={}", encode("سماعات")),
        format!("q={}", encode("\u{0}\u{7}\u{202e}")),
        format!("q={}", encode(&many_words)),
        format!("q={}", encode(&long_latin)),
        format!("q={}", encode(&long_chinese)),
        format!("q={}", encode(&"x".repeat(10 * 1024))),
        "q=%FF%FE".into(),
        "q=a&q=b".into(),
        "brand=".into(),
        format!("brand={}", "b".repeat(500)),
        "category=no-such-category".into(),
        "min_price=500000&max_price=10".into(),
        "min_price=99999999999999999999999".into(),
        "in_stock=true&in_stock=false".into(),
        "sort=price_asc&cursor=%00%01".into(),
        format!("cursor={}", "Z".repeat(4_000)),
        "cursor=eyJzIjoicmVsZXZhbmNlIiwiayI6Ik5hTiIsImlkIjoieCJ9".into(),
        "limit=-1".into(),
        "limit=1e9".into(),
        "lang=%F0%9F%98%80".into(),
        "unknown=1".into(),
    ];
    let suggests: Vec<String> = vec![
        format!("q={}", encode(&"x".repeat(10 * 1024))),
        format!("q={}", encode("😀")),
        "q=%FF".into(),
        format!("q={}", encode("蓝")),
        "q=a".into(),
    ];
    let paths = queries
        .iter()
        .map(|q| format!("/api/products?{q}"))
        .chain(
            suggests
                .iter()
                .map(|q| format!("/api/products/suggest?{q}")),
        )
        .chain([
            "/api/products/not-a-uuid".to_owned(),
            "/api/products/00000000-0000-0000-0000-000000000000?lang=xx".to_owned(),
        ]);
    for path in paths {
        let started = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(2),
            app.client.get(app.url(&path)).send(),
        )
        .await
        .map_err(|_| anyhow::anyhow!("{path}: no answer within 2 s"))??;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let shown: String = path.chars().take(80).collect();
        assert!(
            status == StatusCode::OK || status.is_client_error(),
            "{shown}: {status}"
        );
        if status.is_client_error() {
            assert_eq!(content_type, "application/problem+json", "{shown}");
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{shown}");
    }
    Ok(())
}
