//! Queries, as the services send them.

use futures::TryStreamExt as _;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use testkit::mongo::{collection_scans, documents_examined};

use crate::helpers::{TestDb, unique_sku};

/// Twelve products in two categories, with prices that repeat so the `_id` tie-break counts.
async fn catalog(t: &TestDb) -> anyhow::Result<mongodb::Collection<Document>> {
    let products = t.collection("products");
    products
        .create_index(
            IndexModel::builder()
                .keys(doc! {"price.amount": 1, "_id": 1})
                .build(),
        )
        .await?;
    products
        .create_index(
            IndexModel::builder()
                .keys(doc! {"category": 1, "price.amount": 1})
                .build(),
        )
        .await?;
    let docs: Vec<Document> = (0..12_i64)
        .map(|n| {
            doc! {
                "_id": format!("p{n:02}"),
                "category": if n % 2 == 0 { "audio" } else { "kitchen" },
                "name": format!("Product {n}"),
                "active": n != 5,
                "price": {"amount": (n % 4) * 100, "currency": "EUR"},
                "stock": {"available": n % 3, "reserved": 0_i64},
                "images": [{"url": format!("https://img/{n}.jpg"), "alt": if n % 2 == 0 { "front" } else { "side" }}],
            }
        })
        .collect();
    products.insert_many(docs).await?;
    Ok(products)
}

async fn ids(
    products: &mongodb::Collection<Document>,
    filter: Document,
    sort: Document,
    limit: i64,
) -> anyhow::Result<Vec<String>> {
    let found: Vec<Document> = products
        .find(filter)
        .sort(sort)
        .limit(limit)
        .await?
        .try_collect()
        .await?;
    Ok(found
        .iter()
        .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
        .collect())
}

/// The numeric `_id`s of the documents matching `filter`, in ascending order.
async fn sorted_number_ids(
    docs: &mongodb::Collection<Document>,
    filter: Document,
) -> anyhow::Result<Vec<i64>> {
    let mut found: Vec<i64> = docs
        .find(filter)
        .await?
        .try_collect::<Vec<Document>>()
        .await?
        .iter()
        .map(|d| d.get_i64("_id"))
        .collect::<Result<_, _>>()?;
    found.sort_unstable();
    Ok(found)
}

/// Relied on by product-service's listings (`store::products::list_filter`: sort by
/// `price.amount` with `_id` as tie-break, ascending and descending, limit + 1 to tell whether
/// another page exists) and their keyset pagination (`$or` of "key beyond" and "same key, id
/// beyond").
#[tokio::test]
async fn sort_and_limit_on_an_indexed_nested_field_with_id_tie_break() -> anyhow::Result<()> {
    let t = TestDb::new("sort_limit").await?;
    let products = catalog(&t).await?;
    let ascending = ids(&products, doc! {}, doc! {"price.amount": 1, "_id": 1}, 5).await?;
    assert_eq!(ascending, ["p00", "p04", "p08", "p01", "p05"]);
    let descending = ids(&products, doc! {}, doc! {"price.amount": -1, "_id": -1}, 4).await?;
    assert_eq!(descending, ["p11", "p07", "p03", "p10"]);
    // The next page after (100, p05), ascending.
    let next = ids(
        &products,
        doc! {"$or": [
            {"price.amount": {"$gt": 100_i64}},
            {"price.amount": 100_i64, "_id": {"$gt": "p05"}},
        ]},
        doc! {"price.amount": 1, "_id": 1},
        3,
    )
    .await?;
    assert_eq!(next, ["p09", "p02", "p06"]);
    t.drop().await
}

