//! Events on `payment.events` (key: order id), published by payment-service after each charge
//! attempt against the payment provider. order-service marks the order `PAID` on
//! `payment.succeeded` (or asks for a refund when the order was already cancelled);
//! notification-service tells the customer. Card data never appears beyond brand and last four
//! digits.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventData;
use crate::product::Money;
use crate::topics::PAYMENT_EVENTS;

/// The provider charged the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSucceeded {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount: Money,
    /// The provider's id of the charge.
    pub provider_reference: String,
    pub card_brand: String,
    pub card_last4: String,
}

impl EventData for PaymentSucceeded {
    const TYPE: &'static str = "payment.succeeded.v1";
    const TOPIC: &'static str = PAYMENT_EVENTS;
}

/// The provider refused the charge (declined, insufficient funds) or could not be reached
/// after the safe retries. The order stays awaiting payment; the customer may retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount: Money,
    /// Machine-readable: `card_declined`, `insufficient_funds`, `provider_unavailable`, ...
    pub reason: String,
}

impl EventData for PaymentFailed {
    const TYPE: &'static str = "payment.failed.v1";
    const TOPIC: &'static str = PAYMENT_EVENTS;
}

/// A succeeded charge was refunded, e.g. because the order had been cancelled
/// (`order_cancelled`) before the payment went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount: Money,
    pub provider_reference: String,
    pub reason: String,
}

impl EventData for PaymentRefunded {
    const TYPE: &'static str = "payment.refunded.v1";
    const TOPIC: &'static str = PAYMENT_EVENTS;
}
