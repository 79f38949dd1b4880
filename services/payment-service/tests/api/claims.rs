//! Order claims left behind: the reconciler releases abandoned ones however many orders have
//! been paid before, and looks at a paid order's claim only once.

use mongodb::bson::{self, Document, doc};
use reqwest::StatusCode;
use testkit::mongo::collection_scans;
use uuid::Uuid;

use crate::helpers::{DEADLINE, GOOD_CARD, TestResult, card, eventually, spawn_app_with};

#[tokio::test]
async fn an_abandoned_claim_is_released_behind_many_paid_orders() -> TestResult {
    let app = spawn_app_with(|config| {
        config.reconcile_stale_after = std::time::Duration::from_secs(1);
    })
    .await;
    let claims = app.db.collection::<Document>("payment_claims");
    let paid_order = app.awaiting_order(100).await?;
    let paid = app.pay("paid", paid_order, card(GOOD_CARD)).await?;
    assert_eq!(paid.status, StatusCode::CREATED, "{paid:?}");
    let holder = paid.id();

    // More claims of paid orders than one reconciler pass reads (100), all older than the
    // abandoned one, as a shop that has been running for a while has.
    let long_ago = |minutes: i64| {
        bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - minutes * 60_000)
    };
    let older: Vec<Document> = (0..150)
        .map(|index| {
            doc! {
                "_id": Uuid::now_v7().to_string(),
                "payment_id": &holder,
                "at": long_ago(600 - index),
                "open": true,
            }
        })
        .collect();
    claims.insert_many(older).await?;
    // A crash between the claim and the payment's insert: the claim's payment never existed.
    // Taken just now, so it turns stale (and released) a second from now, after the payment
    // below has met it: one taken minutes ago could be released by a reconciler pass (every
    // 200 ms) before that payment arrives.
    let stuck_order = app.awaiting_order(200).await?;
    claims
        .insert_one(doc! {
            "_id": stuck_order.to_string(),
            "payment_id": Uuid::new_v4().to_string(),
            "at": bson::DateTime::now(),
            "open": true,
        })
        .await?;
    let refused = app.pay("stuck", stuck_order, card(GOOD_CARD)).await?;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");

    eventually(DEADLINE, || async {
        let held = claims
            .find_one(doc! {"_id": stuck_order.to_string()})
            .await?;
        anyhow::ensure!(held.is_none(), "still held: {held:?}");
        Ok(())
    })
    .await?;
    let retried = app.pay("stuck", stuck_order, card(GOOD_CARD)).await?;
    assert_eq!(retried.status, StatusCode::CREATED, "{retried:?}");
    assert_eq!(retried.body["status"], "succeeded", "{retried:?}");

    // Claims of successful payments stay, marked settled so no pass reads them again.
    eventually(DEADLINE, || async {
        let unsettled = claims
            .count_documents(doc! {"payment_id": &holder, "open": true})
            .await?;
        anyhow::ensure!(unsettled == 0, "{unsettled} claims not settled yet");
        Ok(())
    })
    .await?;
    assert_eq!(
        claims.count_documents(doc! {"payment_id": &holder}).await?,
        151,
        "a settled claim is kept: it is what refuses a second charge"
    );
    Ok(())
}

#[tokio::test]
async fn claims_written_before_the_open_flag_are_checked_once_at_start() -> TestResult {
    let app = spawn_app_with(|config| config.run_reconciler = false).await;
    let claims = app.db.collection::<Document>("payment_claims");
    let paid_order = app.awaiting_order(100).await?;
    let paid = app.pay("paid", paid_order, card(GOOD_CARD)).await?;
    assert_eq!(paid.status, StatusCode::CREATED, "{paid:?}");
    let stuck_order = app.awaiting_order(200).await?;
    // As an older version left them: no `open` field.
    claims
        .update_one(
            doc! {"_id": paid_order.to_string()},
            doc! {"$unset": {"open": ""}},
        )
        .await?;
    claims
        .insert_one(doc! {
            "_id": stuck_order.to_string(),
            "payment_id": Uuid::new_v4().to_string(),
            "at": bson::DateTime::now(),
        })
        .await?;

    let _replica = crate::helpers::spawn_replica(&app, |_| {}).await;
    eventually(DEADLINE, || async {
        let stuck = claims
            .find_one(doc! {"_id": stuck_order.to_string()})
            .await?;
        anyhow::ensure!(stuck.is_none(), "abandoned claim still held: {stuck:?}");
        let kept = claims
            .find_one(doc! {"_id": paid_order.to_string()})
            .await?
            .ok_or_else(|| anyhow::anyhow!("the paid order's claim is gone"))?;
        anyhow::ensure!(kept.get_bool("open") == Ok(false), "not settled: {kept:?}");
        Ok(())
    })
    .await?;
    Ok(())
}

/// The reconciler settles a pass's paid claims in one update. It must read them by `_id`: as
/// an `$or` of pairs the local server scanned every claim ever taken, holding the collection
/// (and every payment's claim) for 0.4-1 s once 51,000 orders had been paid. And each claim
/// is settled only with the payment it was read with.
#[tokio::test]
async fn settling_claims_reads_them_by_id_and_only_with_their_own_payment() -> TestResult {
    let client = mongodb::Client::with_uri_str(crate::helpers::mongodb_url()).await?;
    let db = client.database(&crate::helpers::fresh_database().await?);
    let payments = payment_service::store::payments::Payments::new(&db);
    let claims = db.collection::<Document>("payment_claims");
    let claim = |order: &str, payment: &str| {
        doc! {"_id": order, "payment_id": payment, "at": bson::DateTime::now(), "open": true}
    };
    // Claims of other orders, so that a scan would have something to read.
    let others: Vec<Document> = (0..200)
        .map(|n| claim(&format!("order-{n}"), &format!("payment-{n}")))
        .collect();
    claims.insert_many(others).await?;
    // `changed`: its claim passed to another payment after the reconciler read it.
    claims
        .insert_many([
            claim("paid-1", "payment-a"),
            claim("paid-2", "payment-b"),
            claim("changed", "payment-new"),
        ])
        .await?;
    let namespace = format!("{}.payment_claims", db.name());
    let before = collection_scans(&db, &namespace).await?;

    payments
        .settle_claims(&[
            ("paid-1".into(), "payment-a".into()),
            ("paid-2".into(), "payment-b".into()),
            ("changed".into(), "payment-old".into()),
        ])
        .await?;
    if let (Some(before), Some(after)) = (before, collection_scans(&db, &namespace).await?) {
        assert_eq!(
            after - before,
            0,
            "settling the claims scanned the collection"
        );
    }

    let open = |order: &'static str| {
        let claims = claims.clone();
        async move {
            let claim = claims
                .find_one(doc! {"_id": order})
                .await?
                .ok_or_else(|| anyhow::anyhow!("claim {order} is gone"))?;
            anyhow::Ok(claim.get_bool("open")?)
        }
    };
    assert!(!open("paid-1").await?, "paid-1 not settled");
    assert!(!open("paid-2").await?, "paid-2 not settled");
    assert!(
        open("changed").await?,
        "a claim held by another payment was settled"
    );
    assert_eq!(
        claims.count_documents(doc! {"open": false}).await?,
        2,
        "only the two named claims are settled"
    );
    db.drop().await?;
    Ok(())
}
