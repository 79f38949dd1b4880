//! Single-document atomicity: a guarded update applies its filter and its change as one step,
//! so concurrent writers can never both pass a condition that only one of them may pass, and
//! a unique index lets exactly one of two inserts win.

use futures::future::join_all;
use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;

use crate::helpers::{TestDb, unique_sku};

const UNITS: i64 = 10;
const BUYERS: usize = 50;

/// Relied on by product-service's reservations (`inventory::reserve_plan`: the stock
/// decrement is guarded by `stock.available >= quantity`) and stock adjustments: 50
/// concurrent `updateOne` decrements guarded by `available >= 1` on 10 units succeed exactly
/// 10 times, and the stock ends at 0, never below.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guarded_update_one_decrements_sell_exactly_the_stock() -> anyhow::Result<()> {
    let t = TestDb::new("guarded_update_one").await?;
    let products = t.collection("products");
    products
        .insert_one(doc! {"_id": "p", "stock": {"available": UNITS, "reserved": 0_i64}})
        .await?;
    let attempts = (0..BUYERS).map(|_| {
        let products = products.clone();
        async move {
            products
                .update_one(
                    doc! {"_id": "p", "stock.available": {"$gte": 1_i64}},
                    doc! {"$inc": {"stock.available": -1_i64, "stock.reserved": 1_i64}},
                )
                .await
        }
    });
    let mut sold = 0;
    for outcome in join_all(attempts).await {
        sold += outcome?.modified_count;
    }
    assert_eq!(sold, UNITS as u64, "exactly the stock is sold");
    let product = products.find_one(doc! {"_id": "p"}).await?;
    let stock = product
        .as_ref()
        .and_then(|p| p.get_document("stock").ok())
        .cloned()
        .unwrap_or_default();
    assert_eq!(stock.get_i64("available")?, 0);
    assert_eq!(stock.get_i64("reserved")?, UNITS);
    t.drop().await
}

/// Relied on by `Products::update_at_version` (every product write: the filter carries the
/// version read and the plan's stock condition) and `Reservations::transition` (a status
/// change guarded by the status it leaves): 50 concurrent `findOneAndUpdate` decrements on
/// 10 units return a document exactly 10 times, each showing a distinct remaining stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guarded_find_one_and_update_decrements_sell_exactly_the_stock() -> anyhow::Result<()> {
    let t = TestDb::new("guarded_find_and_modify").await?;
    let products = t.collection("products");
    products
        .insert_one(doc! {"_id": "p", "stock": {"available": UNITS}})
        .await?;
    let attempts = (0..BUYERS).map(|_| {
        let products = products.clone();
        async move {
            products
                .find_one_and_update(
                    doc! {"_id": "p", "stock.available": {"$gte": 1_i64}},
                    doc! {"$inc": {"stock.available": -1_i64}},
                )
                .return_document(ReturnDocument::After)
                .await
        }
    });
    let mut remaining = Vec::new();
    for outcome in join_all(attempts).await {
        if let Some(after) = outcome? {
            remaining.push(after.get_document("stock")?.get_i64("available")?);
        }
    }
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..UNITS).collect::<Vec<_>>(),
        "ten winners, each saw its own decrement"
    );
    t.drop().await
}

/// Relied on by optimistic concurrency: `PATCH /api/products/{id}` (a stale `version` is a
/// 409), `Products::update_at_version` under concurrent reservations, and payment-service's
/// guarded payment updates (a per-document revision): of 20 writers that read version 1,
/// exactly one moves the document to version 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_guard_lets_exactly_one_of_many_writers_win() -> anyhow::Result<()> {
    let t = TestDb::new("version_guard").await?;
    let docs = t.collection("products");
    docs.insert_one(doc! {"_id": "p", "version": 1_i64, "name": "old"})
        .await?;
    let writers = (0..20).map(|n| {
        let docs = docs.clone();
        async move {
            docs.update_one(
                doc! {"_id": "p", "version": 1_i64},
                doc! {"$set": {"name": format!("writer {n}")}, "$inc": {"version": 1_i64}},
            )
            .await
        }
    });
    let mut winners = 0;
    for outcome in join_all(writers).await {
        winners += outcome?.modified_count;
    }
    assert_eq!(winners, 1);
    let product = docs.find_one(doc! {"_id": "p"}).await?.unwrap_or_default();
    assert_eq!(product.get_i64("version")?, 2);
    t.drop().await
}

