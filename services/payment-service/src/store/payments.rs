//! Payment documents, order claims and the payment log.
//!
//! - `payments`: `_id` = payment id (derived from the user and the Idempotency-Key, so the
//!   insert is the idempotency check), the order, the amount, card brand and last four only,
//!   status, provider reference, failure reason, refund reference, timestamps, and
//!   `pending_events` (the single-document outbox: a status change and its event are one
//!   update). Every write after the insert happens under the payment's lock
//!   ([`Payments::update_locked`]).
//! - `payment_claims`: `_id` = order id, `payment_id`. Inserted before the provider is called;
//!   a duplicate key means another payment of the order is in flight or has succeeded. A
//!   definitive failure deletes the claim so the customer may try another card; success keeps
//!   it forever. This is what makes "at most one successful payment per order" a database
//!   rule rather than a check-then-act in code. The reconciler looks at each old claim until
//!   its payment has an outcome: a failed or missing payment's claim is released, a
//!   successful one's gets `open: false` (and `settled_at`) and is never looked at again, so
//!   a pass reads only the claims still in question, not every order ever paid. (`open` is a
//!   boolean because FerretDB pushes an equality on it down to PostgreSQL; `$exists` it
//!   evaluates by reading the whole collection.)
//! - `payment_log`: one document per provider attempt and per status change (amounts, brand,
//!   last four, provider reference, timings, errors): an audit trail that is only appended to.

use std::time::Duration;

use anyhow::Context as _;
use futures::TryStreamExt as _;
use messaging::mongo::{DocumentLocks, PendingEvent};
use mongodb::bson::{self, Document, doc};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::is_duplicate_key;
use crate::domain::payment_status::PaymentStatus;

pub const COLLECTION: &str = "payments";
pub const CLAIMS: &str = "payment_claims";
pub const LOG: &str = "payment_log";
pub const LOCKS: &str = "payment_locks";

/// How long a writer waits for a payment's lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub order_id: String,
    pub user_id: String,
    pub idempotency_key: String,
    /// Keyed fingerprint of the request (see `domain::card::fingerprint`).
    pub fingerprint: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub card_brand: String,
    pub card_last4: String,
    pub provider_reference: Option<String>,
    pub failure_reason: Option<String>,
    pub refund_reference: Option<String>,
    /// Set with `succeeded`, cleared once the order's status was checked for a refund; a
    /// crash or error in between leaves it for the reconciler (see `refunds`).
    #[serde(default)]
    pub refund_check: bool,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    #[serde(default)]
    pub pending_events: Vec<PendingEvent>,
    /// Whether `pending_events` holds anything (`messaging::mongo::PENDING_FLAG`).
    #[serde(default)]
    pub outbox_pending: bool,
}

impl PaymentDoc {
    pub fn status(&self) -> Option<PaymentStatus> {
        PaymentStatus::parse(&self.status)
    }

    pub fn payment_id(&self) -> anyhow::Result<Uuid> {
        Uuid::parse_str(&self.id).context("payment id is not a UUID")
    }

    pub fn order_uuid(&self) -> anyhow::Result<Uuid> {
        Uuid::parse_str(&self.order_id).context("order id is not a UUID")
    }

    pub fn user_uuid(&self) -> anyhow::Result<Uuid> {
        Uuid::parse_str(&self.user_id).context("user id is not a UUID")
    }
}

/// The outcome of a locked update.
#[derive(Debug, Clone)]
pub struct Updated {
    /// The document after the update (or as it was, when nothing changed).
    pub payment: PaymentDoc,
    /// Whether this caller's update was applied.
    pub changed: bool,
}

/// Who holds an order's claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This payment now holds it.
    Taken,
    /// The claim is held by this payment.
    HeldBy(String),
}

/// One entry of the payment log.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub payment_id: String,
    pub order_id: String,
    /// `attempt` (a provider call) or `status` (a status change).
    pub kind: &'static str,
    pub status: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub card_brand: String,
    pub card_last4: String,
    pub provider_reference: Option<String>,
    /// For attempts: the call's number, how it ended, the HTTP status, its duration.
    pub attempt: Option<u32>,
    pub outcome: Option<String>,
    pub http_status: Option<u16>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    pub at: bson::DateTime,
}

