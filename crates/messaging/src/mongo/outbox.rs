//! The single-document outbox and its relay.
//!
//! MongoDB makes one document's update atomic but gives the services no transaction across
//! documents, so the event of a change cannot go to a separate collection atomically. Instead
//! every write is one atomic update of the changed document (a product, an order's
//! reservation, a payment) that also appends the event to the document's `pending_events`
//! array: the change and its event commit together or not at all.
//!
//! A service names each collection that works this way with an [`Outbox`] and runs one relay
//! per collection. Writers add events with [`with_pending_event`], which also sets the
//! document's [`PENDING_FLAG`], a top-level boolean the relay's poll filters on (indexed), so a
//! poll reads the documents that have something to publish instead of testing the array of
//! every document.
//!
//! Writers tell the relay of their process which document they wrote through a [`RelayWake`]
//! (its `_id`), and the relay publishes exactly those documents at once, reading each by
//! `_id`: no query over the collection per write. The poll over the flag runs only on its
//! timer, as the safety net for documents no live relay was told of (written by a process
//! that crashed before publishing, or by a replica whose relay is down).
//!
//! The relay works in batches: the documents named since its last round (or found by the
//! poll), up to [`OutboxRelay`]'s batch size, are claimed with one `updateMany` that sets
//! [`CLAIM_FIELD`] (a time, [`CLAIM`] ahead) and [`CLAIM_TOKEN_FIELD`] (the batch's own id) only
//! where the flag is up and no live claim exists; one `find` by that token reads the pending
//! events of the documents this relay won. It publishes every event of the batch, each
//! document's in array order (they share the document's key, hence a partition), pipelined
//! with the idempotent producer; waits for the broker's acknowledgements; then one `updateMany`
//! clears every claimed document whose array holds nothing but acknowledged events
//! (`{"$not": {"$elemMatch": {"id": {"$nin": published}}}}`): empties it, lowers the flag and
//! drops the claim. So a round costs two writes and one read whatever the number of documents,
//! where a document at a time cost two writes each (a claim that returns the events, a clear),
//! and under load, when many documents wait per round, the relay's share of the MongoDB-wire
//! server's writes shrinks accordingly. A document a writer appended to meanwhile,
//! or whose events were not all acknowledged, does not match; for those a second `updateMany`
//! pulls exactly the acknowledged events by id (events appended meanwhile stay, having other
//! ids) and drops the claim, and a third lowers the flag where the array is now empty. Every
//! clear is guarded by the batch's token, so a relay whose claim expired and was taken over
//! touches nothing.
//!
//! Events that carry their key's whole state (product snapshots on the compacted
//! `product.events`) can be marked replaceable ([`PendingEvent::replaced_by_later`]): when a
//! round claims a document holding several, it publishes only what no later event of the
//! document replaces, and clears the replaced ones with the last. Nothing a consumer needs is
//! lost, since the later event carries everything and the topic's compaction would keep only
//! it anyway. Writers of such events may name their document with a hold-back
//! ([`RelayWake::written_within`]), so that a document changed many times a second waits for
//! a round in which its changes meet, instead of leaving one record per change.
//!
//! Collections whose documents share keys (several payments of one order) are published in an
//! order across documents ([`OutboxRelay::ordered_by`]): a timestamp set with every change. Their
//! round claims the same way, then reads every named document (not only the ones won) sorted
//! by that field, and publishes the won ones' events in that order, pipelined: a key's events
//! reach its partition in the order they were written, whatever order the writers named the
//! documents in. A document another relay holds stops its key for the round: the key's later
//! documents in the batch are released unpublished (their keys read from their events) and
//! left to the poll, while other keys go on. Until that replaced it, such a collection was
//! published one document at a time (claim, publish, await the acknowledgement, clear), so
//! under load its relay, not the writers, set the pace: at 38 orders/s payment-service's
//! `payment.succeeded` left a median 210 ms after the payment was answered.
//!
//! The start-up pass over documents written before the flag existed goes a document at a time:
//! each is claimed with one guarded `findOneAndUpdate` that sets
//! [`CLAIM_FIELD`] only where no live claim exists, and reads the
//! pending events in the same step; publishes them in array order with the idempotent producer;
//! waits for the broker's acknowledgements; then removes exactly the acknowledged events and
//! drops the claim in one update. When the array still holds exactly the events published (its
//! size and their ids match), that update also empties it and lowers the flag; otherwise (a
//! writer appended an event meanwhile) it is a `$pull` by event id, and the flag stays up for
//! the next round. The claim is the relay's only coordination: it keeps
//! two relays (two replicas) from publishing one document's events at once, so the events go
//! out once and in order, and it costs no extra round trip (the claim is the read). Writers
//! never look at it: a writer's update is never held up or undone by a relay, and an event a
//! writer appended meanwhile stays (it has another id). The flag is lowered by a second update
//! whose filter matches only while the array is empty, so a writer that appended an event
//! after the claim keeps the flag up: the invariant is that the flag is never down while an
//! event waits. A relay starting up publishes, once, documents written before the flag
//! existed.
//!
//! Windows that remain, all "at least once, never zero times": a crash after the broker's
//! acknowledgement and before the `$pull` publishes those events again when the claim has
//! expired (after [`CLAIM`]); a relay stalled beyond [`CLAIM`] while publishing can meet a
//! second relay that took over the document, and both publish. Consumers deduplicate on the
//! CloudEvent id, and a product snapshot's `version` makes a repeated snapshot harmless.
//! Per-document order holds for what they see: an event leaves the array only after the broker
//! acknowledged it, so whenever a relay publishes an event, every earlier event of the
//! document is either in the same claim (and published just before it) or already on the
//! partition.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use contracts::topics::Topic;
use contracts::{CloudEvent, EventData};
use futures::TryStreamExt as _;
use mongodb::bson::{self, Document, doc};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::kafka::Producer;
use crate::publish::{OutgoingRecord, publish_in_order};