/// Relied on by every idempotency anchor: `Reservations::begin` (one document per order),
/// `Products::insert` (unique `sku`), payment-service's `Payments::insert` (payment id from
/// the Idempotency-Key) and `Payments::claim` (one claim per order). A second insert under a
/// taken `_id` or unique key fails with error 11000, which `messaging::mongo::is_duplicate_key`
/// recognises; of 20 concurrent inserts under one key exactly one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_key_is_error_11000_and_one_concurrent_insert_wins() -> anyhow::Result<()> {
    let t = TestDb::new("duplicate_key").await?;
    let products = t.collection("products");
    products.create_index(unique_sku()).await?;
    products.insert_one(doc! {"_id": "a", "sku": "S-1"}).await?;

    let same_sku = products
        .insert_one(doc! {"_id": "b", "sku": "S-1"})
        .await
        .err();
    assert!(
        same_sku
            .as_ref()
            .is_some_and(messaging::mongo::is_duplicate_key),
        "unique index: {same_sku:?}"
    );
    let same_id = products
        .insert_one(doc! {"_id": "a", "sku": "S-2"})
        .await
        .err();
    assert!(
        same_id
            .as_ref()
            .is_some_and(messaging::mongo::is_duplicate_key),
        "_id: {same_id:?}"
    );

    let claims = t.collection("claims");
    let inserts = (0..20).map(|n| {
        let claims = claims.clone();
        async move {
            claims
                .insert_one(doc! {"_id": "order-1", "payment_id": format!("pay-{n}")})
                .await
        }
    });
    let mut won = 0;
    for outcome in join_all(inserts).await {
        match outcome {
            Ok(_) => won += 1,
            Err(error) => assert!(messaging::mongo::is_duplicate_key(&error), "{error}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(claims.count_documents(doc! {}).await?, 1);
    t.drop().await
}

/// Relied on by the outbox relay (`messaging::mongo::OutboxRelay`): its removal of published
/// events and a writer's append of a new event may race; both apply, and the flag guarded by
/// "no event left" comes down only when nothing is pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_and_removals_of_array_elements_all_apply() -> anyhow::Result<()> {
    let t = TestDb::new("outbox_race").await?;
    let docs = t.collection("products");
    let first: Vec<Document> = (0..20).map(|n| doc! {"id": format!("e{n}")}).collect();
    docs.insert_one(doc! {"_id": "p", "pending_events": &first, "outbox_pending": true})
        .await?;
    let removals = first.iter().map(|event| {
        let docs = docs.clone();
        let event = event.clone();
        async move {
            docs.update_one(
                doc! {"_id": "p"},
                doc! {"$pullAll": {"pending_events": [event]}},
            )
            .await
        }
    });
    let appends = (20..40).map(|n| {
        let docs = docs.clone();
        async move {
            docs.update_one(
                doc! {"_id": "p"},
                doc! {"$push": {"pending_events": {"id": format!("e{n}")}}, "$set": {"outbox_pending": true}},
            )
            .await
        }
    });
    let (removed, appended) = tokio::join!(join_all(removals), join_all(appends));
    for outcome in removed.into_iter().chain(appended) {
        outcome?;
    }
    let clear_flag = docs
        .update_one(
            doc! {"_id": "p", "pending_events.0": {"$exists": false}},
            doc! {"$set": {"outbox_pending": false}},
        )
        .await?;
    assert_eq!(clear_flag.matched_count, 0, "20 appended events remain");
    let after = docs.find_one(doc! {"_id": "p"}).await?.unwrap_or_default();
    let ids: Vec<String> = after
        .get_array("pending_events")?
        .iter()
        .filter_map(|e| e.as_document()?.get_str("id").ok().map(str::to_owned))
        .collect();
    let expected: Vec<String> = (20..40).map(|n| format!("e{n}")).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| id[1..].parse::<u32>().unwrap_or(0));
    assert_eq!(sorted, expected);
    assert!(after.get_bool("outbox_pending")?);
    t.drop().await
}