impl LogEntry {
    /// An entry about `payment`, to be completed by the caller.
    pub fn about(payment: &PaymentDoc, kind: &'static str) -> Self {
        Self {
            payment_id: payment.id.clone(),
            order_id: payment.order_id.clone(),
            kind,
            status: None,
            amount: payment.amount,
            currency: payment.currency.clone(),
            card_brand: payment.card_brand.clone(),
            card_last4: payment.card_last4.clone(),
            provider_reference: payment.provider_reference.clone(),
            attempt: None,
            outcome: None,
            http_status: None,
            duration_ms: None,
            error: None,
            at: bson::DateTime::now(),
        }
    }

    /// The status change `payment` just went through.
    pub fn status_of(payment: &PaymentDoc) -> Self {
        let mut entry = Self::about(payment, "status");
        entry.status = Some(payment.status.clone());
        entry.error = payment.failure_reason.clone();
        entry
    }
}

#[derive(Debug, Clone)]
pub struct Payments {
    collection: Collection<PaymentDoc>,
    claims: Collection<Document>,
    log: Collection<LogEntry>,
    locks: DocumentLocks,
}

impl Payments {
    pub fn new(db: &Database) -> Self {
        Self {
            collection: db.collection(COLLECTION),
            claims: db.collection(CLAIMS),
            log: db.collection(LOG),
            locks: DocumentLocks::new(db, LOCKS),
        }
    }

    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<PaymentDoc>> {
        self.collection
            .find_one(doc! {"_id": id.to_string()})
            .await
            .context("reading a payment")
    }

    /// Inserts a new payment; `false` if one with its id exists (the same Idempotency-Key).
    pub async fn insert(&self, payment: &PaymentDoc) -> anyhow::Result<bool> {
        match self.collection.insert_one(payment).await {
            Ok(_) => Ok(true),
            Err(error) if is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(anyhow::Error::new(error).context("inserting a payment")),
        }
    }

    /// The payments of `user`, of one order if given, oldest first.
    pub async fn list(&self, user: Uuid, order: Option<Uuid>) -> anyhow::Result<Vec<PaymentDoc>> {
        let mut filter = doc! {"user_id": user.to_string()};
        if let Some(order) = order {
            filter.insert("order_id", order.to_string());
        }
        let mut payments: Vec<PaymentDoc> = self
            .collection
            .find(filter)
            .limit(100)
            .await
            .context("listing payments")?
            .try_collect()
            .await
            .context("reading payments")?;
        payments.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(payments)
    }

    /// Payments of `order` in one of `statuses`.
    pub async fn of_order(
        &self,
        order: Uuid,
        statuses: &[PaymentStatus],
    ) -> anyhow::Result<Vec<PaymentDoc>> {
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        self.collection
            .find(doc! {"order_id": order.to_string(), "status": {"$in": statuses}})
            .await
            .context("finding an order's payments")?
            .try_collect()
            .await
            .context("reading an order's payments")
    }

    /// Payments in `status` last changed before `before` (the reconciler's work). One status
    /// per query: FerretDB pushes an equality down to PostgreSQL, not `$in`.
    pub async fn in_status(
        &self,
        status: PaymentStatus,
        before: bson::DateTime,
        limit: i64,
    ) -> anyhow::Result<Vec<PaymentDoc>> {
        self.collection
            .find(doc! {"status": status.as_str(), "updated_at": {"$lt": before}})
            .limit(limit)
            .await
            .context("finding payments to reconcile")?
            .try_collect()
            .await
            .context("reading payments to reconcile")
    }

    /// Succeeded payments whose refund check has not run, last changed before `before`.
    pub async fn refund_checks_due(
        &self,
        before: bson::DateTime,
    ) -> anyhow::Result<Vec<PaymentDoc>> {
        self.collection
            .find(doc! {
                // The flag narrows the PostgreSQL scan (pushed down); status and age are
                // checked on the few rows it returns.
                "refund_check": true,
                "status": PaymentStatus::Succeeded.as_str(),
                "updated_at": {"$lt": before},
            })
            .limit(100)
            .await
            .context("finding refund checks")?
            .try_collect()
            .await
            .context("reading refund checks")
    }