/// A collection whose documents carry `pending_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbox {
    pub collection: &'static str,
}

/// Top-level field that is `true` while a document has pending events.
pub const PENDING_FLAG: &str = "outbox_pending";

/// Adds `event` to `update` (the change's own operators): `$push` onto `pending_events` and
/// `$set` of [`PENDING_FLAG`], so the change, its event and the relay's marker are one update.
pub fn with_pending_event(mut update: Document, event: Document) -> Document {
    match update.get_document_mut("$set") {
        Ok(set) => {
            set.insert(PENDING_FLAG, true);
        }
        Err(_) => {
            update.insert("$set", doc! {PENDING_FLAG: true});
        }
    }
    match update.get_document_mut("$push") {
        Ok(push) => {
            push.insert("pending_events", event);
        }
        Err(_) => {
            update.insert("$push", doc! {"pending_events": event});
        }
    }
    update
}

/// Top-level field holding the time until which a relay's claim on the document holds.
pub const CLAIM_FIELD: &str = "outbox_claimed_until";

/// Top-level field naming the batch that holds a document's claim (a fresh `ObjectId` per
/// batch), so one `updateMany` can claim many documents and the relay then reads and clears
/// exactly the ones it won.
pub const CLAIM_TOKEN_FIELD: &str = "outbox_claim_token";

/// How long a relay's claim holds: longer than a publish can take (the producer gives up on a
/// record after 5 s), so live relays never share a document; a relay that dies holding a
/// claim delays that document's events by at most this.
pub const CLAIM: Duration = Duration::from_secs(15);

/// Now, and the time until which a claim taken now holds ([`CLAIM`] ahead).
fn claim_window() -> (bson::DateTime, bson::DateTime) {
    let now = bson::DateTime::now();
    let until = bson::DateTime::from_millis(now.timestamp_millis() + CLAIM.as_millis() as i64);
    (now, until)
}

/// The `$or` clauses of "no live claim at `now`": never claimed, or the claim has expired.
fn unclaimed(now: bson::DateTime) -> Vec<Document> {
    vec![
        doc! {CLAIM_FIELD: {"$exists": false}},
        doc! {CLAIM_FIELD: {"$lt": now}},
    ]
}

/// An event waiting in its document. `id` (the CloudEvent id) is what the relay removes it
/// by once published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEvent {
    pub id: String,
    pub topic: String,
    pub key: String,
    /// The CloudEvent as JSON text.
    pub payload: String,
    /// W3C trace context of the request that made the change, as JSON text.
    pub headers: String,
    /// Whether a later event of the same document makes this one unnecessary: it carries the
    /// whole state of its key (a snapshot on a compacted topic), and so does every event
    /// written to the document after it. A relay round that holds both publishes only the
    /// later one and removes this one with it. Stored only when `true`, so events written
    /// before the field read as not replaceable. Set with [`PendingEvent::replaced_by_later`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub replaceable: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl PendingEvent {
    /// The event of a change about to be written, with the current span's trace context so
    /// the publish (and every consumer) joins the request's trace.
    pub fn new<T: EventData>(topics: &Topic, event: CloudEvent<T>) -> anyhow::Result<Self> {
        let event = event.into_untyped().context("serialising the event")?;
        Ok(Self {
            id: event.id.to_string(),
            topic: topics.qualified(T::TOPIC),
            key: event.subject.clone(),
            payload: serde_json::to_string(&event).context("serialising the event")?,
            headers: serde_json::to_string(&telemetry::context_headers(&tracing::Span::current()))
                .context("serialising trace headers")?,
            replaceable: false,
        })
    }

    /// Marks the event as made unnecessary by any later event of its document (see the
    /// field): only for a document whose every event carries its key's whole state.
    pub fn replaced_by_later(mut self) -> Self {
        self.replaceable = true;
        self
    }

    pub fn to_document(&self) -> anyhow::Result<Document> {
        bson::to_document(self).context("encoding a pending event")
    }
}

