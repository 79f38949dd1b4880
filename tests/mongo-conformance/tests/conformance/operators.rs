//! Update operators, as the services write them.

use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::ReturnDocument;

use crate::helpers::TestDb;

fn ids(doc: &Document, field: &str) -> anyhow::Result<Vec<String>> {
    Ok(doc
        .get_array(field)?
        .iter()
        .filter_map(|e| e.as_document()?.get_str("id").ok().map(str::to_owned))
        .collect())
}

/// Relied on by the outbox relay (`messaging::mongo::OutboxRelay`): `$pull` with a condition
/// on the elements removes exactly the events it names (by id) and keeps the others, in
/// order.
#[tokio::test]
async fn pull_with_a_condition_removes_only_matching_elements() -> anyhow::Result<()> {
    let t = TestDb::new("pull_condition").await?;
    let docs = t.collection("products");
    docs.insert_one(doc! {"_id": "p", "pending_events": [
        {"id": "e1", "topic": "t"}, {"id": "e2", "topic": "t"}, {"id": "e3", "topic": "t"}
    ]})
    .await?;
    let result = docs
        .update_one(
            doc! {"_id": "p"},
            doc! {"$pull": {"pending_events": {"id": {"$in": ["e1", "e3"]}}}},
        )
        .await?;
    assert_eq!(result.modified_count, 1);
    let after = docs.find_one(doc! {"_id": "p"}).await?.unwrap_or_default();
    assert_eq!(ids(&after, "pending_events")?, ["e2"]);
    t.drop().await
}

/// `$pullAll` removes the elements equal to the given ones (whole sub-documents, field by
/// field) and nothing else. The outbox relay removed published events this way until it moved
/// to `$pull` by event id (above); kept because issue 11 names it as part of the contract.
#[tokio::test]
async fn pull_all_removes_exactly_equal_elements() -> anyhow::Result<()> {
    let t = TestDb::new("pull_all").await?;
    let docs = t.collection("payments");
    let e1 = doc! {"id": "e1", "payload": "{}"};
    let e2 = doc! {"id": "e2", "payload": "{}"};
    docs.insert_one(doc! {"_id": "p", "pending_events": [&e1, &e2]})
        .await?;
    // Same id, other payload: not equal, stays.
    docs.update_one(
        doc! {"_id": "p"},
        doc! {"$pullAll": {"pending_events": [&e1, {"id": "e2", "payload": "other"}]}},
    )
    .await?;
    let after = docs.find_one(doc! {"_id": "p"}).await?.unwrap_or_default();
    assert_eq!(ids(&after, "pending_events")?, ["e2"]);
    t.drop().await
}

/// Relied on by product-service's stock adjustments (`adjustments` keeps only the most recent
/// entries): `$push` with `$each` and a negative `$slice` appends and keeps the last N.
#[tokio::test]
async fn push_each_with_slice_keeps_the_newest_elements() -> anyhow::Result<()> {
    let t = TestDb::new("push_slice").await?;
    let docs = t.collection("products");
    docs.insert_one(doc! {"_id": "p", "adjustments": [{"id": "a1"}, {"id": "a2"}]})
        .await?;
    docs.update_one(
        doc! {"_id": "p"},
        doc! {"$push": {"adjustments": {"$each": [{"id": "a3"}, {"id": "a4"}], "$slice": -3}}},
    )
    .await?;
    let after = docs.find_one(doc! {"_id": "p"}).await?.unwrap_or_default();
    assert_eq!(ids(&after, "adjustments")?, ["a2", "a3", "a4"]);
    t.drop().await
}