/// Relied on by product-service's listing filters (`list_filter`: `active`, `category`,
/// `price.amount` range, `stock.available > 0` under `$and`) and the newest-first default
/// sort on `_id`: filters on nested fields combine with a sort and a limit.
#[tokio::test]
async fn filters_on_nested_fields_combine_with_sort_and_limit() -> anyhow::Result<()> {
    let t = TestDb::new("nested_filter").await?;
    let products = catalog(&t).await?;
    let found = ids(
        &products,
        doc! {"$and": [
            {"active": true},
            {"category": "kitchen"},
            {"price.amount": {"$gte": 100_i64}},
            {"price.amount": {"$lte": 300_i64}},
            {"stock.available": {"$gt": 0_i64}},
        ]},
        doc! {"_id": -1},
        10,
    )
    .await?;
    // kitchen = odd; p05 inactive; available = n % 3 > 0 rules out p03 and p09.
    assert_eq!(found, ["p11", "p07", "p01"]);
    t.drop().await
}

/// Relied on by payment-service (`Payments::of_order`: `status` in a set) and the outbox
/// relay's start-up scan for documents written before the outbox flag
/// (`pending_events.0` exists and the flag is not `true`).
#[tokio::test]
async fn in_exists_and_ne_select_as_mongodb_does() -> anyhow::Result<()> {
    let t = TestDb::new("in_exists").await?;
    let payments = t.collection("payments");
    payments
        .insert_many([
            doc! {"_id": "a", "order_id": "o1", "status": "succeeded", "pending_events": []},
            doc! {"_id": "b", "order_id": "o1", "status": "failed", "pending_events": [{"id": "e"}]},
            doc! {"_id": "c", "order_id": "o1", "status": "pending", "pending_events": [{"id": "e"}], "outbox_pending": true},
            doc! {"_id": "d", "order_id": "o2", "status": "succeeded"},
        ])
        .await?;
    let in_set = ids(
        &payments,
        doc! {"order_id": "o1", "status": {"$in": ["succeeded", "pending"]}},
        doc! {"_id": 1},
        10,
    )
    .await?;
    assert_eq!(in_set, ["a", "c"]);
    let unflagged = ids(
        &payments,
        doc! {"pending_events.0": {"$exists": true}, "outbox_pending": {"$ne": true}},
        doc! {"_id": 1},
        10,
    )
    .await?;
    assert_eq!(unflagged, ["b"]);
    let empty = ids(
        &payments,
        doc! {"pending_events.0": {"$exists": false}},
        doc! {"_id": 1},
        10,
    )
    .await?;
    assert_eq!(
        empty,
        ["a", "d"],
        "an empty or missing array has no element 0"
    );
    t.drop().await
}

/// Relied on by queries over arrays of sub-documents (a product's `images`, a document's
/// `pending_events`): `$elemMatch` needs one element to meet every condition, where two
/// plain dotted conditions may be met by different elements.
#[tokio::test]
async fn elem_match_needs_one_element_to_meet_every_condition() -> anyhow::Result<()> {
    let t = TestDb::new("elem_match").await?;
    let docs = t.collection("products");
    docs.insert_many([
        doc! {"_id": "both", "images": [{"url": "a.jpg", "alt": "front"}]},
        doc! {"_id": "split", "images": [{"url": "a.jpg", "alt": "side"}, {"url": "b.jpg", "alt": "front"}]},
    ])
    .await?;
    let matched = ids(
        &docs,
        doc! {"images": {"$elemMatch": {"url": "a.jpg", "alt": "front"}}},
        doc! {"_id": 1},
        10,
    )
    .await?;
    assert_eq!(matched, ["both"]);
    let dotted = ids(
        &docs,
        doc! {"images.url": "a.jpg", "images.alt": "front"},
        doc! {"_id": 1},
        10,
    )
    .await?;
    assert_eq!(dotted, ["both", "split"]);
    t.drop().await
}

