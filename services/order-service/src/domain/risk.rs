//! The risk check's rules that live outside the decision table: what the table is asked, how
//! its answer is read, and what happens when it cannot be asked.
//!
//! The table itself (`workflow/models/order-risk.dmn`) holds the business rules, so operations
//! can change them in the engine without a release. Two cases are decided here:
//!
//! - The engine is unreachable or slow (the check waits at most `ORDER_RISK_CHECK_TIMEOUT_MS`).
//!   Failing closed (every order to review) would stop all sales during an engine outage and
//!   bury the admins in reviews; failing open for everything would let the most expensive
//!   orders through unreviewed. So the one rule that needs no table is applied: an order at or
//!   above the review amount goes to review (reason `risk_check_unavailable`), every other is
//!   accepted as `unchecked` (recorded on the order and counted in a metric, so the outage's
//!   orders can be found and looked at afterwards).
//! - The table answers something this code does not know (an edited table with a new
//!   outcome): the order is reviewed, never silently accepted.

use chrono::{DateTime, Utc};
use workflow::Variables;

/// The decision every new order is evaluated against.
pub const DECISION_KEY: &str = "order-risk";
/// The reason of a review decided without the table.
pub const UNAVAILABLE: &str = "risk_check_unavailable";

/// The verdict stored on the order (`orders.risk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Risk {
    Accept,
    Review,
    /// The table could not be asked; accepted below the review amount.
    Unchecked,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Accept => "accept",
            Risk::Review => "review",
            Risk::Unchecked => "unchecked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub risk: Risk,
    /// The rule that fired, e.g. `large_amount` or `low_risk`.
    pub reason: String,
}

/// What the table is asked about one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskInputs {
    /// The order's total in minor units.
    pub amount: i64,
    /// `ORDER_REVIEW_AMOUNT`: from this total every order is reviewed.
    pub review_amount: i64,
    pub account_age_days: i32,
    /// The customer's orders in the hour before this one.
    pub orders_last_hour: i32,
    /// ISO 3166 alpha-2.
    pub shipping_country: String,
}

impl RiskInputs {
    pub fn variables(&self) -> Variables {
        Variables::new()
            .long("amount", self.amount)
            .long("reviewAmount", self.review_amount)
            .integer("accountAgeDays", self.account_age_days)
            .integer("ordersLastHour", self.orders_last_hour)
            .string("shippingCountry", self.shipping_country.as_str())
    }
}

/// Whole days since the customer registered. A customer whose registration this service has
/// not seen (the replica lags, or the account predates it) counts as new: the rules that use
/// the age only make a review more likely, never less.
pub fn account_age_days(registered_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> i32 {
    registered_at
        .map(|at| (now - at).num_days().max(0))
        .map_or(0, |days| i32::try_from(days).unwrap_or(i32::MAX))
}

/// The verdict when the table cannot be asked (see the module comment).
pub fn without_engine(amount: i64, review_amount: i64) -> Verdict {
    if amount >= review_amount {
        Verdict {
            risk: Risk::Review,
            reason: UNAVAILABLE.into(),
        }
    } else {
        Verdict {
            risk: Risk::Unchecked,
            reason: UNAVAILABLE.into(),
        }
    }
}

/// Reads the table's answer (`outcome`, `reason`); anything unexpected is a review.
pub fn from_outputs(outcome: Option<&str>, reason: Option<&str>) -> Verdict {
    let reason = reason.filter(|r| !r.is_empty());
    match outcome {
        Some("accept") => Verdict {
            risk: Risk::Accept,
            reason: reason.unwrap_or("low_risk").to_owned(),
        },
        Some("review") => Verdict {
            risk: Risk::Review,
            reason: reason.unwrap_or("review").to_owned(),
        },
        other => Verdict {
            risk: Risk::Review,
            reason: format!("unknown_outcome:{}", other.unwrap_or("none")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_engine_only_orders_at_the_review_amount_wait() {
        assert_eq!(without_engine(10_000, 10_000).risk, Risk::Review);
        assert_eq!(without_engine(10_001, 10_000).risk, Risk::Review);
        let below = without_engine(9_999, 10_000);
        assert_eq!(below.risk, Risk::Unchecked);
        assert_eq!(below.reason, UNAVAILABLE);
    }

    #[test]
    fn the_tables_answer_is_read_and_an_unknown_one_is_reviewed() {
        assert_eq!(
            from_outputs(Some("accept"), Some("low_risk")),
            Verdict {
                risk: Risk::Accept,
                reason: "low_risk".into()
            }
        );
        assert_eq!(
            from_outputs(Some("review"), Some("new_account")),
            Verdict {
                risk: Risk::Review,
                reason: "new_account".into()
            }
        );
        assert_eq!(from_outputs(Some("maybe"), None).risk, Risk::Review);
        assert_eq!(from_outputs(None, Some("x")).risk, Risk::Review);
    }

    #[test]
    fn account_age_counts_whole_days_and_an_unknown_customer_is_new() {
        let now = Utc::now();
        assert_eq!(account_age_days(None, now), 0);
        assert_eq!(
            account_age_days(Some(now - chrono::Duration::hours(47)), now),
            1
        );
        assert_eq!(
            account_age_days(Some(now - chrono::Duration::days(400)), now),
            400
        );
        // A clock skew between services never gives a negative age.
        assert_eq!(
            account_age_days(Some(now + chrono::Duration::hours(1)), now),
            0
        );
    }

    #[test]
    fn the_inputs_carry_the_tables_variable_names() {
        let inputs = RiskInputs {
            amount: 4_200,
            review_amount: 1_000_000,
            account_age_days: 3,
            orders_last_hour: 1,
            shipping_country: "DE".into(),
        };
        let variables = inputs.variables();
        for name in [
            "amount",
            "reviewAmount",
            "accountAgeDays",
            "ordersLastHour",
            "shippingCountry",
        ] {
            assert!(variables.get(name).is_some(), "{name}");
        }
        let table = include_str!("../../../../workflow/models/order-risk.dmn");
        for expression in [
            "amount / reviewAmount",
            ">accountAgeDays<",
            ">ordersLastHour<",
            ">shippingCountry<",
        ] {
            assert!(table.contains(expression), "{expression}");
        }
    }
}
