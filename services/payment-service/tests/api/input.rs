//! Bad input: every problem is a 4xx problem document naming what is wrong; card numbers
//! never reach the database.

use futures::TryStreamExt as _;
use mongodb::bson::{Bson, Document};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{DECLINED_CARD, GOOD_CARD, POOR_CARD, TestResult, card, spawn_app};

#[tokio::test]
async fn bad_card_input_is_422_naming_the_field() -> TestResult {
    let app = spawn_app().await;
    let order = app.awaiting_order(100).await?;
    let cases = [
        (
            json!({"number": "4242424242424241", "exp_month": 1, "exp_year": 2035, "cvc": "123"}),
            "card.number",
        ),
        (
            json!({"number": "4242", "exp_month": 1, "exp_year": 2035, "cvc": "123"}),
            "card.number",
        ),
        (
            json!({"number": GOOD_CARD, "exp_month": 13, "exp_year": 2035, "cvc": "123"}),
            "card.exp_month",
        ),
        (
            json!({"number": GOOD_CARD, "exp_month": 1, "exp_year": 2020, "cvc": "123"}),
            "card.exp_year",
        ),
        (
            json!({"number": GOOD_CARD, "exp_month": 1, "exp_year": 2035, "cvc": "12"}),
            "card.cvc",
        ),
        (
            json!({"number": GOOD_CARD, "exp_month": "1", "exp_year": 2035, "cvc": "123"}),
            "card.exp_month",
        ),
        (
            json!({"number": GOOD_CARD, "exp_year": 2035, "cvc": "123"}),
            "exp_month",
        ),
    ];
    for (card, field) in cases {
        let reply = app.pay("k", order, card.clone()).await?;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{card}: {reply:?}"
        );
        assert_eq!(reply.fields(), [field], "{card}: {reply:?}");
        assert_eq!(
            reply.body["type"],
            "https://ferroshop.dev/problems/validation"
        );
    }
    let bad_order = app
        .pay_as(
            &app.token,
            "k",
            &json!({"order_id": "nope", "card": card(GOOD_CARD)}),
        )
        .await?;
    assert_eq!(bad_order.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_order.fields(), ["order_id"]);

    let no_key = app
        .send(
            app.client
                .post(app.url("/api/payments"))
                .bearer_auth(&app.token)
                .json(&json!({"order_id": order, "card": card(GOOD_CARD)})),
        )
        .await?;
    assert_eq!(no_key.status, StatusCode::BAD_REQUEST, "{no_key:?}");
    let no_token = app
        .send(
            app.client
                .post(app.url("/api/payments"))
                .header("Idempotency-Key", "k")
                .json(&json!({"order_id": order, "card": card(GOOD_CARD)})),
        )
        .await?;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
    let not_json = app
        .send(
            app.client
                .post(app.url("/api/payments"))
                .bearer_auth(&app.token)
                .header("Idempotency-Key", "k")
                .header("content-type", "application/json")
                .body("{nope"),
        )
        .await?;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    let bad_filter = app.get("/api/payments?order_id=123").await?;
    assert_eq!(bad_filter.fields(), ["order_id"]);
    assert!(app.psp_charges(order).await?.is_empty(), "nothing charged");
    Ok(())
}

#[tokio::test]
async fn card_numbers_and_cvcs_are_never_stored() -> TestResult {
    let app = spawn_app().await;
    let order = app.awaiting_order(100).await?;
    let secret_cvc = "8642";
    for (key, number) in [("a", DECLINED_CARD), ("b", POOR_CARD), ("c", GOOD_CARD)] {
        let mut card = card(number);
        card["cvc"] = json!(secret_cvc);
        let reply = app.pay(key, order, card).await?;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    }
    app.wait_for_empty_outbox().await?;
    let mut scanned = 0;
    for collection in app.db.list_collection_names().await? {
        let documents: Vec<Document> = app
            .db
            .collection::<Document>(&collection)
            .find(mongodb::bson::doc! {})
            .await?
            .try_collect()
            .await?;
        for document in documents {
            let text = document.to_string();
            let mut leaks = Vec::new();
            find_card_data(&Bson::Document(document), "", secret_cvc, &mut leaks);
            assert!(leaks.is_empty(), "{collection}: {leaks:?} in {text}");
            scanned += 1;
        }
    }
    assert!(
        scanned >= 6,
        "payments, claims and log entries were scanned: {scanned}"
    );
    Ok(())
}

/// Walks a stored document and names every place that holds card data: a field called like
/// a card field, any card number inside a string, or the CVC as a number or as a run of
/// digits of its own in a string. Generated identifiers (UUIDs, hex digests) are random
/// hex (UUIDs, digests, provider references), so the CVC's digits can occur inside them by
/// chance (a fingerprint once held `c864207…`); they are skipped for the CVC check, not
/// for the card numbers.
fn find_card_data(value: &Bson, path: &str, cvc: &str, leaks: &mut Vec<String>) {
    match value {
        Bson::Document(document) => {
            for (key, value) in document {
                if matches!(
                    key.as_str(),
                    "cvc" | "cvv" | "number" | "pan" | "card_number"
                ) {
                    leaks.push(format!("field {path}.{key}"));
                }
                find_card_data(value, &format!("{path}.{key}"), cvc, leaks);
            }
        }
        Bson::Array(values) => {
            for (index, value) in values.iter().enumerate() {
                find_card_data(value, &format!("{path}[{index}]"), cvc, leaks);
            }
        }
        Bson::String(text) => {
            for number in [DECLINED_CARD, POOR_CARD, GOOD_CARD] {
                if text.contains(number) {
                    leaks.push(format!("card number in {path}"));
                }
            }
            // Provider references look like `ch_<32 hex>`.
            let unprefixed = text.split_once('_').map_or(text.as_str(), |(_, rest)| rest);
            let generated_id = uuid::Uuid::parse_str(text).is_ok()
                || (unprefixed.len() >= 16 && unprefixed.chars().all(|c| c.is_ascii_hexdigit()));
            let cvc_as_digit_run = text
                .split(|c: char| !c.is_ascii_digit())
                .any(|run| run == cvc);
            if cvc_as_digit_run && !generated_id {
                leaks.push(format!("CVC in {path}"));
            }
        }
        Bson::Int32(number) if number.to_string() == cvc => leaks.push(format!("CVC at {path}")),
        Bson::Int64(number) if number.to_string() == cvc => leaks.push(format!("CVC at {path}")),
        _ => {}
    }
}

#[test]
fn the_card_data_scan_finds_leaks_and_ignores_digits_inside_identifiers() {
    let mut leaks = Vec::new();
    let leaky = mongodb::bson::doc! {
        "card": { "cvc": "8642" },
        "log": [format!("charged {GOOD_CARD}"), "cvc 8642".to_owned()],
        "amount": 8642,
    };
    find_card_data(&Bson::Document(leaky), "", "8642", &mut leaks);
    assert_eq!(leaks.len(), 5, "{leaks:?}");
    leaks.clear();
    let clean = mongodb::bson::doc! {
        "fingerprint": "01a71d16d04571e1e5b1dc9c864207824841b211af74eb10aa51264d4a25d336",
        "_id": "0e58e92d-0a31-8642-a25c-f40168faf7ff",
        "provider_reference": "ch_7befcdb559e343769f61488642fa88",
        "card_last4": "4242",
    };
    find_card_data(&Bson::Document(clean), "", "8642", &mut leaks);
    assert!(leaks.is_empty(), "{leaks:?}");
}