/// How writers tell their relay which documents now hold pending events. Cheap to clone; one
/// per outbox collection, shared by the writers of the collection and its relay.
#[derive(Debug, Clone, Default)]
pub struct RelayWake {
    shared: Arc<WakeShared>,
}

#[derive(Debug, Default)]
struct WakeShared {
    notify: Notify,
    /// `_id`s written since the relay last looked, in the order written, each once.
    written: Mutex<Vec<bson::Bson>>,
    /// Whether a held-back wake ([`RelayWake::written_within`]) is on its way.
    held_back: AtomicBool,
}

impl RelayWake {
    /// Call after a write that appended an event to document `id` committed.
    pub fn written(&self, id: impl Into<bson::Bson>) {
        self.name(id.into());
        self.shared.notify.notify_one();
    }

    /// Call after a write whose events may wait up to `hold_back` (zero: at once, as
    /// [`Self::written`]): the relay is woken once that time has passed since the first such
    /// write it has not yet been woken for, and then publishes every document named
    /// meanwhile in one round. A document written several times in that time holds several
    /// events, and the [`PendingEvent::replaceable`] ones among them give way to the last,
    /// so a product whose stock changes a hundred times a second publishes a few snapshots
    /// instead of a hundred. A write named by [`Self::written`] meanwhile wakes the relay at
    /// once, for every document named so far.
    pub fn written_within(&self, id: impl Into<bson::Bson>, hold_back: Duration) {
        self.name(id.into());
        if hold_back.is_zero() {
            self.shared.notify.notify_one();
            return;
        }
        if self.shared.held_back.swap(true, Ordering::AcqRel) {
            // The wake on its way covers this document too.
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let shared = Arc::clone(&self.shared);
                runtime.spawn(async move {
                    tokio::time::sleep(hold_back).await;
                    // Lowered before the wake: a write in between arms a wake of its own (one
                    // round more), never none.
                    shared.held_back.store(false, Ordering::Release);
                    shared.notify.notify_one();
                });
            }
            Err(_) => {
                // No runtime to wait on (a caller outside one): at once.
                self.shared.held_back.store(false, Ordering::Release);
                self.shared.notify.notify_one();
            }
        }
    }

    fn name(&self, id: bson::Bson) {
        let mut written = self
            .shared
            .written
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !written.contains(&id) {
            written.push(id);
        }
    }

    /// The documents written since the last call, in the order written.
    fn take(&self) -> Vec<bson::Bson> {
        std::mem::take(
            &mut *self
                .shared
                .written
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// Publishes pending events of committed changes in one collection to Kafka.
#[derive(Clone)]
pub struct OutboxRelay {
    outbox: Outbox,
    documents: Collection<Document>,
    producer: Producer,
    wake: RelayWake,
    batch_size: i64,
    poll_interval: Duration,
    /// Publish documents one at a time in this field's ascending order (see
    /// [`OutboxRelay::ordered_by`]).
    order_field: Option<&'static str>,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("collection", &self.outbox.collection)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl OutboxRelay {
    /// `wake` names the documents local writes changed, so their events go out at once;
    /// `poll_interval` catches documents of writers that died before their relay published,
    /// and of replicas whose relay is down.
    pub fn new(db: &Database, outbox: Outbox, producer: Producer, wake: RelayWake) -> Self {
        Self {
            outbox,
            documents: db.collection(outbox.collection),
            producer,
            wake,
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            order_field: None,
        }
    }

    /// For collections where several documents carry events of one Kafka key (the payments
    /// of one order): each batch publishes its documents in ascending order of `field` (a
    /// timestamp set with every change), and a document another relay holds keeps the later
    /// documents of its key back ([`OutboxRelay::claim_in_order`]), so events reach their
    /// partition in the order the changes were written. Two replicas' relays can still
    /// interleave a key's documents when neither sees the other's claim; within one document
    /// the order always holds.
    pub fn ordered_by(mut self, field: &'static str) -> Self {
        self.order_field = Some(field);
        self
    }

    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// Runs until `shutdown` is cancelled; then the documents in flight are finished and what
    /// is left is drained (for at most 10 s), so a graceful stop neither loses nor strands
    /// events. Cancel it only after the HTTP server has drained.
    pub async fn run(self, shutdown: CancellationToken) {
        if let Err(error) = self.publish_unflagged().await {
            // Not fatal: the events stay in their documents for the next start.
            tracing::warn!(
                error = format!("{error:#}"),
                collection = self.outbox.collection,
                "publishing events written before the outbox flag failed"
            );
        }
        let mut failures: u32 = 0;
        // The first round, and every round after a timer tick or a failure, polls the flag.
        let mut poll = true;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // Registered before the round, so a write landing during it is not missed.
            let woken = self.wake.shared.notify.notified();
            // `Ok(true)`: poll again at once (a full batch, or a written document that could
            // not go in order).
            let round = if poll {
                self.publish_batch()
                    .await
                    .map(|documents| documents as i64 >= self.batch_size)
            } else {
                self.publish_written().await
            };
            match round {
                Ok(true) => {
                    failures = 0;
                    poll = true;
                    continue;
                }
                Ok(_) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    metrics::counter!("outbox_publish_failures_total", &self.labels()).increment(1);
                    tracing::warn!(
                        error = format!("{error:#}"),
                        collection = self.outbox.collection,
                        failures,
                        "outbox publish failed"
                    );
                    let backoff = Duration::from_millis(200 * 2u64.pow(failures.min(6)));
                    // The documents of this round keep their flag; the poll finds them.
                    poll = true;
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => continue,
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = woken => poll = false,
                () = tokio::time::sleep(self.poll_interval) => poll = true,
            }
        }
        self.drain().await;
        tracing::info!(collection = self.outbox.collection, "outbox relay stopped");
    }

    fn labels(&self) -> [(&'static str, &'static str); 1] {
        [("collection", self.outbox.collection)]
    }

    /// Publishes what is left, for a bounded time, so events of the last requests before a
    /// shutdown leave with this process instead of waiting for the next start.
    async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            match self.publish_batch().await {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "final outbox drain failed");
                    return;
                }
            }
        }
    }

    /// Publishes the events of documents that hold some without [`PENDING_FLAG`] (written by
    /// a version before the flag), once at start-up: the only full scan the relay makes.
    async fn publish_unflagged(&self) -> anyhow::Result<()> {
        let filter = doc! {"pending_events.0": {"$exists": true}, PENDING_FLAG: {"$ne": true}};
        for id in self.pending_ids(filter, None).await? {
            let id = id.get("_id").cloned().context("document without _id")?;
            // Claimed by another relay: that one publishes it.
            let _ = self.publish_document(id).await?;
        }
        Ok(())
    }

    /// The `_id`s of documents matching `filter`, in publishing order (see
    /// [`OutboxRelay::ordered_by`]).
    async fn pending_ids(
        &self,
        filter: Document,
        limit: Option<i64>,
    ) -> anyhow::Result<Vec<Document>> {
        let mut find = self.documents.find(filter).projection(doc! {"_id": 1});
        if let Some(limit) = limit {
            find = find.limit(limit);
        }
        if let Some(field) = self.order_field {
            find = find.sort(doc! {field: 1, "_id": 1});
        }
        find.await
            .context("looking for pending events")?
            .try_collect()
            .await
            .context("reading pending documents")
    }

    /// Publishes the documents local writers named since the last round, each claimed by
    /// `_id` (no query over the collection); `true` if the poll should run at once. In
    /// publishing order ([`OutboxRelay::ordered_by`]) each batch goes in the order field's
    /// order, and documents held back behind another relay's claim are left to the poll
    /// ([`OutboxRelay::claim_in_order`]).
    async fn publish_written(&self) -> anyhow::Result<bool> {
        let ids = self.wake.take();
        let mut poll = false;
        for chunk in ids.chunks(self.batch_size.max(1) as usize) {
            let claimed = match self.order_field {
                Some(field) => {
                    let (claimed, held) = self.claim_in_order(chunk, field).await?;
                    poll |= held;
                    claimed
                }
                None => self.claim(chunk).await?,
            };
            self.publish_claimed(claimed).await?;
        }
        Ok(poll)
    }

    /// Publishes the pending events of up to one batch of documents; returns how many
    /// documents it handled.
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        // Documents another relay has claimed are left to it.
        let now = bson::DateTime::now();
        let ids = self
            .pending_ids(
                doc! {PENDING_FLAG: true, "$or": unclaimed(now)},
                Some(self.batch_size),
            )
            .await?;
        // Here the backlog is counted in documents (each holds one or more events), up to a
        // batch: enough to alert on a relay that falls behind, without an extra count query.
        metrics::gauge!("outbox_backlog", &self.labels()).set(ids.len() as f64);
        let ids: Vec<bson::Bson> = ids
            .iter()
            .map(|id| id.get("_id").cloned().context("document without _id"))
            .collect::<anyhow::Result<_>>()?;
        // Documents another relay holds do not count: a batch of those is no reason to come
        // straight back.
        let claimed = match self.order_field {
            Some(field) => self.claim_in_order(&ids, field).await?.0,
            None => self.claim(&ids).await?,
        };
        self.publish_claimed(claimed).await
    }

    /// Claims, with one `updateMany`, those of `ids` that are flagged and not claimed by a live
    /// relay, and reads their pending events: the first half of a batched round (public so
    /// tests can interleave a write between the halves). A single document is claimed and read
    /// with one `findOneAndUpdate` under the same filter.
    pub async fn claim(&self, ids: &[bson::Bson]) -> anyhow::Result<ClaimedBatch> {
        let token = bson::oid::ObjectId::new();
        if ids.is_empty() {
            return Ok(ClaimedBatch {
                token,
                documents: Vec::new(),
            });
        }
        let (now, until) = claim_window();
        if let [id] = ids {
            // One document (the usual round below full load): the same claim with one
            // `findOneAndUpdate` that returns its events, one command instead of two.
            let claimed = self
                .documents
                .find_one_and_update(
                    doc! {"_id": id, PENDING_FLAG: true, "$or": unclaimed(now)},
                    doc! {"$set": {CLAIM_FIELD: until, CLAIM_TOKEN_FIELD: token}},
                )
                .projection(doc! {"pending_events": 1})
                .return_document(ReturnDocument::After)
                .await
                .context("claiming a document's pending events")?;
            let documents = match claimed {
                Some(document) => vec![(id.clone(), pending_events(&document)?)],
                None => Vec::new(),
            };
            return Ok(ClaimedBatch { token, documents });
        }
        if self.claim_many(ids, token, now, until).await? == 0 {
            return Ok(ClaimedBatch {
                token,
                documents: Vec::new(),
            });
        }
        let found: Vec<Document> = self
            .documents
            .find(doc! {"_id": {"$in": ids}, CLAIM_TOKEN_FIELD: token})
            .projection(doc! {"pending_events": 1})
            .await
            .context("reading claimed documents")?
            .try_collect()
            .await
            .context("reading claimed documents")?;
        // In the order the ids were given (the order written), so the batch's records go out
        // in that order too.
        let mut documents = Vec::with_capacity(found.len());
        for id in ids {
            if let Some(document) = found.iter().find(|d| d.get("_id") == Some(id)) {
                documents.push((id.clone(), pending_events(document)?));
            }
        }
        Ok(ClaimedBatch { token, documents })
    }

    /// Claims, with one `updateMany` under `token` until `until`, those of `ids` that are
    /// flagged and not claimed by a live relay at `now`; returns how many it claimed.
    async fn claim_many(
        &self,
        ids: &[bson::Bson],
        token: bson::oid::ObjectId,
        now: bson::DateTime,
        until: bson::DateTime,
    ) -> anyhow::Result<u64> {
        let claimed = self
            .documents
            .update_many(
                doc! {"_id": {"$in": ids}, PENDING_FLAG: true, "$or": unclaimed(now)},
                doc! {"$set": {CLAIM_FIELD: until, CLAIM_TOKEN_FIELD: token}},
            )
            .await
            .context("claiming documents' pending events")?;
        Ok(claimed.modified_count)
    }

    /// The claim of a collection published in `field`'s order ([`OutboxRelay::ordered_by`]):
    /// claims those of `ids` that are flagged and free with one `updateMany`, as [`claim`]
    /// does, then reads all of `ids` in `field`'s order with one `find` and keeps the documents
    /// it won in that order. A document another relay holds stops its key: every later
    /// document of that key (read from its pending events) is released at once, unpublished,
    /// so no event overtakes an earlier one of its key; documents of other keys go on. The
    /// second value is `true` when something was released (the poll should look again).
    /// Documents that were not flagged at the claim are skipped: nothing of theirs was
    /// pending then, so whatever they hold now was written after every event of this batch.
    ///
    /// [`claim`]: OutboxRelay::claim
    pub async fn claim_in_order(
        &self,
        ids: &[bson::Bson],
        field: &'static str,
    ) -> anyhow::Result<(ClaimedBatch, bool)> {
        if ids.len() < 2 {
            // Nothing to order: the one-command claim.
            return Ok((self.claim(ids).await?, false));
        }
        let token = bson::oid::ObjectId::new();
        let (now, until) = claim_window();
        if self.claim_many(ids, token, now, until).await? == 0 {
            return Ok((
                ClaimedBatch {
                    token,
                    documents: Vec::new(),
                },
                false,
            ));
        }
        let found: Vec<Document> = self
            .documents
            .find(doc! {"_id": {"$in": ids}})
            .projection(doc! {
                "pending_events": 1,
                CLAIM_FIELD: 1,
                CLAIM_TOKEN_FIELD: 1,
                PENDING_FLAG: 1,
            })
            .sort(doc! {field: 1, "_id": 1})
            .await
            .context("reading claimed documents")?
            .try_collect()
            .await
            .context("reading claimed documents")?;
        let now = bson::DateTime::now();
        let mut documents = Vec::new();
        let mut held_keys: Vec<String> = Vec::new();
        let mut released: Vec<bson::Bson> = Vec::new();
        for document in &found {
            let id = document
                .get("_id")
                .cloned()
                .context("document without _id")?;
            let pending = pending_events(document)?;
            let ours = document.get_object_id(CLAIM_TOKEN_FIELD).ok() == Some(token);
            if ours {
                if pending.iter().any(|event| held_keys.contains(&event.key)) {
                    released.push(id);
                } else {
                    documents.push((id, pending));
                }
                continue;
            }
            let held = document.get_bool(PENDING_FLAG).unwrap_or(false)
                && document
                    .get_datetime(CLAIM_FIELD)
                    .is_ok_and(|claimed_until| *claimed_until >= now);
            if held {
                held_keys.extend(pending.into_iter().map(|event| event.key));
            }
        }
        if !released.is_empty() {
            metrics::counter!("outbox_ordered_releases_total", &self.labels())
                .increment(released.len() as u64);
            self.documents
                .update_many(
                    doc! {"_id": {"$in": &released}, CLAIM_TOKEN_FIELD: token},
                    doc! {"$unset": {CLAIM_FIELD: "", CLAIM_TOKEN_FIELD: ""}},
                )
                .await
                .context("releasing documents behind another relay's claim")?;
        }
        Ok((ClaimedBatch { token, documents }, !released.is_empty()))
    }

    /// Publishes the claimed documents' events (each document's in array order, all of them
    /// pipelined), then clears with one `updateMany` every document whose array holds nothing
    /// but acknowledged events: empties it, lowers the flag, drops the claim. Only documents a
    /// writer appended to meanwhile, or whose events were not all acknowledged, take two more
    /// updates (the acknowledged events pulled by id, then the flag lowered where nothing is
    /// left). Returns how many documents it handled.
    pub async fn publish_claimed(&self, batch: ClaimedBatch) -> anyhow::Result<usize> {
        let ClaimedBatch { token, documents } = batch;
        if documents.is_empty() {
            return Ok(0);
        }
        let mut events: Vec<PendingEvent> = Vec::new();
        // Events a later one of their document replaces, each with that document's last event,
        // whose acknowledgement takes them off the document too.
        let mut replaced: Vec<(&str, &str)> = Vec::new();
        for (_, pending) in &documents {
            let (publish, dropped) = split_replaced(pending);
            if let Some(last) = pending.last() {
                replaced.extend(dropped.into_iter().map(|id| (id, last.id.as_str())));
            }
            events.extend(publish.into_iter().cloned());
        }
        let mut published = self.publish_acknowledged(&events).await;
        let failed = events.len() - published.len();
        if !replaced.is_empty() {
            let acknowledged: HashSet<&str> = published.iter().copied().collect();
            let gone: Vec<&str> = replaced
                .iter()
                .filter(|(_, last)| acknowledged.contains(last))
                .map(|(id, _)| *id)
                .collect();
            metrics::counter!("outbox_replaced_total", &self.labels()).increment(gone.len() as u64);
            published.extend(gone);
        }
        metrics::histogram!("outbox_batch_documents", &self.labels())
            .record(documents.len() as f64);
        let ids: Vec<&bson::Bson> = documents.iter().map(|(id, _)| id).collect();
        let cleared = self
            .documents
            .update_many(
                doc! {
                    "_id": {"$in": &ids},
                    CLAIM_TOKEN_FIELD: token,
                    "pending_events": {"$not": {"$elemMatch": {"id": {"$nin": &published}}}},
                },
                doc! {
                    "$set": {"pending_events": [], PENDING_FLAG: false},
                    "$unset": {CLAIM_FIELD: "", CLAIM_TOKEN_FIELD: ""},
                },
            )
            .await
            .context("removing published events")?;
        if cleared.matched_count < ids.len() as u64 {
            // Exactly the acknowledged events, by id (events appended meanwhile stay), and the
            // claim goes with them.
            self.documents
                .update_many(
                    doc! {"_id": {"$in": &ids}, CLAIM_TOKEN_FIELD: token},
                    doc! {
                        "$pull": {"pending_events": {"id": {"$in": &published}}},
                        "$unset": {CLAIM_FIELD: "", CLAIM_TOKEN_FIELD: ""},
                    },
                )
                .await
                .context("removing published events")?;
            if failed > 0 {
                anyhow::bail!("{failed} of {} events were not delivered", events.len());
            }
            self.documents
                .update_many(
                    doc! {
                        "_id": {"$in": &ids},
                        PENDING_FLAG: {"$ne": false},
                        "pending_events.0": {"$exists": false},
                    },
                    doc! {"$set": {PENDING_FLAG: false}},
                )
                .await
                .context("clearing the outbox flag")?;
        }
        Ok(documents.len())
    }

    /// Claims one document whether or not its flag is up (the start-up pass over documents
    /// written before the flag), publishes its pending events, removes those the broker
    /// acknowledged, and lowers the flag if nothing is left; `false` if another relay holds
    /// the document: nothing done.
    async fn publish_document(&self, id: bson::Bson) -> anyhow::Result<bool> {
        let (now, until) = claim_window();
        let claim = doc! {"_id": &id, "$or": unclaimed(now)};
        let Some(document) = self
            .documents
            .find_one_and_update(claim, doc! {"$set": {CLAIM_FIELD: until}})
            .projection(doc! {"pending_events": 1})
            .return_document(ReturnDocument::After)
            .await
            .context("claiming a document's pending events")?
        else {
            // Claimed by another relay, or gone.
            return Ok(false);
        };
        let pending = pending_events(&document)?;
        let published = self.publish_acknowledged(&pending).await;
        let failed = pending.len() - published.len();
        if failed == 0 && !published.is_empty() {
            // The array holds exactly what was published (as many events, all of them among
            // the published ids): empty it, lower the flag and drop the claim in one update.
            let cleared = self
                .documents
                .update_one(
                    doc! {
                        "_id": &id,
                        "pending_events": {"$size": published.len() as i64},
                        "pending_events.id": {"$all": &published},
                    },
                    doc! {
                        "$set": {"pending_events": [], PENDING_FLAG: false},
                        "$unset": {CLAIM_FIELD: ""},
                    },
                )
                .await
                .context("removing published events")?;
            if cleared.matched_count == 1 {
                return Ok(true);
            }
        }
        // Exactly the acknowledged events, by id (events appended meanwhile stay), and the
        // claim goes with them, in one update.
        self.documents
            .update_one(
                doc! {"_id": &id},
                doc! {
                    "$pull": {"pending_events": {"id": {"$in": &published}}},
                    "$unset": {CLAIM_FIELD: ""},
                },
            )
            .await
            .context("removing published events")?;
        if failed > 0 {
            anyhow::bail!("{failed} of {} events were not delivered", pending.len());
        }
        self.lower_flag(&id).await?;
        Ok(true)
    }

    /// Clears [`PENDING_FLAG`] if the document holds no pending event. The filter, not this
    /// relay's reading, decides: an event appended since the read keeps the flag up.
    async fn lower_flag(&self, id: &bson::Bson) -> anyhow::Result<()> {
        self.documents
            .update_one(
                doc! {
                    "_id": id,
                    PENDING_FLAG: {"$ne": false},
                    "pending_events.0": {"$exists": false},
                },
                doc! {"$set": {PENDING_FLAG: false}},
            )
            .await
            .context("clearing the outbox flag")?;
        Ok(())
    }

    /// Publishes `events` in the order given and returns the ids that may leave their
    /// documents: those the broker acknowledged with every earlier event of their key
    /// acknowledged too. An event acknowledged after one of its key failed stays, to go out
    /// again behind it (a duplicate the consumers drop), so no event is ever only on the
    /// partition ahead of an earlier one of its key.
    async fn publish_acknowledged<'a>(&self, events: &'a [PendingEvent]) -> Vec<&'a str> {
        let delivered = self.publish(events).await;
        let published = acknowledged_in_order(events, &delivered);
        metrics::counter!("outbox_published_total", &self.labels())
            .increment(published.len() as u64);
        published
    }

    /// Publishes the document's events in array order (they share a key, hence a partition);
    /// returns which were acknowledged.
    async fn publish(&self, pending: &[PendingEvent]) -> Vec<bool> {
        let traces: Vec<HashMap<String, String>> = pending
            .iter()
            .map(|event| serde_json::from_str(&event.headers).unwrap_or_default())
            .collect();
        let records: Vec<OutgoingRecord<'_>> = pending
            .iter()
            .zip(&traces)
            .map(|(event, trace)| OutgoingRecord {
                topic: &event.topic,
                key: &event.key,
                payload: event.payload.as_bytes(),
                trace,
            })
            .collect();
        publish_in_order(&self.producer, &records)
            .await
            .iter()
            .map(Result::is_ok)
            .collect()
    }
}

