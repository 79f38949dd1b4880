//! The order replica: what payment-service knows of each order from `order.events`.
//!
//! One document per order, `_id` = order id: `{user_id, total: {amount, currency}, status,
//! events: [recent event ids], updated_at}`. Only the `order.events` consumer writes here,
//! and Kafka hands one order's events (one key, one partition) to one consumer at a time, so
//! writes to one order do not race and need no guard. The event ids in the document are the
//! consumer's idempotency key; statuses also only move forward, so a replayed event is a
//! no-op either way.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context as _;
use contracts::product::Money;
use futures::TryStreamExt as _;
use mongodb::bson::{self, Document, doc};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::order_status::OrderStatus;

pub const COLLECTION: &str = "orders";
/// How many recent event ids a document keeps for deduplication.
const EVENTS_KEPT: i32 = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: Option<String>,
    pub total: Option<Money>,
    pub status: String,
    #[serde(default)]
    pub events: Vec<String>,
}

impl OrderDoc {
    pub fn status(&self) -> Option<OrderStatus> {
        OrderStatus::parse(&self.status)
    }

    pub fn owner(&self) -> Option<Uuid> {
        self.user_id
            .as_deref()
            .and_then(|id| Uuid::parse_str(id).ok())
    }
}

/// What an order event tells the replica.
#[derive(Debug, Clone)]
pub struct OrderFacts {
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    /// Only `order.created` carries the total.
    pub total: Option<Money>,
}

/// Whether `kept` is further along than `written`: its status is one `written`'s does not
/// advance (statuses only move forward, see [`OrderStatus::advance`]).
fn further_along(kept: &OrderDoc, written: &OrderDoc) -> bool {
    match (kept.status(), written.status()) {
        (Some(kept), Some(written)) => {
            kept != written && OrderStatus::advance(Some(kept), written) == kept
        }
        _ => false,
    }
}

#[derive(Debug, Clone)]
pub struct Orders {
    collection: Collection<OrderDoc>,
    /// The orders whose event this process's consumer has just applied, as that write left
    /// them, for the payment requests waiting on the replica (see [`Orders::applied`]).
    applied: broadcast::Sender<Arc<OrderDoc>>,
    /// The orders this process's consumer applied lately, as their writes left them (see
    /// [`Orders::applied_here`]).
    recent: moka::sync::Cache<Uuid, Arc<OrderDoc>>,
}

/// The orders applied since [`Orders::applied`] was called.
#[derive(Debug)]
pub struct AppliedOrders(broadcast::Receiver<Arc<OrderDoc>>);

