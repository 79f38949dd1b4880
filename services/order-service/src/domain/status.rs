//! The order state machine.
//!
//! ```text
//! PENDING ──inventory.reserved──▶ AWAITING_PAYMENT ──payment.succeeded──▶ PAID ──refund──▶ REFUNDED
//!    │  │ │                              ▲
//!    │  │ │                              └──────approved──────┐
//!    │  │ └─inventory.reserved, risk verdict review──▶ REVIEW ─┴─rejected / review timeout──▶ REJECTED
//!    │  └─inventory.reservation_failed──▶ REJECTED
//!    └──cancel / expiry──▶ CANCELLED ◀──cancel / expiry (from REVIEW: cancel only)
//! ```
//!
//! An order the risk check (`order-risk.dmn`) classified `review` goes from `PENDING` to
//! `REVIEW` instead of `AWAITING_PAYMENT` once its stock is reserved; the `order-review`
//! process decides it (approved: `AWAITING_PAYMENT`; rejected or not decided in time:
//! `REJECTED`, which releases the stock). Its timeout is the process's timer, not the expiry
//! job's. `PAID`, `REJECTED`, `CANCELLED` and `REFUNDED` end the checkout saga. A paid order moves
//! once more, to `REFUNDED`, when the `refund` process on the workflow engine has paid the
//! money back (the `mark-refunded` task). Every saga message can arrive late, twice
//! or after the order moved on, so [`OrderStatus::apply`] distinguishes three outcomes: a move
//! (write it and emit its event), nothing to do (a message that no longer matters, e.g. a
//! reservation answer for an order the customer already cancelled), and an illegal request
//! (a customer cancelling a paid order: 409).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    /// Stock reserved; waits for an admin's risk review.
    Review,
    AwaitingPayment,
    Paid,
    Rejected,
    Cancelled,
    Refunded,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The owner asked.
    CustomerRequest,
    /// No payment within the configured time after the stock was reserved.
    PaymentTimeout,
    /// product-service never answered the reservation within the configured time.
    ReservationTimeout,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::CustomerRequest => "customer_request",
            CancelReason::PaymentTimeout => "payment_timeout",
            CancelReason::ReservationTimeout => "reservation_timeout",
        }
    }
}

/// Something that happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `inventory.reserved`
    StockReserved,
    /// `inventory.reserved` for an order the risk check sent to review.
    StockReservedForReview,
    /// An admin approved the order in its review.
    ReviewApproved,
    /// An admin rejected the order in its review.
    ReviewRejected,
    /// Nobody reviewed the order in time (the review process's timer).
    ReviewTimedOut,
    /// `inventory.reservation_failed`
    StockShort,
    /// `payment.succeeded`
    PaymentSucceeded,
    /// The owner's `POST /api/orders/{id}/cancel`.
    CustomerCancel,
    /// The expiry job found the order past its deadline.
    Expired,
    /// The refund process paid the money of an approved refund request back.
    RefundCompleted,
}

