//! The per-customer limit of open (unpaid) orders.
//!
//! An order holds its stock from the reservation until it is paid, cancelled or expires, so an
//! account that places orders and never pays them could hoard a product's whole stock for the
//! payment timeout, over and over (OWASP API6, sensitive business flows). A customer may
//! therefore hold at most `max` orders that are still `PENDING` or `AWAITING_PAYMENT`; paying,
//! cancelling or letting one expire frees its place. The count and the insert happen in one
//! transaction under a per-customer advisory lock (see `store::orders::count_open`), so
//! concurrent requests of one customer cannot pass the limit together.

use crate::domain::status::OrderStatus;

/// The statuses that hold stock without having been paid.
pub const OPEN: [OrderStatus; 2] = [OrderStatus::Pending, OrderStatus::AwaitingPayment];

/// The default limit (`ORDER_MAX_OPEN_PER_USER`): enough for a customer who places a second
/// order while paying the first, far below what would hoard a catalog.
pub const DEFAULT_MAX_OPEN: u32 = 5;

/// How many open orders one customer may hold; 0 switches the limit off (benchmarks, which
/// place thousands of orders from a few accounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOrderLimit {
    pub max: u32,
}

/// Why a new order was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyOpen {
    pub open: i64,
    pub max: u32,
}

impl OpenOrderLimit {
    /// Whether the limit applies at all: off (0), placing neither counts nor locks.
    pub fn is_on(self) -> bool {
        self.max != 0
    }

    /// Whether a customer who holds `open` open orders may place another.
    pub fn admit(self, open: i64) -> Result<(), TooManyOpen> {
        if self.max == 0 || open < i64::from(self.max) {
            Ok(())
        } else {
            Err(TooManyOpen {
                open,
                max: self.max,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_admits_up_to_max_open_orders() {
        let limit = OpenOrderLimit { max: 5 };
        assert_eq!(limit.admit(0), Ok(()));
        assert_eq!(limit.admit(4), Ok(()));
        assert_eq!(limit.admit(5), Err(TooManyOpen { open: 5, max: 5 }));
        assert_eq!(limit.admit(9), Err(TooManyOpen { open: 9, max: 5 }));
    }

    #[test]
    fn zero_switches_the_limit_off() {
        assert_eq!(OpenOrderLimit { max: 0 }.admit(1_000_000), Ok(()));
        assert!(!OpenOrderLimit { max: 0 }.is_on());
        assert!(OpenOrderLimit { max: 1 }.is_on());
    }

    #[test]
    fn only_unpaid_live_orders_are_open() {
        assert!(OPEN.contains(&OrderStatus::Pending));
        assert!(OPEN.contains(&OrderStatus::AwaitingPayment));
        for status in [
            OrderStatus::Paid,
            OrderStatus::Rejected,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
        ] {
            assert!(!OPEN.contains(&status), "{status:?}");
        }
    }
}