/// Relied on by product-service's text filter (`list_filter`: an escaped literal as a
/// case-insensitive `$regex` over name, description and tags, under `$or`).
#[tokio::test]
async fn a_case_insensitive_regex_matches_strings_and_array_elements() -> anyhow::Result<()> {
    let t = TestDb::new("regex").await?;
    let docs = t.collection("products");
    docs.insert_many([
        doc! {"_id": "a", "name": "Wireless Headphones", "tags": ["audio"]},
        doc! {"_id": "b", "name": "Kettle", "tags": ["kitchen", "HEADPHONES-stand"]},
        doc! {"_id": "c", "name": "Toaster (2 slots)", "tags": []},
    ])
    .await?;
    let regex = doc! {"$regex": "headphones", "$options": "i"};
    let found = ids(
        &docs,
        doc! {"$or": [{"name": regex.clone()}, {"tags": regex}]},
        doc! {"_id": 1},
        10,
    )
    .await?;
    assert_eq!(found, ["a", "b"]);
    let literal = ids(
        &docs,
        doc! {"name": {"$regex": r"\(2 slots\)", "$options": "i"}},
        doc! {"_id": 1},
        10,
    )
    .await?;
    assert_eq!(literal, ["c"]);
    t.drop().await
}

/// Relied on by payment-service's guarded updates (`Payments::update_guarded`): a payment
/// stored before it carried a `revision` is matched by `{revision: {$in: [0, null]}}`, since
/// `null` in a filter matches a missing field, and the first guarded update creates the field.
#[tokio::test]
async fn null_in_a_filter_matches_a_missing_field() -> anyhow::Result<()> {
    let t = TestDb::new("null_missing").await?;
    let payments = t.collection("payments");
    payments
        .insert_many([
            doc! {"_id": "old"},
            doc! {"_id": "zero", "revision": 0_i64},
            doc! {"_id": "later", "revision": 3_i64},
        ])
        .await?;
    let matched = ids(
        &payments,
        doc! {"revision": {"$in": [0_i64, mongodb::bson::Bson::Null]}},
        doc! {"_id": 1},
        10,
    )
    .await?;
    assert_eq!(matched, ["old", "zero"]);
    let updated = payments
        .update_one(
            doc! {"_id": "old", "revision": {"$in": [0_i64, mongodb::bson::Bson::Null]}},
            doc! {"$set": {"status": "refunding"}, "$inc": {"revision": 1_i64}},
        )
        .await?;
    assert_eq!(updated.modified_count, 1);
    let old = payments
        .find_one(doc! {"_id": "old"})
        .await?
        .unwrap_or_default();
    assert_eq!(old.get_i64("revision")?, 1);
    t.drop().await
}

/// Relied on by every service's start-up (`Products::ensure_indexes`, `Reservations` and
/// payment-service's indexes): creating indexes that already exist, several in one
/// `createIndexes`, is a no-op, so every replica and every restart runs it; a unique index
/// keeps refusing duplicates afterwards.
#[tokio::test]
async fn creating_existing_indexes_again_is_a_no_op() -> anyhow::Result<()> {
    let t = TestDb::new("indexes_again").await?;
    let products = t.collection("products");
    let indexes = || {
        [
            unique_sku(),
            IndexModel::builder()
                .keys(doc! {"price.amount": 1, "_id": 1})
                .build(),
            IndexModel::builder()
                .keys(doc! {"outbox_pending": 1})
                .build(),
        ]
    };
    products.create_indexes(indexes()).await?;
    products.insert_one(doc! {"_id": 1, "sku": "A"}).await?;
    products.create_indexes(indexes()).await?;
    products.create_indexes(indexes()).await?;
    let duplicate = products.insert_one(doc! {"_id": 2, "sku": "A"}).await.err();
    assert!(
        duplicate
            .as_ref()
            .is_some_and(messaging::mongo::is_duplicate_key),
        "{duplicate:?}"
    );
    t.drop().await
}

