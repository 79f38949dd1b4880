//! The order as this service's replica knows it, and whether it can be paid.
//!
//! The replica follows `order.events`. Statuses only move forward (`pending` ->
//! `awaiting_payment` -> one of the final ones), so applying an event twice, or an older event
//! after a newer one, changes nothing.

/// An order's status in the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Created; its stock is being reserved.
    Pending,
    AwaitingPayment,
    Paid,
    Cancelled,
    Rejected,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingPayment => "awaiting_payment",
            Self::Paid => "paid",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "pending" => Self::Pending,
            "awaiting_payment" => Self::AwaitingPayment,
            "paid" => Self::Paid,
            "cancelled" => Self::Cancelled,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }

    fn rank(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::AwaitingPayment => 1,
            Self::Paid | Self::Cancelled | Self::Rejected => 2,
        }
    }

    /// Every status, in order of rank.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::AwaitingPayment,
        Self::Paid,
        Self::Cancelled,
        Self::Rejected,
    ];

    /// The statuses an event announcing `self` moves forward (those [`Self::advance`] leaves
    /// for `self`).
    pub fn advances_from(self) -> impl Iterator<Item = Self> {
        Self::ALL
            .into_iter()
            .filter(move |current| current.rank() < self.rank())
    }

    /// The status after an event announcing `next`: forward moves only; a final status stays.
    pub fn advance(current: Option<Self>, next: Self) -> Self {
        match current {
            Some(current) if current.rank() >= next.rank() => current,
            _ => next,
        }
    }
}

/// Why an order cannot be paid now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, or another user's order (the same answer, so ids cannot be probed).
    NotFound,
    /// Known, but not awaiting payment.
    NotPayable(String),
}

/// Whether `user` may pay the order now.
pub fn payable(owner: uuid::Uuid, status: OrderStatus, user: uuid::Uuid) -> Result<(), Refusal> {
    if owner != user {
        return Err(Refusal::NotFound);
    }
    match status {
        OrderStatus::AwaitingPayment => Ok(()),
        OrderStatus::Pending => Err(Refusal::NotPayable(
            "order not yet ready for payment: its stock is being reserved; retry shortly".into(),
        )),
        other => Err(Refusal::NotPayable(format!(
            "the order is {} and cannot be paid",
            other.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn an_event_moves_forward_exactly_the_statuses_advance_replaces() {
        for next in OrderStatus::ALL {
            for current in OrderStatus::ALL {
                assert_eq!(
                    next.advances_from().any(|status| status == current),
                    OrderStatus::advance(Some(current), next) == next && current != next,
                    "{current:?} then {next:?}"
                );
            }
        }
    }

    #[test]
    fn statuses_only_move_forward() {
        use OrderStatus::*;
        assert_eq!(OrderStatus::advance(None, AwaitingPayment), AwaitingPayment);
        assert_eq!(
            OrderStatus::advance(Some(Pending), AwaitingPayment),
            AwaitingPayment
        );
        assert_eq!(
            OrderStatus::advance(Some(AwaitingPayment), Pending),
            AwaitingPayment
        );
        assert_eq!(OrderStatus::advance(Some(Cancelled), Paid), Cancelled);
        assert_eq!(
            OrderStatus::advance(Some(AwaitingPayment), Cancelled),
            Cancelled
        );
        for status in [Pending, AwaitingPayment, Paid, Cancelled, Rejected] {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn only_the_owner_pays_and_only_when_awaiting_payment() {
        let (owner, other) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(payable(owner, OrderStatus::AwaitingPayment, owner), Ok(()));
        assert_eq!(
            payable(owner, OrderStatus::AwaitingPayment, other),
            Err(Refusal::NotFound)
        );
        assert!(matches!(
            payable(owner, OrderStatus::Paid, owner),
            Err(Refusal::NotPayable(reason)) if reason.contains("paid")
        ));
        assert!(matches!(
            payable(owner, OrderStatus::Pending, owner),
            Err(Refusal::NotPayable(reason)) if reason.contains("not yet ready")
        ));
    }
}
