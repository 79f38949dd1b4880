//! Fresh MongoDB databases for tests (feature `mongo`). MongoDB creates a database on its first
//! write, so a fresh one is a fresh name: `test_<tag>_<unix seconds>_<random>`. The creation
//! time in the name lets each call drop the `test_<tag>_` databases that earlier runs left
//! behind more than an hour ago, as [`crate::postgres::fresh_database`] does.

use std::time::{SystemTime, UNIX_EPOCH};

use mongodb::bson::doc;

/// A database name no other test uses, on the stack's MongoDB-wire server.
pub async fn fresh_database(tag: &str) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let random = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("test_{tag}_{now}_{}", &random[..8]);
    drop_stale(tag, now).await;
    Ok(name)
}

/// Drops this tag's test databases older than an hour; a server that cannot be reached is
/// left for the test itself to report.
async fn drop_stale(tag: &str, now: u64) {
    let Ok(client) = mongodb::Client::with_uri_str(crate::stack::mongodb_url()).await else {
        return;
    };
    let prefix = format!("test_{tag}_");
    for name in client.list_database_names().await.unwrap_or_default() {
        let created = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > 3600) {
            let _ = client.database(&name).drop().await;
        }
    }
}

/// Full scans of `namespace` (`<database>.<collection>`) so far on the local MongoDB-wire
/// server, which counts them in `serverStatus.ferroshop.collectionScans`; `None` on a server
/// that does not count them (MongoDB itself). Tests use it to check that a query is answered
/// through an index, not by decoding the whole collection.
pub async fn collection_scans(
    db: &mongodb::Database,
    namespace: &str,
) -> anyhow::Result<Option<i64>> {
    local_counter(db, "collectionScans", namespace).await
}

/// Documents of `namespace` read through an index to answer queries so far on the local
/// MongoDB-wire server (`serverStatus.ferroshop.documentsExamined`, after MongoDB's
/// `totalDocsExamined`); `None` on a server that does not count them. Tests use it to check
/// that a query reads what it finds, not every document of a value it also names.
pub async fn documents_examined(
    db: &mongodb::Database,
    namespace: &str,
) -> anyhow::Result<Option<i64>> {
    local_counter(db, "documentsExamined", namespace).await
}

/// `serverStatus.ferroshop.<counter>.<namespace>` (0 when not counted yet), or `None` where
/// the server keeps no such counters.
async fn local_counter(
    db: &mongodb::Database,
    counter: &str,
    namespace: &str,
) -> anyhow::Result<Option<i64>> {
    let status = db.run_command(doc! {"serverStatus": 1}).await?;
    Ok(status.get_document("ferroshop").ok().map(|counters| {
        counters
            .get_document(counter)
            .ok()
            .and_then(|counts| counts.get(namespace))
            .and_then(|count| count.as_i64())
            .unwrap_or(0)
    }))
}
