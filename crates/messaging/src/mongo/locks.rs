//! Per-document write locks.
//!
//! FerretDB 1.24 runs `update` and `findAndModify` as "query, change in Go, write the whole
//! document back by `_id`" without re-checking the filter, so a conditional update is not
//! atomic there: two concurrent writers both pass `version: 3` and the later write silently
//! erases the earlier (lost stock updates, lost pending events). The one operation it does
//! make atomic is an insert under a unique key (a PostgreSQL unique index), so every write to
//! a document first inserts a lock document `{_id: document id, owner, until}` into the
//! collection's lock collection (`product_locks`, `payment_locks`, ...), and deletes it
//! afterwards. Writers of one document thereby take turns, on FerretDB and on MongoDB alike;
//! conditional updates stay as a second line of defence.
//!
//! A lock left by a crashed process expires after [`LEASE`] and is then removed by the next
//! writer. Limitation: that removal is itself a query-then-delete on FerretDB, so two writers
//! that both find the same expired lock at the same instant could, in a narrow window, both
//! proceed. It needs a crash first, then a race within milliseconds on the same document.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use mongodb::bson::{self, Document, doc};
use mongodb::{Collection, Database};
use uuid::Uuid;

/// How long a lock holds without being released; longer than any write or publish takes.
pub const LEASE: Duration = Duration::from_secs(15);

/// The locks of one collection's documents, keyed by the document's `_id`.
#[derive(Debug, Clone)]
pub struct DocumentLocks {
    collection: Collection<Document>,
}

/// A held lock; release it with [`LockGuard::release`] (an expired lease frees it otherwise).
#[derive(Debug)]
#[must_use = "release the lock when the write is done"]
pub struct LockGuard {
    collection: Collection<Document>,
    id: String,
    owner: String,
}

impl DocumentLocks {
    /// Locks kept in the collection `locks` (one lock collection per locked collection).
    pub fn new(db: &Database, locks: &str) -> Self {
        Self {
            collection: db.collection(locks),
        }
    }

    /// Takes the lock of document `id`, waiting up to `wait` for its holder; `None` if it
    /// stayed busy.
    pub async fn acquire(&self, id: &str, wait: Duration) -> anyhow::Result<Option<LockGuard>> {
        let owner = Uuid::new_v4().to_string();
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let now = bson::DateTime::now();
            let until =
                bson::DateTime::from_millis(now.timestamp_millis() + LEASE.as_millis() as i64);
            let lock = doc! {"_id": id, "owner": &owner, "until": until};
            match self.collection.insert_one(lock).await {
                Ok(_) => {
                    return Ok(Some(LockGuard {
                        collection: self.collection.clone(),
                        id: id.to_owned(),
                        owner,
                    }));
                }
                Err(error) if super::is_duplicate_key(&error) => {
                    // Held. Clear it if its holder died, else wait our turn.
                    self.collection
                        .delete_one(doc! {"_id": id, "until": {"$lt": now}})
                        .await
                        .context("clearing an expired lock")?;
                }
                Err(error) => {
                    return Err(anyhow::Error::new(error).context("taking a lock"));
                }
            }
            if started.elapsed() >= wait {
                return Ok(None);
            }
            // Jitter spreads waiting writers so they do not retry in lock-step.
            let jitter = Duration::from_micros(u64::from(Uuid::new_v4().as_bytes()[0]) * 40);
            tokio::time::sleep(pause + jitter).await;
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }
}

impl LockGuard {
    pub async fn release(self) -> anyhow::Result<()> {
        self.collection
            .delete_one(doc! {"_id": &self.id, "owner": &self.owner})
            .await
            .context("releasing a lock")?;
        Ok(())
    }
}