/// What applying a trigger to an order in some status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Store the new status and publish its event.
    Move {
        to: OrderStatus,
        reason: Option<&'static str>,
    },
    /// A message that arrived after the order moved on; acknowledge it and change nothing.
    Ignore,
    /// A request the order's status forbids (answered 409).
    Illegal,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Review => "REVIEW",
            OrderStatus::AwaitingPayment => "AWAITING_PAYMENT",
            OrderStatus::Paid => "PAID",
            OrderStatus::Rejected => "REJECTED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Refunded => "REFUNDED",
        }
    }

    /// Whether the checkout saga is over for the order (only a refund moves a `PAID` one).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid
                | OrderStatus::Rejected
                | OrderStatus::Cancelled
                | OrderStatus::Refunded
        )
    }

    /// The rules, in one table.
    pub fn apply(self, trigger: Trigger) -> Transition {
        use OrderStatus::*;
        use Trigger::*;
        let move_to = |to, reason| Transition::Move { to, reason };
        match (self, trigger) {
            (Pending, StockReserved) => move_to(AwaitingPayment, None),
            (Pending, StockReservedForReview) => move_to(Review, Some("risk_review")),
            (Pending, StockShort) => move_to(Rejected, Some("out_of_stock")),
            (Pending, CustomerCancel) => {
                move_to(Cancelled, Some(CancelReason::CustomerRequest.as_str()))
            }
            (Pending, Expired) => {
                move_to(Cancelled, Some(CancelReason::ReservationTimeout.as_str()))
            }
            // A payment cannot precede the reservation (payment-service only charges orders
            // awaiting payment); if one ever does, it is left for the refund rule below.
            (Pending, PaymentSucceeded) => Transition::Ignore,
            // The review process starts only once the order is in REVIEW; a decision for a
            // pending order is a bug, retried by the engine until someone looks.
            (Pending, ReviewApproved | ReviewRejected | ReviewTimedOut) => Transition::Illegal,

            (Review, ReviewApproved) => move_to(AwaitingPayment, None),
            (Review, ReviewRejected) => move_to(Rejected, Some("review_rejected")),
            (Review, ReviewTimedOut) => move_to(Rejected, Some("review_timeout")),
            (Review, CustomerCancel) => {
                move_to(Cancelled, Some(CancelReason::CustomerRequest.as_str()))
            }
            // The review's own timer bounds the wait; redelivered reservation answers and a
            // payment (payment-service charges only orders awaiting payment) change nothing.
            (Review, Expired | StockReserved | StockReservedForReview | StockShort) => {
                Transition::Ignore
            }
            (Review, PaymentSucceeded) => Transition::Ignore,
            (Review, RefundCompleted) => Transition::Illegal,
            // The approval's task again, after its first run committed.
            (AwaitingPayment, ReviewApproved) => Transition::Ignore,
            (AwaitingPayment, ReviewRejected | ReviewTimedOut) => Transition::Illegal,

            (AwaitingPayment, PaymentSucceeded) => move_to(Paid, None),
            (AwaitingPayment, CustomerCancel) => {
                move_to(Cancelled, Some(CancelReason::CustomerRequest.as_str()))
            }
            (AwaitingPayment, Expired) => {
                move_to(Cancelled, Some(CancelReason::PaymentTimeout.as_str()))
            }
            // Redelivered reservation answers.
            (AwaitingPayment, StockReserved | StockReservedForReview | StockShort) => {
                Transition::Ignore
            }

            (Paid, RefundCompleted) => move_to(Refunded, Some("refund_approved")),
            // The mark-refunded task again (a retry after its first run committed).
            (Refunded, RefundCompleted) => Transition::Ignore,
            // Refunds are requested for paid orders only (the API checks); the process never
            // reaches this step for another status.
            (Pending | AwaitingPayment | Rejected | Cancelled, RefundCompleted) => {
                Transition::Illegal
            }

            // Only the owner's request is refused: the saga's own late messages are not errors.
            (Paid | Rejected | Cancelled | Refunded, CustomerCancel) => Transition::Illegal,
            // A payment for a cancelled order is refunded by payment-service, which learns of
            // the cancellation from order.events; the order stays cancelled. A review decided
            // after the customer cancelled changes nothing either.
            (Paid | Rejected | Cancelled | Refunded, _) => Transition::Ignore,
        }
    }
}

impl OrderStatus {
    /// Every status.
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Pending,
        OrderStatus::Review,
        OrderStatus::AwaitingPayment,
        OrderStatus::Paid,
        OrderStatus::Rejected,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];
}

/// A move of an order: from which status, to which, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusStep {
    pub from: OrderStatus,
    pub to: OrderStatus,
    pub reason: Option<&'static str>,
}

