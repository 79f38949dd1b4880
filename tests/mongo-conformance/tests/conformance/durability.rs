//! The local server keeps acknowledged writes across a restart, including a SIGKILL: the
//! stack's data (catalog, reservations, payments) must survive `cargo xtask down`/`up` and a
//! crashed server, as it does on MongoDB. This test starts its own instance of the local
//! server (the class path comes from `MONGO_WIRE_CLASSPATH`, which `cargo xtask test` sets) on
//! a free port with a data file of its own, so it disturbs nothing else.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures::TryStreamExt as _;
use mongodb::IndexModel;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use testkit::ServiceProcess;

fn start(classpath: &str, port: u16, data: &Path) -> anyhow::Result<ServiceProcess> {
    ServiceProcess::spawn(
        Command::new("java")
            .args(["-Xmx128m", "-XX:+UseSerialGC", "-cp", classpath])
            .arg("MongoWireServer")
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(data),
    )
}

async fn connect(port: u16) -> anyhow::Result<Database> {
    let mut options = ClientOptions::parse(format!("mongodb://127.0.0.1:{port}")).await?;
    options.server_selection_timeout = Some(Duration::from_secs(2));
    Ok(Client::with_options(options)?.database("durability"))
}

/// Waits until the server answers a ping.
async fn ready(port: u16) -> anyhow::Result<Database> {
    testkit::eventually(Duration::from_secs(60), || async {
        connect(port).await?.run_command(doc! {"ping": 1}).await?;
        Ok(())
    })
    .await?;
    connect(port).await
}

type Products = mongodb::Collection<mongodb::bson::Document>;

async fn all_documents(products: &Products) -> anyhow::Result<Vec<mongodb::bson::Document>> {
    Ok(products
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await?
        .try_collect()
        .await?)
}

/// Operators, replacements, upserts and multi-document updates on documents 10 to 19, each
/// after the one before it was acknowledged (so committed), several on the same document.
async fn updates_of_every_kind(products: &Products) -> anyhow::Result<()> {
    use mongodb::options::ReturnDocument;
    products
        .update_one(
            doc! {"_id": 10_i64},
            doc! {"$set": {"stock.reserved": 2_i64, "name": "ten"}},
        )
        .await?;
    products
        .update_one(
            doc! {"_id": 10_i64},
            doc! {"$inc": {"stock.available": -2_i64}},
        )
        .await?;
    products
        .update_one(
            doc! {"_id": 11_i64},
            doc! {"$push": {"holds": {"order": "a", "qty": 1_i64}}},
        )
        .await?;
    products
        .update_one(
            doc! {"_id": 11_i64},
            doc! {"$push": {"holds": {"order": "b", "qty": 2_i64}}},
        )
        .await?;
    products
        .update_one(
            doc! {"_id": 11_i64},
            doc! {"$pull": {"holds": {"order": "a"}}},
        )
        .await?;
    products
        .update_one(doc! {"_id": 12_i64}, doc! {"$unset": {"stock": ""}})
        .await?;
    products
        .find_one_and_update(
            doc! {"_id": 13_i64, "shelf": 3_i64},
            doc! {"$set": {"claimed": true}},
        )
        .return_document(ReturnDocument::After)
        .await?;
    products
        .find_one_and_update(
            doc! {"_id": 13_i64},
            doc! {"$inc": {"stock.available": 5_i64}},
        )
        .return_document(ReturnDocument::Before)
        .await?;
    products
        .replace_one(
            doc! {"_id": 14_i64},
            doc! {"shelf": 4_i64, "replaced": true},
        )
        .await?;
    products
        .update_one(
            doc! {"_id": 1_000_i64},
            doc! {"$set": {"shelf": 0_i64, "upserted": true}},
        )
        .upsert(true)
        .await?;
    products
        .update_one(doc! {"_id": 1_000_i64}, doc! {"$set": {"upserted": false}})
        .await?;
    products
        .update_many(
            doc! {"_id": {"$gte": 15_i64, "$lt": 20_i64}},
            doc! {"$inc": {"stock.available": 1_i64}, "$set": {"touched": true}},
        )
        .await?;
    products.delete_one(doc! {"_id": 1_000_i64}).await?;
    Ok(())
}

