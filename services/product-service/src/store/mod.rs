//! MongoDB access for product-service.
//!
//! Only features that both MongoDB and FerretDB 1.24 (the local MongoDB-wire server) support are
//! used: single-document atomic updates (`findOneAndUpdate` with conditions on nested fields,
//! `$inc`, `$set`, `$push` with `$each`/`$slice`, `$pullAll` of exact elements), `$regex` with
//! the `i` option, `$or`/`$and`, sort + limit, and plain, compound and unique indexes. No
//! multi-document transactions, change streams, `$text` or `$elemMatch`, and no `$pull` with
//! a condition (FerretDB 1.24 accepts it but removes nothing).
//!
//! FerretDB 1.24 does not apply a conditional update atomically (see [`locks`]), so writers of
//! a product take turns through a per-product lock. See the service README.

pub mod locks;
pub mod products;
pub mod reservations;

pub use messaging::mongo::is_duplicate_key;

use anyhow::Context as _;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

/// Connects and checks the server answers, so a wrong URL fails at start, not on the first
/// request.
pub async fn connect(url: &str, database: &str) -> anyhow::Result<Database> {
    let mut options = ClientOptions::parse(url)
        .await
        .context("MONGODB_URL is not a MongoDB connection string")?;
    options.app_name = Some("product-service".into());
    options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
    let client = Client::with_options(options).context("creating the MongoDB client")?;
    let db = client.database(database);
    ping(&db)
        .await
        .context("cannot reach MongoDB (MONGODB_URL)")?;
    Ok(db)
}

pub async fn ping(db: &Database) -> mongodb::error::Result<()> {
    db.run_command(doc! {"ping": 1}).await.map(|_| ())
}