impl Trigger {
    /// The move this trigger makes if exactly one status moves on it (derived from
    /// [`OrderStatus::apply`], so it cannot disagree with it): the saga can then write the move
    /// guarded by that status in one statement, without reading the order first. `None` for a
    /// trigger that moves orders out of several statuses (a cancel, an expiry).
    pub fn only_move(self) -> Option<StatusStep> {
        let mut moves = OrderStatus::ALL
            .into_iter()
            .filter_map(|from| match from.apply(self) {
                Transition::Move { to, reason } => Some(StatusStep { from, to, reason }),
                Transition::Ignore | Transition::Illegal => None,
            });
        let only = moves.next()?;
        match moves.next() {
            None => Some(only),
            Some(_) => None,
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(match value {
            "PENDING" => OrderStatus::Pending,
            "REVIEW" => OrderStatus::Review,
            "AWAITING_PAYMENT" => OrderStatus::AwaitingPayment,
            "PAID" => OrderStatus::Paid,
            "REJECTED" => OrderStatus::Rejected,
            "CANCELLED" => OrderStatus::Cancelled,
            "REFUNDED" => OrderStatus::Refunded,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::Trigger::*;
    use super::*;

    const ALL: [OrderStatus; 7] = OrderStatus::ALL;
    const TRIGGERS: [Trigger; 10] = [
        StockReserved,
        StockReservedForReview,
        ReviewApproved,
        ReviewRejected,
        ReviewTimedOut,
        StockShort,
        PaymentSucceeded,
        CustomerCancel,
        Expired,
        RefundCompleted,
    ];

    fn moves(to: OrderStatus, reason: Option<&'static str>) -> Transition {
        Transition::Move { to, reason }
    }

    #[test]
    fn the_happy_path_reserves_then_pays() {
        assert_eq!(Pending.apply(StockReserved), moves(AwaitingPayment, None));
        assert_eq!(AwaitingPayment.apply(PaymentSucceeded), moves(Paid, None));
    }

    #[test]
    fn short_stock_rejects_a_pending_order() {
        assert_eq!(
            Pending.apply(StockShort),
            moves(Rejected, Some("out_of_stock"))
        );
    }

    #[test]
    fn the_owner_may_cancel_before_payment_only() {
        let cancelled = moves(Cancelled, Some("customer_request"));
        assert_eq!(Pending.apply(CustomerCancel), cancelled);
        assert_eq!(AwaitingPayment.apply(CustomerCancel), cancelled);
        for terminal in [Paid, Rejected, Cancelled, Refunded] {
            assert_eq!(
                terminal.apply(CustomerCancel),
                Transition::Illegal,
                "{terminal}"
            );
        }
    }

    #[test]
    fn expiry_names_the_step_that_timed_out() {
        assert_eq!(
            AwaitingPayment.apply(Expired),
            moves(Cancelled, Some("payment_timeout"))
        );
        assert_eq!(
            Pending.apply(Expired),
            moves(Cancelled, Some("reservation_timeout"))
        );
    }

    #[test]
    fn terminal_states_never_move_and_late_saga_messages_are_ignored() {
        for terminal in [Paid, Rejected, Cancelled, Refunded] {
            assert!(terminal.is_terminal());
            for trigger in TRIGGERS {
                if (terminal, trigger) == (Paid, RefundCompleted) {
                    continue;
                }
                assert!(
                    !matches!(terminal.apply(trigger), Transition::Move { .. }),
                    "{terminal} moved on {trigger:?}"
                );
            }
        }
        // A payment that lands on a cancelled order is not an error here: payment-service
        // refunds it.
        assert_eq!(Cancelled.apply(PaymentSucceeded), Transition::Ignore);
    }

    #[test]
    fn only_a_paid_order_is_refunded_and_a_repeat_changes_nothing() {
        assert_eq!(
            Paid.apply(RefundCompleted),
            moves(Refunded, Some("refund_approved"))
        );
        assert_eq!(Refunded.apply(RefundCompleted), Transition::Ignore);
        for status in [Pending, AwaitingPayment, Rejected, Cancelled] {
            assert_eq!(
                status.apply(RefundCompleted),
                Transition::Illegal,
                "{status}"
            );
        }
        for trigger in TRIGGERS {
            if let Transition::Move { to, .. } = Refunded.apply(trigger) {
                panic!("REFUNDED moved to {to} on {trigger:?}");
            }
        }
    }

    #[test]
    fn redelivered_reservation_answers_change_nothing() {
        assert_eq!(AwaitingPayment.apply(StockReserved), Transition::Ignore);
        assert_eq!(AwaitingPayment.apply(StockShort), Transition::Ignore);
        assert_eq!(Pending.apply(PaymentSucceeded), Transition::Ignore);
    }

    #[test]
    fn every_move_leads_forward_and_paid_is_reached_only_by_a_payment() {
        for status in ALL {
            for trigger in TRIGGERS {
                if let Transition::Move { to, .. } = status.apply(trigger) {
                    assert_ne!(to, status, "{status} on {trigger:?} is a self-loop");
                    assert!(!status.is_terminal() || (status, to) == (Paid, Refunded));
                    if to == Paid {
                        assert_eq!(trigger, PaymentSucceeded);
                    }
                }
            }
        }
    }

    #[test]
    fn a_risky_order_waits_in_review_with_its_stock_held_until_decided() {
        assert_eq!(
            Pending.apply(StockReservedForReview),
            moves(Review, Some("risk_review"))
        );
        assert!(!Review.is_terminal());
        assert_eq!(Review.apply(ReviewApproved), moves(AwaitingPayment, None));
        assert_eq!(
            Review.apply(ReviewRejected),
            moves(Rejected, Some("review_rejected"))
        );
        assert_eq!(
            Review.apply(ReviewTimedOut),
            moves(Rejected, Some("review_timeout"))
        );
        assert_eq!(
            Review.apply(CustomerCancel),
            moves(Cancelled, Some("customer_request"))
        );
    }

    #[test]
    fn review_decisions_repeated_or_late_change_nothing_and_nothing_else_leaves_review() {
        // The approval's step again after it committed.
        assert_eq!(AwaitingPayment.apply(ReviewApproved), Transition::Ignore);
        // A decision that arrives after the customer cancelled, or after the timer rejected.
        for late in [ReviewApproved, ReviewRejected, ReviewTimedOut] {
            assert_eq!(Cancelled.apply(late), Transition::Ignore);
            assert_eq!(Rejected.apply(late), Transition::Ignore);
            assert_eq!(Pending.apply(late), Transition::Illegal);
        }
        // Only the review's outcomes and the owner move a held order; the expiry job does not
        // (the review's timer bounds the wait), and a payment cannot be taken.
        for trigger in [
            StockReserved,
            StockReservedForReview,
            StockShort,
            PaymentSucceeded,
            Expired,
        ] {
            assert_eq!(Review.apply(trigger), Transition::Ignore, "{trigger:?}");
        }
        assert_eq!(Review.apply(RefundCompleted), Transition::Illegal);
        assert_eq!(
            AwaitingPayment.apply(StockReservedForReview),
            Transition::Ignore
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>().ok(), Some(status));
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::Value::String(status.as_str().into()))
            );
        }
        assert!("paid".parse::<OrderStatus>().is_err());
    }

    #[test]
    fn the_saga_steps_of_a_checkout_each_have_one_move() {
        let only = |trigger: Trigger| trigger.only_move().map(|m| (m.from, m.to, m.reason));
        assert_eq!(only(StockReserved), Some((Pending, AwaitingPayment, None)));
        assert_eq!(
            only(StockShort),
            Some((Pending, Rejected, Some("out_of_stock")))
        );
        assert_eq!(only(PaymentSucceeded), Some((AwaitingPayment, Paid, None)));
        assert_eq!(only(ReviewApproved), Some((Review, AwaitingPayment, None)));
        // Several statuses move on these, each its own way: no guarded shortcut.
        assert_eq!(only(CustomerCancel), None);
        assert_eq!(only(Expired), None);
    }

    #[test]
    fn an_only_move_is_exactly_what_apply_does_from_its_status() {
        for trigger in TRIGGERS {
            if let Some(only) = trigger.only_move() {
                assert_eq!(
                    only.from.apply(trigger),
                    Transition::Move {
                        to: only.to,
                        reason: only.reason
                    }
                );
                for other in ALL.into_iter().filter(|status| *status != only.from) {
                    assert!(
                        !matches!(other.apply(trigger), Transition::Move { .. }),
                        "{other} also moves on {trigger:?}"
                    );
                }
            }
        }
    }
}