#[tokio::test]
async fn acknowledged_writes_survive_a_sigkill_and_a_restart() -> anyhow::Result<()> {
    let Some(classpath) = testkit::stack::optional("MONGO_WIRE_CLASSPATH") else {
        // Against real MongoDB (no local server to restart) this test does not apply.
        eprintln!("MONGO_WIRE_CLASSPATH is not set: not the local server, nothing to restart");
        return Ok(());
    };
    let dir = std::env::temp_dir().join(format!("mongo-wire-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data.mv.db");
    let port = testkit::free_port()?;

    let server = start(&classpath, port, &data)?;
    let db = ready(port).await?;
    let products = db.collection::<mongodb::bson::Document>("products");
    // A non-unique index as well: the local server keeps it in memory and builds it again from
    // the stored documents when it opens.
    products
        .create_index(IndexModel::builder().keys(doc! {"shelf": 1}).build())
        .await?;
    for n in 0..50_i64 {
        products
            .insert_one(doc! {"_id": n, "shelf": n % 5, "stock": {"available": 10_i64}})
            .await?;
    }
    products
        .update_one(
            doc! {"_id": 7_i64},
            doc! {"$inc": {"stock.available": -3_i64}},
        )
        .await?;
    // Every kind of change the services make, to documents already written to the data file
    // once, several to the same document: each commit writes the changed pages whole, so a
    // later write must neither lose an earlier one nor bring back a neighbour's older state.
    // What is read back after the restart must be exactly what was read before the kill.
    updates_of_every_kind(&products).await?;
    // The last acknowledged write, immediately before the kill.
    products.delete_one(doc! {"_id": 49_i64}).await?;
    let before_kill = all_documents(&products).await?;
    drop(server); // SIGKILL, no shutdown hook

    let restarted = start(&classpath, port, &data)?;
    let db = ready(port).await?;
    let products = db.collection::<mongodb::bson::Document>("products");
    assert_eq!(products.count_documents(doc! {}).await?, 49);
    assert_eq!(all_documents(&products).await?, before_kill);
    let seven = products
        .find_one(doc! {"_id": 7_i64})
        .await?
        .unwrap_or_default();
    assert_eq!(seven.get_document("stock")?.get_i64("available")?, 7);
    // The rebuilt index finds what the stored documents hold, and follows later writes.
    let shelf = |n: i64| {
        let products = products.clone();
        async move {
            let found: Vec<mongodb::bson::Document> = products
                .find(doc! {"shelf": n})
                .sort(doc! {"_id": 1})
                .await?
                .try_collect()
                .await?;
            anyhow::Ok(
                found
                    .iter()
                    .filter_map(|d| d.get_i64("_id").ok())
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(shelf(4).await?, [4, 9, 14, 19, 24, 29, 34, 39, 44]);
    products
        .update_one(doc! {"_id": 9_i64}, doc! {"$set": {"shelf": 0_i64}})
        .await?;
    products.delete_one(doc! {"_id": 44_i64}).await?;
    assert_eq!(shelf(4).await?, [4, 14, 19, 24, 29, 34, 39]);
    assert_eq!(shelf(0).await?, [0, 5, 9, 10, 15, 20, 25, 30, 35, 40, 45]);

    // Now every document came from the data file: the same changes once more, then a second
    // kill. A commit writes each changed page whole, so each changed document must be written
    // as it is now and its unchanged neighbours as they were read back (a launcher that kept
    // each document's encoded bytes to write them again must never write an old state).
    updates_of_every_kind(&products).await?;
    let before_second_kill = all_documents(&products).await?;
    drop(restarted);
    let restarted = start(&classpath, port, &data)?;
    let db = ready(port).await?;
    let products = db.collection::<mongodb::bson::Document>("products");
    assert_eq!(all_documents(&products).await?, before_second_kill);
    drop(restarted);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