/// The outbox relay empties a document's `pending_events` only while the array holds exactly
/// the events it published: `$size` plus `$all` over the events' ids (`messaging::mongo::outbox`,
/// `publish_document`). An `_id` equality beside other conditions must also still apply them
/// (the local server reads such a filter through the `_id` index).
#[tokio::test]
async fn size_and_all_over_an_array_of_subdocuments_match_exactly() -> anyhow::Result<()> {
    let t = TestDb::new("size_all").await?;
    let docs = t.collection("outbox");
    docs.insert_one(doc! {
        "_id": "d1",
        "pending_events": [{"id": "e1"}, {"id": "e2"}],
    })
    .await?;
    let matches = |filter: Document| {
        let docs = docs.clone();
        async move { anyhow::Ok(docs.find_one(filter).await?.is_some()) }
    };
    let exactly = |ids: Vec<&str>, size: i64| {
        doc! {"_id": "d1", "pending_events": {"$size": size}, "pending_events.id": {"$all": ids}}
    };
    assert!(matches(exactly(vec!["e1", "e2"], 2)).await?);
    assert!(
        matches(exactly(vec!["e2", "e1"], 2)).await?,
        "order does not matter"
    );
    assert!(
        !matches(exactly(vec!["e1"], 1)).await?,
        "a third event is not ours"
    );
    assert!(!matches(exactly(vec!["e1", "e3"], 2)).await?);
    assert!(!matches(exactly(vec!["e1", "e2"], 3)).await?);
    // The guarded clear applies only in the first case.
    let cleared = docs
        .update_one(
            exactly(vec!["e1"], 1),
            doc! {"$set": {"pending_events": []}},
        )
        .await?;
    assert_eq!(cleared.matched_count, 0);
    let cleared = docs
        .update_one(
            exactly(vec!["e1", "e2"], 2),
            doc! {"$set": {"pending_events": []}},
        )
        .await?;
    assert_eq!(cleared.modified_count, 1);
    assert!(matches(doc! {"_id": "d1", "pending_events": {"$size": 0}}).await?);
    assert!(!matches(doc! {"_id": "d1", "pending_events.0": {"$exists": true}}).await?);
    assert!(!matches(doc! {"_id": "d2", "pending_events": {"$size": 0}}).await?);
    t.drop().await
}

/// The same documents in a collection with non-unique indexes and in one without: every
/// filter must select the same documents in both, before and after updates that change the
/// indexed values and deletions. The outbox relays' poll (`{outbox_pending: true, $or: ...}`)
/// and payment-service's lookups by `order_id` and `status` filter this way; the local server
/// answers such filters from its in-memory secondary indexes.
#[tokio::test]
async fn filters_on_non_unique_indexes_select_what_a_scan_selects() -> anyhow::Result<()> {
    let t = TestDb::new("secondary").await?;
    let indexed = t.collection("indexed");
    let plain = t.collection("plain");
    for keys in [
        doc! {"outbox_pending": 1},
        doc! {"status": 1},
        doc! {"tags": 1},
        doc! {"order_id": 1, "status": 1},
    ] {
        indexed
            .create_index(IndexModel::builder().keys(keys).build())
            .await?;
    }
    let docs: Vec<Document> = (0..200_i64)
        .map(|n| {
            let status = ["pending", "succeeded", "failed"][(n % 3) as usize];
            let mut d = doc! {
                "_id": format!("d{n:03}"),
                "status": status,
                "order_id": format!("o{}", n % 20),
                "n": n,
                "tags": [format!("t{}", n % 4), format!("t{}", n % 5)],
            };
            // Some documents never had the flag: a missing field is not `false`.
            if n % 7 != 0 {
                d.insert("outbox_pending", n % 2 == 0);
            }
            d
        })
        .collect();
    indexed.insert_many(docs.clone()).await?;
    plain.insert_many(docs).await?;
    let filters = || {
        vec![
            doc! {"outbox_pending": true},
            doc! {"outbox_pending": false},
            doc! {"outbox_pending": true, "$or": [{"n": {"$lt": 50}}, {"status": "failed"}]},
            doc! {"status": "succeeded"},
            doc! {"status": "succeeded", "n": {"$gte": 100}},
            doc! {"tags": "t3"},
            doc! {"order_id": "o7", "status": "succeeded"},
            doc! {"order_id": "o7"},
            doc! {"status": "refunded"},
            doc! {"n": 42_i32},
            doc! {"n": 42.0_f64},
        ]
    };
    let same = |when: &'static str| {
        let (indexed, plain) = (indexed.clone(), plain.clone());
        async move {
            for filter in filters() {
                let want = ids(&plain, filter.clone(), doc! {"_id": 1}, 1_000).await?;
                let got = ids(&indexed, filter.clone(), doc! {"_id": 1}, 1_000).await?;
                assert_eq!(got, want, "{when}: {filter}");
            }
            anyhow::Ok(())
        }
    };
    same("after inserts").await?;
    for collection in [&indexed, &plain] {
        collection
            .update_many(
                doc! {"n": {"$lt": 60}},
                doc! {"$set": {"outbox_pending": false, "status": "refunded"}},
            )
            .await?;
        collection
            .update_one(doc! {"_id": "d199"}, doc! {"$set": {"tags": ["t3"]}})
            .await?;
        collection
            .update_one(
                doc! {"_id": "d007"},
                doc! {"$unset": {"outbox_pending": ""}},
            )
            .await?;
        collection
            .delete_many(doc! {"status": "failed", "n": {"$gt": 150}})
            .await?;
    }
    same("after updates and deletions").await?;
    t.drop().await
}