/// Documents claimed by one batched round of [`OutboxRelay::claim`], with their pending
/// events, in the order their ids were given.
#[derive(Debug)]
pub struct ClaimedBatch {
    token: bson::oid::ObjectId,
    documents: Vec<(bson::Bson, Vec<PendingEvent>)>,
}

impl ClaimedBatch {
    /// How many documents the round won.
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }
}

/// The ids of `events` (published in this order, `delivered` saying which the broker
/// acknowledged) that were acknowledged with every earlier event of the same key.
fn acknowledged_in_order<'a>(events: &'a [PendingEvent], delivered: &[bool]) -> Vec<&'a str> {
    let mut failed_keys: Vec<&str> = Vec::new();
    let mut published = Vec::with_capacity(events.len());
    for (event, delivered) in events.iter().zip(delivered) {
        if !delivered {
            failed_keys.push(&event.key);
        } else if !failed_keys.contains(&event.key.as_str()) {
            published.push(event.id.as_str());
        }
    }
    published
}

/// Splits one document's claimed events (in array order) into those to publish and the ids
/// of those a later event of the document replaces: every [`PendingEvent::replaceable`] event
/// but the last. The last event is always published, so the document's latest state leaves.
fn split_replaced(events: &[PendingEvent]) -> (Vec<&PendingEvent>, Vec<&str>) {
    let last = events.len().saturating_sub(1);
    let mut publish = Vec::with_capacity(events.len());
    let mut replaced = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if event.replaceable && index < last {
            replaced.push(event.id.as_str());
        } else {
            publish.push(event);
        }
    }
    (publish, replaced)
}

