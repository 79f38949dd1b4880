//! Payment documents, order claims and the payment log.
//!
//! - `payments`: `_id` = payment id (derived from the user and the Idempotency-Key, so the
//!   insert is the idempotency check), the order, the amount, card brand and last four only,
//!   status, provider reference, failure reason, refund reference, timestamps, and
//!   `pending_events` (the single-document outbox: a status change and its event are one
//!   update), and `revision`, a counter every update increments. Every write after the insert
//!   is one `findOneAndUpdate` guarded by the revision it was decided on
//!   ([`Payments::update_guarded`]).
//! - `payment_claims`: `_id` = order id, `payment_id`. Inserted before the provider is called;
//!   a duplicate key means another payment of the order is in flight or has succeeded. A
//!   definitive failure deletes the claim so the customer may try another card; success keeps
//!   it forever. This is what makes "at most one successful payment per order" a database
//!   rule rather than a check-then-act in code. The reconciler looks at each old claim until
//!   its payment has an outcome: a failed or missing payment's claim is released, a
//!   successful one's gets `open: false` (and `settled_at`) and is never looked at again, so
//!   a pass reads only the claims still in question, not every order ever paid (through the
//!   index on `open`). A batch's payments are read in one query and its paid claims settled
//!   in one update ([`Payments::statuses_of`], [`Payments::settle_claims`]).
//! - `payment_log`: one document per provider attempt and per status change (amounts, brand,
//!   last four, provider reference, timings, errors): an audit trail that is only appended to,
//!   a request's lines in one insert ([`Payments::log_all`]).

use std::collections::HashMap;

use anyhow::Context as _;
use contracts::topics::Topic;
use contracts::{CloudEvent, EventData};
use futures::TryStreamExt as _;
use messaging::mongo::{ConflictRetry, PendingEvent};
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::is_duplicate_key;
use crate::domain::payment_status::PaymentStatus;

/// The CloudEvents `source` of everything this service emits.
pub const EVENT_SOURCE: &str = "/payment-service";

pub const COLLECTION: &str = "payments";
/// How many payments or claims one query of the reconciler reads.
pub const BATCH: i64 = 100;
pub const CLAIMS: &str = "payment_claims";
pub const LOG: &str = "payment_log";

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
    /// The provider's idempotency key of this payment's refund and why it is refunded, written
    /// with `refunding`; a retried refund reuses them (see `refunds::RefundCause`). Absent in
    /// documents written before refund requests existed (the cancelled-order defaults apply).
    #[serde(default)]
    pub refund_key: Option<String>,
    #[serde(default)]
    pub refund_reason: Option<String>,
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
    /// Incremented by every update after the insert; the guard of [`Payments::update_guarded`].
    /// Absent (0) in documents written before it existed.
    #[serde(default)]
    pub revision: i64,
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

/// The outcome of a guarded update.
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
}