    /// Reads the payment under its lock and applies what `decide` returns (an update
    /// document, or `None` for no change). Deciding on the state read under the lock is what
    /// makes a transition happen once, on FerretDB too.
    pub async fn update_locked<F>(&self, id: Uuid, decide: F) -> anyhow::Result<Option<Updated>>
    where
        F: FnOnce(&PaymentDoc) -> anyhow::Result<Option<Document>>,
    {
        let key = id.to_string();
        let lock = self
            .locks
            .acquire(&key, LOCK_WAIT)
            .await?
            .with_context(|| format!("payment {key} stayed locked for {LOCK_WAIT:?}"))?;
        let outcome = async {
            let Some(current) = self.get(id).await? else {
                return Ok(None);
            };
            let Some(update) = decide(&current)? else {
                return Ok(Some(Updated {
                    payment: current,
                    changed: false,
                }));
            };
            self.collection
                .update_one(doc! {"_id": &key}, update)
                .await
                .context("updating a payment")?;
            let payment = self
                .get(id)
                .await?
                .context("the payment vanished during its update")?;
            Ok(Some(Updated {
                payment,
                changed: true,
            }))
        }
        .await;
        if let Err(error) = lock.release().await {
            // The lease frees it soon; the update itself is done.
            tracing::warn!(
                error = format!("{error:#}"),
                "releasing a payment lock failed"
            );
        }
        outcome
    }

    /// Claims `order` for `payment`.
    pub async fn claim(&self, order: Uuid, payment: Uuid) -> anyhow::Result<Claim> {
        let claim = doc! {
            "_id": order.to_string(),
            "payment_id": payment.to_string(),
            "at": bson::DateTime::now(),
            "open": true,
        };
        match self.claims.insert_one(claim).await {
            Ok(_) => Ok(Claim::Taken),
            Err(error) if is_duplicate_key(&error) => {
                let held = self
                    .claims
                    .find_one(doc! {"_id": order.to_string()})
                    .await
                    .context("reading a claim")?;
                match held.and_then(|held| held.get_str("payment_id").ok().map(str::to_owned)) {
                    Some(holder) => Ok(Claim::HeldBy(holder)),
                    // Released in between: try once more.
                    None => Box::pin(self.claim(order, payment)).await,
                }
            }
            Err(error) => Err(anyhow::Error::new(error).context("claiming the order")),
        }
    }

    /// Gives up `payment`'s claim on `order` (after a definitive failure).
    pub async fn release_claim(&self, order: &str, payment: &str) -> anyhow::Result<()> {
        self.claims
            .delete_one(doc! {"_id": order, "payment_id": payment})
            .await
            .context("releasing a claim")?;
        Ok(())
    }

    /// Sets whether `payment`'s claim on `order` is still in question: `false` once its
    /// payment succeeded (the claim stays and needs no more looks; `settled_at` records when),
    /// `true` for a claim written before claims carried `open`.
    pub async fn set_claim_open(
        &self,
        order: &str,
        payment: &str,
        open: bool,
    ) -> anyhow::Result<()> {
        let mut set = doc! {"open": open};
        if !open {
            set.insert("settled_at", bson::DateTime::now());
        }
        self.claims
            .update_one(
                doc! {"_id": order, "payment_id": payment},
                doc! {"$set": set},
            )
            .await
            .context("updating a claim")?;
        Ok(())
    }

    /// Up to 100 claims taken before `before` and not settled, oldest first:
    /// `(order id, payment id)`.
    pub async fn unsettled_claims_before(
        &self,
        before: bson::DateTime,
    ) -> anyhow::Result<Vec<(String, String)>> {
        self.find_claims(doc! {"open": true, "at": {"$lt": before}}, 100)
            .await
    }

    /// Claims written before claims carried `open` (checked once when the reconciler starts).
    pub async fn claims_without_open_flag(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.find_claims(doc! {"open": {"$exists": false}}, 10_000)
            .await
    }

    async fn find_claims(
        &self,
        filter: Document,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let claims: Vec<Document> = self
            .claims
            .find(filter)
            .sort(doc! {"at": 1})
            .limit(limit)
            .await
            .context("finding old claims")?
            .try_collect()
            .await
            .context("reading old claims")?;
        Ok(claims
            .iter()
            .filter_map(|claim| {
                Some((
                    claim.get_str("_id").ok()?.to_owned(),
                    claim.get_str("payment_id").ok()?.to_owned(),
                ))
            })
            .collect())
    }

    /// Appends to the payment log. A lost log line must not fail a payment, so errors are
    /// only reported.
    pub async fn log(&self, entry: LogEntry) {
        if let Err(error) = self.log.insert_one(entry).await {
            tracing::warn!(%error, "writing the payment log failed");
        }
    }
}

/// The update that `$set`s `set` on a payment and adds `event` to its outbox (one update, so
/// the change and its event commit together).
pub fn with_event(set: Document, event: &PendingEvent) -> anyhow::Result<Document> {
    Ok(messaging::mongo::with_pending_event(
        doc! {"$set": set},
        event.to_document()?,
    ))
}