/// Relied on by product-service's reservation records (`reservations.<order id>: quantity`,
/// set with the reservation and unset with its commit or release) and nested `stock` fields:
/// dotted `$set` creates nested fields, dotted `$unset` removes one key and keeps its
/// siblings, `$inc` on dotted paths adds.
#[tokio::test]
async fn dotted_set_unset_and_inc_reach_nested_fields() -> anyhow::Result<()> {
    let t = TestDb::new("dotted").await?;
    let docs = t.collection("products");
    docs.insert_one(doc! {"_id": "p", "stock": {"available": 5_i64, "reserved": 0_i64}})
        .await?;
    let order = "0190aaaa-0000-7000-8000-000000000001";
    let after = docs
        .find_one_and_update(
            doc! {"_id": "p"},
            doc! {
                "$inc": {"stock.available": -2_i64, "stock.reserved": 2_i64},
                "$set": {format!("reservations.{order}"): 2_i64, "reservations.other": 1_i64},
            },
        )
        .return_document(ReturnDocument::After)
        .await?
        .unwrap_or_default();
    assert_eq!(after.get_document("stock")?.get_i64("available")?, 3);
    assert_eq!(after.get_document("reservations")?.get_i64(order)?, 2);

    docs.update_one(
        doc! {"_id": "p"},
        doc! {"$unset": {format!("reservations.{order}"): ""}},
    )
    .await?;
    let after = docs.find_one(doc! {"_id": "p"}).await?.unwrap_or_default();
    let reservations = after.get_document("reservations")?;
    assert!(!reservations.contains_key(order));
    assert_eq!(reservations.get_i64("other")?, 1);
    // A filter on a dotted key that exists only for some orders.
    let held = docs
        .count_documents(doc! {"_id": "p", "reservations.other": {"$exists": true}})
        .await?;
    assert_eq!(held, 1);
    t.drop().await
}

/// Batch writes: `insertMany` inserts all; an unordered `insertMany` with duplicates inserts
/// every other document and reports each failed one by its index with code 11000. No write
/// path uses batches yet; the batched consumers planned for throughput (issue 12) will, and a
/// batch that stopped at its first duplicate, or hid which one failed, would lose writes.
#[tokio::test]
async fn insert_many_and_unordered_bulk_report_per_document_errors() -> anyhow::Result<()> {
    let t = TestDb::new("insert_many").await?;
    let docs = t.collection("items");
    let first: Vec<Document> = (0..5).map(|n| doc! {"_id": n, "n": n}).collect();
    let inserted = docs.insert_many(&first).await?;
    assert_eq!(inserted.inserted_ids.len(), 5);

    let batch: Vec<Document> = vec![
        doc! {"_id": 10},
        doc! {"_id": 1},
        doc! {"_id": 11},
        doc! {"_id": 3},
        doc! {"_id": 12},
    ];
    let error = docs
        .insert_many(&batch)
        .ordered(false)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("duplicates must fail"))?;
    let ErrorKind::InsertMany(failure) = &*error.kind else {
        anyhow::bail!("expected an insertMany error, got {error}");
    };
    let mut failed: Vec<(usize, i32)> = failure
        .write_errors
        .iter()
        .flatten()
        .map(|e| (e.index, e.code))
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, [(1, 11000), (3, 11000)]);
    assert_eq!(
        docs.count_documents(doc! {}).await?,
        8,
        "10, 11, 12 went in"
    );
    t.drop().await
}

/// Relied on by the write paths that return the changed document in the same round trip
/// (`Products::update_at_version`, `Reservations::transition`, payment-service's guarded
/// updates): `findOneAndUpdate` returns the document after the change with
/// `ReturnDocument::After`, before it by default, and nothing when no document matches.
#[tokio::test]
async fn find_one_and_update_returns_the_document_before_or_after() -> anyhow::Result<()> {
    let t = TestDb::new("find_and_modify").await?;
    let docs = t.collection("reservations");
    docs.insert_one(doc! {"_id": "o", "status": "reserving"})
        .await?;
    let before = docs
        .find_one_and_update(
            doc! {"_id": "o", "status": "reserving"},
            doc! {"$set": {"status": "reserved"}},
        )
        .await?
        .unwrap_or_default();
    assert_eq!(before.get_str("status")?, "reserving");
    let after = docs
        .find_one_and_update(
            doc! {"_id": "o", "status": "reserved"},
            doc! {"$set": {"status": "committed"}, "$inc": {"revision": 1_i64}},
        )
        .return_document(ReturnDocument::After)
        .await?
        .unwrap_or_default();
    assert_eq!(after.get_str("status")?, "committed");
    assert_eq!(after.get("revision"), Some(&Bson::Int64(1)));
    let none = docs
        .find_one_and_update(
            doc! {"_id": "o", "status": "reserving"},
            doc! {"$set": {"status": "failed"}},
        )
        .await?;
    assert!(none.is_none(), "the status guard no longer matches");
    t.drop().await
}
