//! A fresh database per test on the server of `MONGODB_URL`, dropped when the test ends well.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};

pub struct TestDb {
    pub db: Database,
}

impl TestDb {
    /// A database named after the test and a random suffix.
    pub async fn new(tag: &str) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(testkit::stack::mongodb_url()).await?;
        options.server_selection_timeout = Some(Duration::from_secs(5));
        // Concurrency tests send 50 operations at once; let them all be in flight.
        options.max_pool_size = Some(64);
        let client = Client::with_options(options)?;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let db = client.database(&format!("conformance_{tag}_{}", &suffix[..12]));
        Ok(Self { db })
    }

    pub fn collection(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// Drops the database; called at the end of a passing test (a failing one keeps its data
    /// for a look).
    pub async fn drop(self) -> anyhow::Result<()> {
        self.db.drop().await?;
        Ok(())
    }
}

/// A unique index on `sku`, as product-service keeps one.
pub fn unique_sku() -> IndexModel {
    IndexModel::builder()
        .keys(doc! {"sku": 1})
        .options(IndexOptions::builder().unique(true).build())
        .build()
}
