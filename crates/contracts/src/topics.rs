//! Logical topic names. Deployments (and tests) may prefix them; see [`Topic::qualified`].

/// `user.events`, keyed by user id.
pub const USER_EVENTS: &str = "user.events";
/// `product.events`, keyed by product id; compacted, each event a full snapshot.
pub const PRODUCT_EVENTS: &str = "product.events";
/// `inventory.events`, keyed by order id.
pub const INVENTORY_EVENTS: &str = "inventory.events";
/// `order.events`, keyed by order id.
pub const ORDER_EVENTS: &str = "order.events";
/// `payment.events`, keyed by order id.
pub const PAYMENT_EVENTS: &str = "payment.events";

/// The dead-letter topic for records of `topic` that could not be processed.
pub fn dead_letter(topic: &str) -> String {
    format!("{topic}.dlt")
}

/// A deployment's view of topic names: a prefix lets several isolated stacks (or tests) share
/// one broker without seeing each other's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topic {
    prefix: String,
}

impl Topic {
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The physical name of a logical topic.
    pub fn qualified(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_prepended_and_dead_letter_topics_are_suffixed() {
        let topics = Topic::with_prefix("t-123.");
        assert_eq!(topics.qualified(USER_EVENTS), "t-123.user.events");
        assert_eq!(
            dead_letter(&topics.qualified(ORDER_EVENTS)),
            "t-123.order.events.dlt"
        );
        assert_eq!(Topic::default().qualified(USER_EVENTS), "user.events");
    }
}