impl AppliedOrders {
    /// Returns when an event of `order_id` is applied in this process, with the order as that
    /// write left it; `None` when announcements were missed (read the order again) or after
    /// `pause`, whichever comes first.
    pub async fn wait_for(
        &mut self,
        order_id: Uuid,
        pause: std::time::Duration,
    ) -> Option<Arc<OrderDoc>> {
        let id = order_id.to_string();
        let announced = async {
            loop {
                match self.0.recv().await {
                    Ok(order) if order.id == id => return Some(order),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return None,
                    // Only when the replica is gone; the pause still ends the wait.
                    Err(broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        tokio::time::timeout(pause, announced).await.ok().flatten()
    }

    /// Whether, among the announcements waiting, `order_id` was announced cancelled:
    /// `Some(false)` when none was, `None` when announcements were missed (the receiver lagged
    /// or the replica is gone), so only a read of the replica can tell. Takes every waiting
    /// announcement.
    pub fn announced_cancelled(&mut self, order_id: Uuid) -> Option<bool> {
        let id = order_id.to_string();
        let mut cancelled = false;
        loop {
            match self.0.try_recv() {
                Ok(order) => {
                    cancelled |= order.id == id && order.status() == Some(OrderStatus::Cancelled);
                }
                Err(broadcast::error::TryRecvError::Empty) => return Some(cancelled),
                Err(
                    broadcast::error::TryRecvError::Lagged(_)
                    | broadcast::error::TryRecvError::Closed,
                ) => return None,
            }
        }
    }

    /// The next announced order, if one is waiting (tests).
    pub fn try_next(&mut self) -> Option<Arc<OrderDoc>> {
        self.0.try_recv().ok()
    }
}

/// Applied order ids kept for a waiter that is slow to look (it then reads the replica again
/// anyway: a lagging receiver only loses the wake-up, never an order).
const APPLIED_BUFFER: usize = 1_024;

/// Orders kept in [`Orders::applied_here`]'s memory: about a minute of orders at 150 a
/// second; a payment comes within seconds of its order's `order.awaiting_payment`.
const RECENT_ORDERS: u64 = 8_192;

/// How long an order applied here is trusted without a read. Only another process's consumer
/// can move an order without this process seeing it (its partition moved in a rebalance), so
/// the copy can be behind only then, and the time bounds how long.
const RECENT_FOR: std::time::Duration = std::time::Duration::from_secs(30);

impl Orders {
    pub fn new(db: &Database) -> Self {
        Self {
            collection: db.collection(COLLECTION),
            applied: broadcast::channel(APPLIED_BUFFER).0,
            recent: moka::sync::Cache::builder()
                .max_capacity(RECENT_ORDERS)
                .time_to_live(RECENT_FOR)
                .build(),
        }
    }

    /// Announces every order whose event this process applies from now on, as the write left
    /// it. A payment request that found the order missing or still reserving subscribes
    /// before it reads, and decides on the announced order instead of sleeping through a
    /// fixed pause: the storefront's stream shows `AWAITING_PAYMENT` before
    /// `order.awaiting_payment` reaches this replica, so nearly every payment used to wait a
    /// whole pause (the payment call's median was 150 ms with a provider that answers at
    /// once), and then read the order again (2.7 reads of the replica per paid order under the
    /// benchmark's checkout; the announced state makes the second read unnecessary).
    pub fn applied(&self) -> AppliedOrders {
        AppliedOrders(self.applied.subscribe())
    }

    /// The order as this process's consumer last wrote it, if it did so lately: what a read of
    /// the replica would return, without the round trip (the order-status check the payment
    /// path makes first; one `find` per paid order under the benchmark's checkout).
    ///
    /// With one consumer per order (a partition is one consumer's at a time) every write of
    /// the order passes here, so the copy is the replica's state. It can be behind only when
    /// the order's partition moved to another process, for at most [`RECENT_FOR`], and being
    /// behind is safe for every use: a status that can still move (pending, awaiting payment)
    /// is what the payment path decided on a read before as well, when another consumer moved
    /// the order right after the read; a charge that lands on an order cancelled meanwhile is
    /// refunded (the success leaves its refund check up for the reconciler, see
    /// `Refunds::refund_if_order_cancelled`), and a second payment of a paid order meets its
    /// claim. Final statuses never change.
    pub fn applied_here(&self, order_id: Uuid) -> Option<Arc<OrderDoc>> {
        self.recent.get(&order_id)
    }

    /// Keeps `order` as the latest applied here, unless the kept copy is further along (two
    /// writes of one order finishing in the other order, in the moment a rebalance gives its
    /// partition to a second consumer of this process).
    fn keep_recent(&self, order_id: Uuid, order: &Arc<OrderDoc>) {
        self.recent.entry(order_id).and_upsert_with(|kept| {
            match kept.map(|kept| kept.into_value()) {
                Some(kept) if further_along(&kept, order) => kept,
                _ => Arc::clone(order),
            }
        });
    }

    pub async fn get(&self, order_id: Uuid) -> anyhow::Result<Option<OrderDoc>> {
        self.collection
            .find_one(doc! {"_id": order_id.to_string()})
            .await
            .context("reading an order of the replica")
    }

    /// Which of `orders` the replica has cancelled, in one query.
    pub async fn cancelled_among(&self, orders: &[String]) -> anyhow::Result<HashSet<String>> {
        if orders.is_empty() {
            return Ok(HashSet::new());
        }
        let found: Vec<Document> = self
            .collection
            .clone_with_type::<Document>()
            .find(doc! {"_id": {"$in": orders}, "status": OrderStatus::Cancelled.as_str()})
            .projection(doc! {"_id": 1})
            .await
            .context("finding cancelled orders")?
            .try_collect()
            .await
            .context("reading cancelled orders")?;
        Ok(found
            .iter()
            .filter_map(|order| order.get_str("_id").ok().map(str::to_owned))
            .collect())
    }

    /// Applies one event; returns `false` if this event was applied before.
    ///
    /// In the usual order of events one write and no read: `order.created` inserts the
    /// document, and every later event moves the status forward with an update whose filter
    /// states what the move was decided on (the event not applied yet, the status one it
    /// advances). Anything else (a redelivery, an event after a later one, `order.created`
    /// after a later event) matches nothing, and is decided on the document as read, as every
    /// event was before issue 12. Each path is one single-document write, so a crash leaves
    /// the event applied or not, and the redelivery that follows is applied or skipped.
    pub async fn apply(&self, facts: &OrderFacts) -> anyhow::Result<bool> {
        let applied = match self.apply_in_order(facts).await? {
            Some(order) => Some(order),
            None => self.apply_as_read(facts).await?,
        };
        match applied {
            Some(order) => {
                let order = Arc::new(order);
                self.keep_recent(facts.order_id, &order);
                // No receiver (no payment waiting) is the usual case, not an error.
                let _ = self.applied.send(order);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The one-write path of [`Self::apply`]: the order as it left it, or `None` if it did not
    /// apply (the document is not as the usual order of events leaves it). The update returns
    /// the document it wrote (`findAndModify`, still one write), so the announcement carries
    /// the order's total from its `order.created` without a read.
    async fn apply_in_order(&self, facts: &OrderFacts) -> anyhow::Result<Option<OrderDoc>> {
        let id = facts.order_id.to_string();
        let event_id = facts.event_id.to_string();
        let now = bson::DateTime::now();
        if facts.status == OrderStatus::Pending {
            let inserted = OrderDoc {
                id,
                user_id: Some(facts.user_id.to_string()),
                total: facts.total.clone(),
                status: OrderStatus::Pending.as_str().to_owned(),
                events: vec![event_id],
            };
            let mut order = bson::to_document(&inserted).context("encoding the order")?;
            order.insert("updated_at", now);
            return match self.raw_collection().insert_one(order).await {
                Ok(_) => Ok(Some(inserted)),
                Err(error) if super::is_duplicate_key(&error) => Ok(None),
                Err(error) => {
                    Err(anyhow::Error::new(error).context("inserting into the order replica"))
                }
            };
        }
        let forward: Vec<&str> = facts
            .status
            .advances_from()
            .map(OrderStatus::as_str)
            .collect();
        let mut set = doc! {
            "user_id": facts.user_id.to_string(),
            "status": facts.status.as_str(),
            "updated_at": now,
        };
        if let Some(total) = &facts.total {
            set.insert("total", bson::to_bson(total).context("encoding the total")?);
        }
        self.collection
            .find_one_and_update(
                doc! {"_id": &id, "events": {"$ne": &event_id}, "status": {"$in": forward}},
                doc! {
                    "$set": set,
                    "$push": {"events": {"$each": [&event_id], "$slice": -EVENTS_KEPT}},
                },
            )
            .return_document(ReturnDocument::After)
            .await
            .context("updating the order replica")
    }

    fn raw_collection(&self) -> Collection<Document> {
        self.collection.clone_with_type()
    }

    /// [`Self::apply`] decided on the document as read: the order as it left it, or `None` if
    /// the event was applied before.
    async fn apply_as_read(&self, facts: &OrderFacts) -> anyhow::Result<Option<OrderDoc>> {
        let id = facts.order_id.to_string();
        let event_id = facts.event_id.to_string();
        let current = self.get(facts.order_id).await?;
        if current
            .as_ref()
            .is_some_and(|order| order.events.contains(&event_id))
        {
            return Ok(None);
        }
        let status =
            OrderStatus::advance(current.as_ref().and_then(OrderDoc::status), facts.status);
        let mut set = doc! {
            "user_id": facts.user_id.to_string(),
            "status": status.as_str(),
            "updated_at": bson::DateTime::now(),
        };
        if let Some(total) = &facts.total {
            set.insert("total", bson::to_bson(total).context("encoding the total")?);
        } else if current.as_ref().is_none_or(|order| order.total.is_none()) {
            set.insert("total", bson::Bson::Null);
        }
        let order = self
            .collection
            .find_one_and_update(
                doc! {"_id": &id},
                doc! {
                    "$set": set,
                    "$push": {"events": {"$each": [event_id], "$slice": -EVENTS_KEPT}},
                },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .context("updating the order replica")?
            .context("the order replica's upsert returned no document")?;
        Ok(Some(order))
    }

    /// The raw documents (tests).
    pub fn raw(db: &Database) -> Collection<Document> {
        db.collection(COLLECTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus) -> OrderDoc {
        OrderDoc {
            id: "o".into(),
            user_id: None,
            total: None,
            status: status.as_str().into(),
            events: Vec::new(),
        }
    }

    #[test]
    fn a_kept_copy_is_further_along_only_when_the_written_status_would_not_advance_it() {
        use OrderStatus::*;
        for kept in OrderStatus::ALL {
            for written in OrderStatus::ALL {
                let expected = kept != written && OrderStatus::advance(Some(kept), written) == kept;
                assert_eq!(
                    further_along(&order(kept), &order(written)),
                    expected,
                    "{kept:?} kept, {written:?} written"
                );
            }
        }
        assert!(further_along(&order(Cancelled), &order(AwaitingPayment)));
        assert!(!further_along(&order(Pending), &order(AwaitingPayment)));
        assert!(!further_along(&order(Paid), &order(Paid)));
    }

    #[tokio::test]
    async fn the_copy_applied_here_never_goes_back_to_an_earlier_status() -> anyhow::Result<()> {
        // No command is sent: the client connects only when used.
        let client = mongodb::Client::with_uri_str("mongodb://127.0.0.1:1").await?;
        let orders = Orders::new(&client.database("unused"));
        let id = Uuid::now_v7();
        assert!(orders.applied_here(id).is_none());
        orders.keep_recent(id, &Arc::new(order(OrderStatus::AwaitingPayment)));
        orders.keep_recent(id, &Arc::new(order(OrderStatus::Cancelled)));
        // A write of the earlier status that finished last.
        orders.keep_recent(id, &Arc::new(order(OrderStatus::AwaitingPayment)));
        let kept = orders.applied_here(id).and_then(|order| order.status());
        assert_eq!(kept, Some(OrderStatus::Cancelled));
        Ok(())
    }
}