/// The `pending_events` of a document read by the relay.
fn pending_events(document: &Document) -> anyhow::Result<Vec<PendingEvent>> {
    match document.get_array("pending_events") {
        Ok(items) => items
            .iter()
            .map(|item| bson::from_bson(item.clone()))
            .collect::<Result<_, _>>()
            .context("decoding pending events"),
        Err(_) => Ok(Vec::new()),
    }
}

/// How many events wait in `db`, over the given outbox collections (tests and diagnostics).
pub async fn backlog(db: &Database, outboxes: &[Outbox]) -> anyhow::Result<usize> {
    let mut pending = 0;
    for outbox in outboxes {
        let docs: Vec<Document> = db
            .collection::<Document>(outbox.collection)
            .find(doc! {"pending_events.0": {"$exists": true}})
            .projection(doc! {"pending_events": 1})
            .await?
            .try_collect()
            .await?;
        pending += docs
            .iter()
            .map(|d| d.get_array("pending_events").map(Vec::len).unwrap_or(0))
            .sum::<usize>();
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, key: &str) -> PendingEvent {
        PendingEvent {
            id: id.to_owned(),
            topic: "t".to_owned(),
            key: key.to_owned(),
            payload: String::new(),
            headers: String::new(),
            replaceable: false,
        }
    }

    fn replaceable(id: &str) -> PendingEvent {
        event(id, "k").replaced_by_later()
    }

    fn ids<'a>(events: &[&'a PendingEvent]) -> Vec<&'a str> {
        events.iter().map(|event| event.id.as_str()).collect()
    }

    #[test]
    fn replaceable_events_give_way_to_any_later_event_of_their_document() {
        let events = [replaceable("s1"), replaceable("s2"), replaceable("s3")];
        let (publish, replaced) = split_replaced(&events);
        assert_eq!(ids(&publish), ["s3"], "the last always leaves");
        assert_eq!(replaced, ["s1", "s2"]);

        let events = [replaceable("s1"), event("admin", "k"), replaceable("s2")];
        let (publish, replaced) = split_replaced(&events);
        assert_eq!(
            ids(&publish),
            ["admin", "s2"],
            "an event not marked always leaves"
        );
        assert_eq!(replaced, ["s1"]);

        let events = [event("a1", "k"), event("a2", "k")];
        let (publish, replaced) = split_replaced(&events);
        assert_eq!(ids(&publish), ["a1", "a2"]);
        assert!(replaced.is_empty());

        let (publish, replaced) = split_replaced(&[]);
        assert!(publish.is_empty() && replaced.is_empty());
    }

    #[test]
    fn only_a_replaceable_event_stores_the_mark() -> anyhow::Result<()> {
        assert!(!event("a", "k").to_document()?.contains_key("replaceable"));
        let stored = replaceable("s").to_document()?;
        assert_eq!(stored.get_bool("replaceable").ok(), Some(true));
        // Events stored before the mark existed read as not replaceable.
        let mut old = event("o", "k").to_document()?;
        old.remove("replaceable");
        let read: PendingEvent = bson::from_document(old)?;
        assert!(!read.replaceable);
        Ok(())
    }

    #[tokio::test]
    async fn a_held_back_write_wakes_the_relay_for_every_document_named_meanwhile()
    -> anyhow::Result<()> {
        let wake = RelayWake::default();
        let woken = wake.shared.notify.notified();
        wake.written_within("a", Duration::from_millis(20));
        wake.written_within("b", Duration::from_millis(20));
        wake.written_within("a", Duration::from_millis(20));
        tokio::time::timeout(Duration::from_secs(10), woken).await?;
        assert_eq!(wake.take(), [bson::Bson::from("a"), bson::Bson::from("b")]);
        // The wake on its way was taken; the next held-back write arms another.
        let woken = wake.shared.notify.notified();
        wake.written_within("c", Duration::from_millis(20));
        tokio::time::timeout(Duration::from_secs(10), woken).await?;
        assert_eq!(wake.take(), [bson::Bson::from("c")]);
        Ok(())
    }

    #[tokio::test]
    async fn no_hold_back_wakes_the_relay_at_once() -> anyhow::Result<()> {
        let wake = RelayWake::default();
        let woken = wake.shared.notify.notified();
        wake.written_within("a", Duration::ZERO);
        tokio::time::timeout(Duration::from_secs(10), woken).await?;
        assert_eq!(wake.take(), [bson::Bson::from("a")]);
        Ok(())
    }

    #[test]
    fn an_event_acknowledged_behind_a_failed_one_of_its_key_stays() {
        let events = [
            event("a1", "a"),
            event("b1", "b"),
            event("a2", "a"),
            event("b2", "b"),
            event("a3", "a"),
        ];
        let delivered = [true, false, true, true, false];
        assert_eq!(
            acknowledged_in_order(&events, &delivered),
            ["a1", "a2"],
            "b2 waits behind b1; a3 failed itself"
        );
        assert_eq!(
            acknowledged_in_order(&events, &[true; 5]),
            ["a1", "b1", "a2", "b2", "a3"]
        );
    }
}
