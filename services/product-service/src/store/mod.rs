//! MongoDB access for product-service.
//!
//! Every write is one single-document update, atomic with its filter: a product changes only
//! through `findOneAndUpdate` guarded by the `version` it was read at (plus the stock condition
//! the change relies on), a reservation only through an update guarded by the status it
//! leaves, and a new document is an insert under a unique key (the product's SKU, the order
//! id). A writer whose filter no longer matches lost a race and decides again on a fresh read
//! (`messaging::mongo::ConflictRetry`). There are no multi-document transactions: each change
//! carries its event in the same document (the single-document outbox, `events::outbox`).
//! See the service README.

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
    // Within the 2 s a client may wait: a server that is away answers 503 in time.
    options.server_selection_timeout = Some(std::time::Duration::from_millis(1_500));
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
