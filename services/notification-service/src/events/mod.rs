//! The consuming side: events in, contacts and queued messages out, in one transaction per
//! record.

pub mod handler;

use contracts::topics::{ORDER_EVENTS, PAYMENT_EVENTS, Topic, USER_EVENTS};
use messaging::ConsumerSettings;

/// `processed_events.consumer` for everything this service handles (event ids are unique
/// across topics).
pub const CONSUMER: &str = "notification-service";

/// The contacts consumer (`user.events`): the replica, and the welcome mail. A group of its
/// own, so contacts keep arriving while the order and payment consumer is busy.
pub fn contacts_settings(topics: &Topic, max_attempts: u32) -> ConsumerSettings {
    let mut settings = ConsumerSettings::new(
        topics.qualified("notification-service.contacts"),
        vec![topics.qualified(USER_EVENTS)],
    );
    settings.max_attempts = max_attempts;
    settings
}

/// The notices consumer (`order.events`, `payment.events`).
pub fn notices_settings(topics: &Topic, max_attempts: u32) -> ConsumerSettings {
    let mut settings = ConsumerSettings::new(
        topics.qualified("notification-service.notices"),
        vec![
            topics.qualified(ORDER_EVENTS),
            topics.qualified(PAYMENT_EVENTS),
        ],
    );
    settings.max_attempts = max_attempts;
    settings
}