/// A value of a non-unique index passes from one document to several and back to one and to
/// none: payment-service's log has a few entries per `payment_id`, its payments one per
/// `order_id`, and the relays' flag is held by every document or by none. The local server
/// keeps a value held by one document apart from one held by several (a set only for the
/// latter, to keep its in-memory indexes small), so each step must find exactly its holders.
#[tokio::test]
async fn a_non_unique_value_held_by_one_then_several_then_none_finds_its_holders()
-> anyhow::Result<()> {
    let t = TestDb::new("holders").await?;
    let log = t.collection("log");
    log.create_index(IndexModel::builder().keys(doc! {"payment_id": 1}).build())
        .await?;
    let holders = |payment: &'static str| {
        let log = log.clone();
        async move { ids(&log, doc! {"payment_id": payment}, doc! {"_id": 1}, 100).await }
    };
    log.insert_one(doc! {"_id": "e1", "payment_id": "p1"})
        .await?;
    assert_eq!(holders("p1").await?, ["e1"]);
    log.insert_many([
        doc! {"_id": "e2", "payment_id": "p1"},
        doc! {"_id": "e3", "payment_id": "p1"},
        doc! {"_id": "e4", "payment_id": "p2"},
    ])
    .await?;
    assert_eq!(holders("p1").await?, ["e1", "e2", "e3"]);
    assert_eq!(holders("p2").await?, ["e4"]);
    // One of three moves away, another is deleted: one holder is left, found alone.
    log.update_one(doc! {"_id": "e1"}, doc! {"$set": {"payment_id": "p2"}})
        .await?;
    log.delete_one(doc! {"_id": "e3"}).await?;
    assert_eq!(holders("p1").await?, ["e2"]);
    assert_eq!(holders("p2").await?, ["e1", "e4"]);
    // An update that leaves the value alone keeps the document where it is.
    log.update_one(doc! {"_id": "e2"}, doc! {"$set": {"note": "settled"}})
        .await?;
    assert_eq!(holders("p1").await?, ["e2"]);
    log.delete_one(doc! {"_id": "e2"}).await?;
    assert!(holders("p1").await?.is_empty());
    // The value comes back with a document of the same `_id`.
    log.insert_one(doc! {"_id": "e2", "payment_id": "p1"})
        .await?;
    assert_eq!(holders("p1").await?, ["e2"]);
    log.delete_many(doc! {"payment_id": "p2"}).await?;
    assert!(holders("p2").await?.is_empty());
    assert_eq!(log.count_documents(doc! {}).await?, 1);
    t.drop().await
}

