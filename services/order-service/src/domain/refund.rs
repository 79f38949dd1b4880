//! Who may ask for a refund, and when: the pure rules behind
//! `POST /api/orders/{id}/refund-requests`. Only a `PAID` order can be refunded (anything
//! else is a conflict with the order's state, 409), and only within the return window counted
//! from the payment (after it, the request is well-formed but not allowed, 422). Whether a
//! refund is then approved automatically is not decided here but by the engine's decision
//! table (`workflow/models/refund-approval.dmn`), where operations can change it.

use chrono::{DateTime, Duration, Utc};

use crate::domain::status::OrderStatus;

/// The reasons a customer can give (the decision table reads them).
pub const REASONS: &[&str] = &[
    "damaged",
    "not_as_described",
    "wrong_item",
    "not_received",
    "changed_mind",
    "other",
];

/// Why an order cannot be refunded now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not paid (or already refunded): 409.
    NotRefundable(OrderStatus),
    /// Paid longer ago than the return window: 422.
    WindowClosed { paid_at: DateTime<Utc>, days: i64 },
}

/// Whether an order in `status`, paid at `paid_at`, may be refunded at `now` with a return
/// window of `window`.
pub fn eligibility(
    status: OrderStatus,
    paid_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<(), Refusal> {
    if status != OrderStatus::Paid {
        return Err(Refusal::NotRefundable(status));
    }
    // A PAID order without its history row cannot happen (both are written together); treat
    // it as paid now rather than refusing the customer.
    let paid_at = paid_at.unwrap_or(now);
    if now > paid_at + window {
        return Err(Refusal::WindowClosed {
            paid_at,
            days: window.num_days(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days_after_payment: i64) -> (DateTime<Utc>, DateTime<Utc>) {
        let paid = DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap_or_default();
        (paid, paid + Duration::days(days_after_payment))
    }

    #[test]
    fn a_paid_order_is_refundable_within_the_window() {
        let (paid, now) = at(3);
        assert_eq!(
            eligibility(OrderStatus::Paid, Some(paid), now, Duration::days(14)),
            Ok(())
        );
        let (paid, last_moment) = at(14);
        assert_eq!(
            eligibility(
                OrderStatus::Paid,
                Some(paid),
                last_moment,
                Duration::days(14)
            ),
            Ok(())
        );
    }

    #[test]
    fn after_the_window_the_request_is_refused_with_the_dates() {
        let (paid, now) = at(15);
        assert_eq!(
            eligibility(OrderStatus::Paid, Some(paid), now, Duration::days(14)),
            Err(Refusal::WindowClosed {
                paid_at: paid,
                days: 14
            })
        );
        // A zero window closes at once.
        let (paid, now) = at(0);
        let now = now + Duration::seconds(1);
        assert!(eligibility(OrderStatus::Paid, Some(paid), now, Duration::zero()).is_err());
    }

    #[test]
    fn only_paid_orders_are_refundable() {
        let (paid, now) = at(1);
        for status in [
            OrderStatus::Pending,
            OrderStatus::AwaitingPayment,
            OrderStatus::Rejected,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
        ] {
            assert_eq!(
                eligibility(status, Some(paid), now, Duration::days(14)),
                Err(Refusal::NotRefundable(status))
            );
        }
    }
}
