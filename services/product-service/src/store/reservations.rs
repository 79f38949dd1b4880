//! The `reservations` collection: one document per order product-service has seen, holding the
//! order's lines, where its reservation stands, and the `inventory.*` events not yet published
//! (the same single-document outbox as products).
//!
//! Inserting `{_id: order id}` is the idempotency anchor (a unique key), so of two deliveries
//! of one `order.created` exactly one creates the document; the status then says what is left
//! to do. Each status change is one `findOneAndUpdate` guarded by the status it leaves, so of
//! two attempts at one transition exactly one applies it (and stores its event). The relay only
//! removes published events from the document, so it never undoes a status change.

use anyhow::Context as _;
use contracts::inventory::StockLine;
use messaging::mongo::PendingEvent;
use mongodb::bson::{self, doc};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const COLLECTION: &str = "reservations";

/// Where an order's reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Lines are being reserved (or a crash interrupted that; a redelivery resumes it).
    Reserving,
    /// Every line is held; waits for `order.paid` or a cancellation.
    Reserved,
    /// A line was short; nothing is held.
    Failed,
    /// Paid: the units are sold.
    Committed,
    /// Cancelled or rejected after the reservation: the units are back.
    Released,
    /// Paid, then refunded with the goods returned: the sold units are available again.
    Restocked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserving => "reserving",
            Self::Reserved => "reserved",
            Self::Failed => "failed",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Restocked => "restocked",
        }
    }
}

/// One product of an order, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDoc {
    pub product_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReservationDoc {
    /// The order id.
    #[serde(rename = "_id")]
    pub order_id: String,
    pub lines: Vec<LineDoc>,
    pub status: Status,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    #[serde(default)]
    pub pending_events: Vec<PendingEvent>,
    /// Whether `pending_events` holds anything (`messaging::mongo::PENDING_FLAG`).
    #[serde(default)]
    pub outbox_pending: bool,
}

impl ReservationDoc {
    /// The lines as events carry them.
    pub fn stock_lines(&self) -> anyhow::Result<Vec<StockLine>> {
        self.lines
            .iter()
            .map(|line| {
                Ok(StockLine {
                    product_id: Uuid::parse_str(&line.product_id)
                        .with_context(|| format!("stored product id {:?}", line.product_id))?,
                    quantity: line.quantity,
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Reservations {
    collection: Collection<ReservationDoc>,
}

impl Reservations {
    pub fn new(db: &Database) -> Self {
        Self {
            collection: db.collection(COLLECTION),
        }
    }

    pub async fn ensure_indexes(&self) -> anyhow::Result<()> {
        // The relay looks for documents with pending events.
        let index = IndexModel::builder()
            .keys(doc! {messaging::mongo::PENDING_FLAG: 1})
            .build();
        self.collection
            .create_index(index)
            .await
            .context("creating the reservations index")?;
        Ok(())
    }

    /// Creates the order's document in status `reserving`, or returns the one that exists
    /// (a redelivery, or a retry after a crash).
    pub async fn begin(
        &self,
        order_id: &Uuid,
        lines: &[StockLine],
    ) -> anyhow::Result<ReservationDoc> {
        let now = bson::DateTime::now();
        let fresh = ReservationDoc {
            order_id: order_id.to_string(),
            lines: lines
                .iter()
                .map(|line| LineDoc {
                    product_id: line.product_id.to_string(),
                    quantity: line.quantity,
                })
                .collect(),
            status: Status::Reserving,
            created_at: now,
            updated_at: now,
            pending_events: Vec::new(),
            outbox_pending: false,
        };
        match self.collection.insert_one(&fresh).await {
            Ok(_) => Ok(fresh),
            Err(error) if super::is_duplicate_key(&error) => self
                .get(order_id)
                .await?
                .context("the reservation vanished after a duplicate insert"),
            Err(error) => Err(anyhow::Error::new(error).context("inserting a reservation")),
        }
    }

    pub async fn get(&self, order_id: &Uuid) -> anyhow::Result<Option<ReservationDoc>> {
        self.collection
            .find_one(doc! {"_id": order_id.to_string()})
            .await
            .context("reading a reservation")
    }

    /// Moves the order from `from` to `to` and stores `event` with the change; `false` if it
    /// was not in `from` (any more): another attempt made a transition first.
    pub async fn transition(
        &self,
        order_id: &Uuid,
        from: Status,
        to: Status,
        event: &PendingEvent,
    ) -> anyhow::Result<bool> {
        let updated = self
            .collection
            .find_one_and_update(
                doc! {"_id": order_id.to_string(), "status": from.as_str()},
                messaging::mongo::with_pending_event(
                    doc! {"$set": {"status": to.as_str(), "updated_at": bson::DateTime::now()}},
                    event.to_document()?,
                ),
            )
            .return_document(ReturnDocument::After)
            .await
            .context("changing a reservation's status")?;
        Ok(updated.is_some())
    }
}