/// On the local server (it reports `serverStatus.ferroshop`), a filter with an equality on
/// every key of a non-unique index reads through the index instead of scanning the
/// collection: a relay's poll costs what is pending, not what is stored. Real MongoDB does
/// this too, and reports no such counters; there this test checks nothing more than the
/// answer.
#[tokio::test]
async fn an_equality_on_a_non_unique_index_does_not_scan_the_collection() -> anyhow::Result<()> {
    let t = TestDb::new("noscan").await?;
    let docs = t.collection("outbox");
    docs.create_index(
        IndexModel::builder()
            .keys(doc! {"outbox_pending": 1})
            .build(),
    )
    .await?;
    let many: Vec<Document> = (0..500_i64)
        .map(|n| doc! {"_id": n, "outbox_pending": n == 250, "claimed_until": null})
        .collect();
    docs.insert_many(many).await?;
    let namespace = format!("{}.outbox", t.db.name());
    let scans = || collection_scans(&t.db, &namespace);
    let before = scans().await?;
    let found: Vec<Document> = docs
        .find(doc! {
            "outbox_pending": true,
            "$or": [{"claimed_until": null}, {"claimed_until": {"$lt": 0}}],
        })
        .await?
        .try_collect()
        .await?;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_i64("_id")?, 250);
    if let (Some(before), Some(after)) = (before, scans().await?) {
        assert_eq!(after, before, "the indexed filters scanned {namespace}");
    }
    t.drop().await
}

/// A filter that two non-unique indexes can serve reads through the one that holds fewer
/// documents for the filter's values, as MongoDB's planner chooses: payment-service's
/// reconciler asks every second for the few payments still flagged for a refund check
/// (`{refund_check: true, status: "succeeded", ...}`), and through the `status` index, created
/// first, it read every succeeded payment ever stored. The index created first is the
/// crowded one here, so taking the first usable index (the library's way) fails the test. On
/// MongoDB itself (no counters) only the answer is checked.
#[tokio::test]
async fn of_two_usable_indexes_a_filter_reads_through_the_one_that_finds_fewer()
-> anyhow::Result<()> {
    let t = TestDb::new("fewest").await?;
    let docs = t.collection("payments");
    for keys in [doc! {"status": 1}, doc! {"refund_check": 1}] {
        docs.create_index(IndexModel::builder().keys(keys).build())
            .await?;
    }
    let many: Vec<Document> = (0..400_i64)
        .map(|n| {
            doc! {
                "_id": n,
                "status": if n % 100 == 7 { "pending" } else { "succeeded" },
                "refund_check": n == 42 || n == 307,
                "updated_at": n,
            }
        })
        .collect();
    docs.insert_many(many).await?;
    let namespace = format!("{}.payments", t.db.name());
    let examined = || documents_examined(&t.db, &namespace);
    let scans = || collection_scans(&t.db, &namespace);
    let (examined_before, scans_before) = (examined().await?, scans().await?);

    let flagged = sorted_number_ids(
        &docs,
        doc! {"refund_check": true, "status": "succeeded", "updated_at": {"$lt": 300}},
    )
    .await?;
    assert_eq!(flagged, [42], "307 is too new; the rest are not flagged");
    // The other way round: `pending` (4 documents) is rarer than `refund_check: false` (398).
    let pending =
        sorted_number_ids(&docs, doc! {"status": "pending", "refund_check": false}).await?;
    assert_eq!(pending, [7, 107, 207], "307 is pending but flagged");

    if let (Some(before), Some(after)) = (examined_before, examined().await?) {
        assert_eq!(
            after - before,
            2 + 4,
            "the filters read through the crowded index of {namespace}"
        );
    }
    if let (Some(before), Some(after)) = (scans_before, scans().await?) {
        assert_eq!(after, before, "the indexed filters scanned {namespace}");
    }
    t.drop().await
}

