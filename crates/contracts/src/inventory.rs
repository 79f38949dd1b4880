//! Events on `inventory.events` (key: order id), published by product-service as it reserves,
//! commits and releases the stock of an order. Each order gets at most one of `reserved` or
//! `reservation_failed`, then at most one of `committed` or `released` (after `reserved`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventData;
use crate::topics::INVENTORY_EVENTS;

/// Units of one product held for (or taken by) an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLine {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// Every line of the order is reserved (`available` -> `reserved`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReserved {
    pub order_id: Uuid,
    /// One line per product (repeated products of the order are summed).
    pub lines: Vec<StockLine>,
}

impl EventData for InventoryReserved {
    const TYPE: &'static str = "inventory.reserved.v1";
    const TOPIC: &'static str = INVENTORY_EVENTS;
}

/// A line that could not be reserved. `available` is 0 for unknown or withdrawn products.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortLine {
    pub product_id: Uuid,
    pub requested: i64,
    pub available: i64,
}

/// At least one line was short; nothing stays reserved for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReservationFailed {
    pub order_id: Uuid,
    pub short_lines: Vec<ShortLine>,
}

impl EventData for InventoryReservationFailed {
    const TYPE: &'static str = "inventory.reservation_failed.v1";
    const TOPIC: &'static str = INVENTORY_EVENTS;
}

/// The order's reservation returned to `available` (it was cancelled or rejected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReleased {
    pub order_id: Uuid,
    pub lines: Vec<StockLine>,
}

impl EventData for InventoryReleased {
    const TYPE: &'static str = "inventory.released.v1";
    const TOPIC: &'static str = INVENTORY_EVENTS;
}

/// The order was paid: its reserved units are sold (`reserved` -> `sold`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryCommitted {
    pub order_id: Uuid,
    pub lines: Vec<StockLine>,
}

impl EventData for InventoryCommitted {
    const TYPE: &'static str = "inventory.committed.v1";
    const TOPIC: &'static str = INVENTORY_EVENTS;
}

/// Units of a refunded order came back and are sellable again (`sold` -> `available`): the
/// `restock` step of the `refund` process, for a refund whose reason says the goods were
/// returned. Once per order (and so per refund request: an order is refunded once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRestocked {
    pub order_id: Uuid,
    /// The approved refund request whose goods came back.
    pub refund_request_id: Uuid,
    pub lines: Vec<StockLine>,
}

impl EventData for InventoryRestocked {
    const TYPE: &'static str = "inventory.restocked.v1";
    const TOPIC: &'static str = INVENTORY_EVENTS;
}
