//! Bad input: every problem is a 4xx problem document naming what is wrong; card numbers
//! never reach the database.

use futures::TryStreamExt as _;
use mongodb::bson::Document;
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
            for number in [DECLINED_CARD, POOR_CARD, GOOD_CARD] {
                assert!(!text.contains(number), "{collection}: {text}");
            }
            assert!(!text.contains(secret_cvc), "{collection}: {text}");
            assert!(!text.contains("\"cvc\""), "{collection}: {text}");
            scanned += 1;
        }
    }
    assert!(
        scanned >= 6,
        "payments, claims and log entries were scanned: {scanned}"
    );
    Ok(())
}