/// The batched outbox relay names its documents with `{"_id": {"$in": [...]}}` next to other
/// conditions (the flag, the claim), in `find` and in `updateMany`. MongoDB reads those
/// through the `_id` index; on the local server they must not scan the collection either, or
/// a relay round would cost what is stored instead of what it names.
#[tokio::test]
async fn an_id_in_list_with_other_conditions_does_not_scan_the_collection() -> anyhow::Result<()> {
    let t = TestDb::new("idin").await?;
    let docs = t.collection("outbox");
    let many: Vec<Document> = (0..500_i64)
        .map(|n| doc! {"_id": n, "outbox_pending": n % 2 == 0, "claim": null})
        .collect();
    docs.insert_many(many).await?;
    let namespace = format!("{}.outbox", t.db.name());
    let scans = || collection_scans(&t.db, &namespace);
    let before = scans().await?;
    let named = [10_i64, 11, 12, 499, 1_000];
    let claimed = docs
        .update_many(
            doc! {
                "_id": {"$in": &named[..]},
                "outbox_pending": true,
                "$or": [{"claim": null}, {"claim": {"$lt": 0}}],
            },
            doc! {"$set": {"claim": "token"}},
        )
        .await?;
    assert_eq!(
        claimed.modified_count, 2,
        "10 and 12 are pending; 11 and 499 are not; 1000 is absent"
    );
    let found =
        sorted_number_ids(&docs, doc! {"_id": {"$in": &named[..]}, "claim": "token"}).await?;
    assert_eq!(found, [10, 12]);
    let cleared = docs
        .update_many(
            doc! {"_id": {"$in": &named[..]}, "claim": "token"},
            doc! {"$set": {"outbox_pending": false}, "$unset": {"claim": ""}},
        )
        .await?;
    assert_eq!(cleared.modified_count, 2);
    if let (Some(before), Some(after)) = (before, scans().await?) {
        assert_eq!(after, before, "the _id $in filters scanned {namespace}");
    }
    t.drop().await
}

/// The outbox relay's batched clear (`messaging::mongo::outbox`, `publish_claimed`): one
/// `updateMany` over the claimed documents empties `pending_events` only where every element
/// is among the published events, `{"$not": {"$elemMatch": {"id": {"$nin": published}}}}`,
/// so a document a writer appended to meanwhile keeps its new event; an empty array matches.
#[tokio::test]
async fn not_elem_match_nin_selects_arrays_holding_only_the_given_ids() -> anyhow::Result<()> {
    let t = TestDb::new("not_elem_match").await?;
    let docs = t.collection("outbox");
    docs.insert_many([
        doc! {"_id": "only_published", "pending_events": [{"id": "e1"}, {"id": "e2"}]},
        doc! {"_id": "one_more", "pending_events": [{"id": "e3"}, {"id": "late"}]},
        doc! {"_id": "empty", "pending_events": []},
        doc! {"_id": "other", "pending_events": [{"id": "e4"}]},
    ])
    .await?;
    let published = ["e1", "e2", "e3"];
    let only_published =
        doc! {"pending_events": {"$not": {"$elemMatch": {"id": {"$nin": published.to_vec()}}}}};
    let matched = ids(&docs, only_published.clone(), doc! {"_id": 1}, 10).await?;
    assert_eq!(matched, ["empty", "only_published"]);
    let cleared = docs
        .update_many(
            doc! {"_id": {"$in": ["only_published", "one_more"]}, "$and": [only_published]},
            doc! {"$set": {"pending_events": []}},
        )
        .await?;
    assert_eq!(cleared.matched_count, 1);
    let left = ids(
        &docs,
        doc! {"pending_events.0": {"$exists": true}},
        doc! {"_id": 1},
        10,
    )
    .await?;
    assert_eq!(left, ["one_more", "other"]);
    t.drop().await
}