/// Relied on by every reader of a document another process writes: the relay reading
/// `pending_events` while a reservation appends one, `Products::get` before a guarded update,
/// payment-service reading a payment that the reconciler changes. A reader sees a document
/// before or after an update, never half-way: two fields that every update sets to the same
/// value are always equal in what 200 concurrent reads return.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_an_update_half_applied() -> anyhow::Result<()> {
    let t = TestDb::new("torn_reads").await?;
    let docs = t.collection("products");
    docs.insert_one(doc! {"_id": "p", "a": 0_i64, "b": 0_i64, "log": []})
        .await?;
    let writers = (1..=100_i64).map(|n| {
        let docs = docs.clone();
        async move {
            docs.update_one(
                doc! {"_id": "p"},
                doc! {"$set": {"a": n, "b": n}, "$push": {"log": {"$each": [n], "$slice": -5}}},
            )
            .await
            .map(|_| ())
        }
    });
    let readers = (0..200).map(|_| {
        let docs = docs.clone();
        async move {
            let seen = docs.find_one(doc! {"_id": "p"}).await?.unwrap_or_default();
            let (a, b) = (seen.get_i64("a")?, seen.get_i64("b")?);
            anyhow::ensure!(a == b, "half an update: a = {a}, b = {b}");
            Ok(())
        }
    });
    let (written, read) = tokio::join!(join_all(writers), join_all(readers));
    for outcome in written {
        outcome?;
    }
    for outcome in read {
        outcome?;
    }
    t.drop().await
}

/// Relied on by the outbox relay's claim (`messaging::mongo::OutboxRelay`): a
/// `findOneAndUpdate` guarded by "no claim, or an expired one" (`$or` of `$exists: false` and
/// `$lt: now`) lets exactly one of many relays claim a document, and returns the pending events
/// it claimed in the same step.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_relay_claims_a_document() -> anyhow::Result<()> {
    use mongodb::bson::DateTime;

    let t = TestDb::new("relay_claim").await?;
    let docs = t.collection("products");
    let expired = DateTime::from_millis(DateTime::now().timestamp_millis() - 1_000);
    docs.insert_many([
        doc! {"_id": "fresh", "pending_events": [{"id": "e1"}], "outbox_pending": true},
        doc! {"_id": "stale", "pending_events": [{"id": "e2"}], "outbox_pending": true,
        "outbox_claimed_until": expired},
    ])
    .await?;
    for id in ["fresh", "stale"] {
        let relays = (0..10).map(|_| {
            let docs = docs.clone();
            async move {
                let now = DateTime::now();
                let until = DateTime::from_millis(now.timestamp_millis() + 15_000);
                docs.find_one_and_update(
                    doc! {"_id": id, "$or": [
                        {"outbox_claimed_until": {"$exists": false}},
                        {"outbox_claimed_until": {"$lt": now}},
                    ]},
                    doc! {"$set": {"outbox_claimed_until": until}},
                )
                .projection(doc! {"pending_events": 1})
                .return_document(ReturnDocument::After)
                .await
            }
        });
        let mut claimed = Vec::new();
        for outcome in join_all(relays).await {
            if let Some(document) = outcome? {
                claimed.push(document.get_array("pending_events")?.len());
            }
        }
        assert_eq!(claimed, [1], "one relay claims {id}, with its events");
    }
    t.drop().await
}
