//! Events on `order.events` (key: order id), published by order-service. product-service
//! reserves stock on `order.created`, commits it on `order.paid` and releases it on
//! `order.cancelled` / `order.rejected`; notification-service tells the customer.
//!
//! Each event names its order; only `order.created` carries the lines, priced by order-service
//! from its product replica (never from the client).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventData;
use crate::product::Money;
use crate::topics::ORDER_EVENTS;

/// One line of an order: a product, how many units, and the unit price charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub product_id: Uuid,
    /// The product's name when the order was placed (for messages to the customer).
    #[serde(default)]
    pub name: String,
    /// Units ordered; at least 1.
    pub quantity: i64,
    pub unit_price: Money,
}

/// A customer placed an order (status `PENDING`); its stock is not reserved yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub items: Vec<OrderItem>,
    /// Sum of `quantity * unit_price` over the items, in their one currency.
    pub total: Money,
}

impl EventData for OrderCreated {
    const TYPE: &'static str = "order.created.v1";
    const TOPIC: &'static str = ORDER_EVENTS;
}

/// The stock is reserved; the order waits for its payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAwaitingPayment {
    pub order_id: Uuid,
    /// The order's owner (so consumers such as notification-service need no lookup).
    pub user_id: Uuid,
}

impl EventData for OrderAwaitingPayment {
    const TYPE: &'static str = "order.awaiting_payment.v1";
    const TOPIC: &'static str = ORDER_EVENTS;
}

/// The order's stock is reserved, but the risk check (`order-risk.dmn`) sent it to an admin:
/// it waits in `REVIEW` (the `order-review` process on the workflow engine) until it is
/// approved (then `order.awaiting_payment`) or rejected (`order.rejected`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInReview {
    pub order_id: Uuid,
    /// The order's owner.
    pub user_id: Uuid,
    /// The rule that fired, e.g. `large_amount`, `new_account`, `order_velocity`,
    /// `shipping_country`, or `risk_check_unavailable`.
    pub reason: String,
}

impl EventData for OrderInReview {
    const TYPE: &'static str = "order.in_review.v1";
    const TOPIC: &'static str = ORDER_EVENTS;
}

/// The order is paid; its reserved stock is sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaid {
    pub order_id: Uuid,
    /// The order's owner.
    pub user_id: Uuid,
    /// The amount charged.
    pub total: Money,
    /// The payment that paid it (payment-service's id).
    pub payment_id: Uuid,
}

impl EventData for OrderPaid {
    const TYPE: &'static str = "order.paid.v1";
    const TOPIC: &'static str = ORDER_EVENTS;
}

/// The order was cancelled before payment (by its owner, or `payment_timeout`); reserved
/// stock returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    /// The order's owner (so consumers such as notification-service need no lookup).
    pub user_id: Uuid,
    /// Machine-readable, e.g. `payment_timeout` or `customer_request`.
    pub reason: String,
}

impl EventData for OrderCancelled {
    const TYPE: &'static str = "order.cancelled.v1";
    const TOPIC: &'static str = ORDER_EVENTS;
}

/// The order was refused: `out_of_stock` after `inventory.reservation_failed`, or after a
/// risk review `review_rejected` (an admin said no) or `review_timeout` (nobody decided in
/// time). Its reserved stock returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub order_id: Uuid,
    /// The order's owner (so consumers such as notification-service need no lookup).
    pub user_id: Uuid,
    pub reason: String,
}

impl EventData for OrderRejected {
    const TYPE: &'static str = "order.rejected.v1";
    const TOPIC: &'static str = ORDER_EVENTS;
}

/// A paid order's money went back to the customer through an approved refund request (the
/// `refund` process on the workflow engine); the order is `REFUNDED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefunded {
    pub order_id: Uuid,
    /// The order's owner (so consumers such as notification-service need no lookup).
    pub user_id: Uuid,
    /// The refund request that was approved.
    pub refund_request_id: Uuid,
    /// What went back: the whole charge.
    pub amount: Money,
    /// The customer's reason, e.g. `damaged` or `changed_mind`.
    pub reason: String,
}

impl EventData for OrderRefunded {
    const TYPE: &'static str = "order.refunded.v1";
    const TOPIC: &'static str = ORDER_EVENTS;
}

/// A refund request was rejected by an admin; the order stays `PAID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefundRejected {
    pub order_id: Uuid,
    /// The order's owner (so consumers such as notification-service need no lookup).
    pub user_id: Uuid,
    pub refund_request_id: Uuid,
    /// The customer's reason of the request.
    pub reason: String,
    /// The admin's words to the customer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl EventData for OrderRefundRejected {
    const TYPE: &'static str = "order.refund_rejected.v1";
    const TOPIC: &'static str = ORDER_EVENTS;
}