impl Payments {
    pub fn new(db: &Database) -> Self {
        Self {
            collection: db.collection(COLLECTION),
            claims: db.collection(CLAIMS),
            log: db.collection(LOG),
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

    /// Payments in `status` last changed before `before` (the reconciler's work, one status
    /// at a time; the `status` index serves it).
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

    /// Succeeded payments whose refund check has not run, last changed before `before`, up
    /// to [`BATCH`]. Read through the `refund_check` index: the flag is up only between a
    /// success and its check, so the pass reads the few payments waiting, not every success.
    pub async fn refund_checks_due(
        &self,
        before: bson::DateTime,
    ) -> anyhow::Result<Vec<PaymentDoc>> {
        self.collection
            .find(doc! {
                // Due while the flag is up (set with `succeeded`, cleared once the look at the
                // order is done); a refund under way has its own pass, and the age leaves a
                // check that is still running in its request alone.
                "refund_check": true,
                "status": PaymentStatus::Succeeded.as_str(),
                "updated_at": {"$lt": before},
            })
            .limit(BATCH)
            .await
            .context("finding refund checks")?
            .try_collect()
            .await
            .context("reading refund checks")
    }

    /// Lowers the refund check of the payments `ids` (their order's status was looked at), in
    /// one update for all of them. Not guarded by the revision, and not counted as a change of
    /// the payment: the flag is set only by the move to `succeeded`, which happens once and
    /// before the check, and nothing else decides on it, so clearing it cannot undo another
    /// writer's change; the filter leaves payments whose flag is already down untouched.
    pub async fn clear_refund_checks(&self, ids: &[String]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.collection
            .update_many(
                doc! {"_id": {"$in": ids}, "refund_check": true},
                doc! {"$set": {"refund_check": false}},
            )
            .await
            .context("clearing refund checks")?;
        Ok(())
    }

    /// The statuses of the payments `ids`, in one query; a payment that does not exist is
    /// missing from the map (its status is `None` when this version does not know it).
    pub async fn statuses_of(
        &self,
        ids: &[String],
    ) -> anyhow::Result<HashMap<String, Option<PaymentStatus>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let found: Vec<Document> = self
            .collection
            .clone_with_type::<Document>()
            .find(doc! {"_id": {"$in": ids}})
            .projection(doc! {"status": 1})
            .await
            .context("reading payments' statuses")?
            .try_collect()
            .await
            .context("reading payments' statuses")?;
        Ok(found
            .iter()
            .filter_map(|payment| {
                let id = payment.get_str("_id").ok()?.to_owned();
                let status = payment
                    .get_str("status")
                    .ok()
                    .and_then(PaymentStatus::parse);
                Some((id, status))
            })
            .collect())
    }

    /// Reads the payment and applies what `decide` returns (an update document, or `None`
    /// for no change) in one `findOneAndUpdate` guarded by the `revision` read, which the
    /// update increments. So the change applies only to the payment `decide` saw: of two
    /// writers deciding on the same revision, one changes it and the other reads again and
    /// decides again on the result (a bounded number of times, then an error). This is what
    /// makes each transition happen once. Returns the payment after the update (or as read,
    /// when `decide` changed nothing); `None` if it does not exist.
    pub async fn update_guarded<F>(&self, id: Uuid, decide: F) -> anyhow::Result<Option<Updated>>
    where
        F: Fn(&PaymentDoc) -> anyhow::Result<Option<Document>>,
    {
        self.update_guarded_from(id, None, decide).await
    }

    /// [`Self::update_guarded`] deciding first on `known`, a version of the payment this
    /// caller already holds (the document it inserted), instead of reading it: one round trip
    /// fewer. Just as safe, because the guard is the revision `decide` saw, not the read: if
    /// the payment has changed since `known` (another writer), the update matches nothing and
    /// the loop reads the payment and decides again, as it would after any lost race.
    pub async fn update_guarded_from<F>(
        &self,
        id: Uuid,
        known: Option<PaymentDoc>,
        decide: F,
    ) -> anyhow::Result<Option<Updated>>
    where
        F: Fn(&PaymentDoc) -> anyhow::Result<Option<Document>>,
    {
        let key = id.to_string();
        let mut retry = ConflictRetry::new();
        let mut known = known;
        loop {
            let current = match known.take() {
                Some(known) => known,
                None => match self.get(id).await? {
                    Some(current) => current,
                    None => return Ok(None),
                },
            };
            let Some(update) = decide(&current)? else {
                return Ok(Some(Updated {
                    payment: current,
                    changed: false,
                }));
            };
            let updated = self
                .collection
                .find_one_and_update(
                    doc! {"_id": &key, "revision": revision_guard(current.revision)},
                    next_revision(update),
                )
                .return_document(ReturnDocument::After)
                .await
                .context("updating a payment")?;
            if let Some(payment) = updated {
                return Ok(Some(Updated {
                    payment,
                    changed: true,
                }));
            }
            if !retry.again().await {
                anyhow::bail!(
                    "payment {key} kept changing; gave up after {} conflicts",
                    retry.conflicts()
                );
            }
        }
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

    /// Marks the claims `(order id, payment id)` settled (their payments succeeded: the
    /// claims stay and need no more looks), in one update for all of them. Each claim matches
    /// only with the payment it was read with, so a claim that changed hands meanwhile is left
    /// alone, as [`Self::set_claim_open`] leaves it.
    ///
    /// The filter names the claims by `_id` (`$in`) beside the pairs (`$or`): a server reads a
    /// top-level `_id` list through the `_id` index and checks the pairs on those documents
    /// only, while an `$or` alone is a full scan on the local MongoDB-wire server (it uses an
    /// index only for a top-level condition). That scan held the collection for 0.4-1 s with
    /// 51,000 claims stored, and every new payment's claim waited behind it, in each pass that
    /// found claims to settle (claims left open by a restart or a crash: in steady checkout the
    /// payment request settles its own). With the `_id` list: 3.6 ms, no scan.
    pub async fn settle_claims(&self, claims: &[(String, String)]) -> anyhow::Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let orders: Vec<&str> = claims.iter().map(|(order, _)| order.as_str()).collect();
        let each: Vec<Document> = claims
            .iter()
            .map(|(order, payment)| doc! {"_id": order, "payment_id": payment})
            .collect();
        self.claims
            .update_many(
                doc! {"_id": {"$in": orders}, "$or": each},
                doc! {"$set": {"open": false, "settled_at": bson::DateTime::now()}},
            )
            .await
            .context("settling claims")?;
        Ok(())
    }

    /// Up to [`BATCH`] claims taken before `before` and not settled, oldest first:
    /// `(order id, payment id)`.
    pub async fn unsettled_claims_before(
        &self,
        before: bson::DateTime,
    ) -> anyhow::Result<Vec<(String, String)>> {
        self.find_claims(doc! {"open": true, "at": {"$lt": before}}, BATCH)
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
        self.log_all(vec![entry]).await;
    }

    /// Appends `entries` in one insert (a payment's lines of one step: its creation, the
    /// provider attempts and the outcome). Errors are only reported, as for [`Self::log`].
    pub async fn log_all(&self, entries: Vec<LogEntry>) {
        if entries.is_empty() {
            return;
        }
        if let Err(error) = self.log.insert_many(entries).await {
            tracing::warn!(%error, "writing the payment log failed");
        }
    }
}

/// What the `revision` of a payment read at `revision` matches: that value, and for 0 also a
/// missing field (a payment written before revisions existed).
fn revision_guard(revision: i64) -> Bson {
    match revision {
        0 => Bson::Document(doc! {"$in": [0_i64, Bson::Null]}),
        revision => Bson::Int64(revision),
    }
}

/// `update` with the revision increment added.
fn next_revision(mut update: Document) -> Document {
    match update.get_document_mut("$inc") {
        Ok(inc) => {
            inc.insert("revision", 1_i64);
        }
        Err(_) => {
            update.insert("$inc", doc! {"revision": 1_i64});
        }
    }
    update
}

/// A `payment.*` event about `order_id` (the key of `payment.events`), for a payment's outbox.
/// Here, beside the document that carries it, so that charging and refunds (which both
/// publish) need nothing from each other to do so.
pub fn pending_event<T: EventData>(
    topics: &Topic,
    order_id: Uuid,
    data: T,
) -> anyhow::Result<PendingEvent> {
    PendingEvent::new(
        topics,
        CloudEvent::new(EVENT_SOURCE, order_id.to_string(), data),
    )
}

/// The update that `$set`s `set` on a payment and adds `event` to its outbox (one update, so
/// the change and its event commit together).
pub fn with_event(set: Document, event: &PendingEvent) -> anyhow::Result<Document> {
    Ok(messaging::mongo::with_pending_event(
        doc! {"$set": set},
        event.to_document()?,
    ))
}
