//! Events on `user.events` (key: user id). Consumers build contact replicas from them, so each
//! carries the contact fields current at the time of the change.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventData;
use crate::topics::USER_EVENTS;

/// A new account exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// BCP 47 language tag the user prefers for messages, e.g. `en` or `zh-CN`.
    pub locale: String,
    pub role: String,
}

impl EventData for UserRegistered {
    const TYPE: &'static str = "user.registered.v1";
    const TOPIC: &'static str = USER_EVENTS;
}

/// A successful password login (refreshes are not logins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserLoggedIn {
    pub user_id: Uuid,
}

impl EventData for UserLoggedIn {
    const TYPE: &'static str = "user.logged_in.v1";
    const TOPIC: &'static str = USER_EVENTS;
}

/// The profile changed; carries the full contact snapshot after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdated {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub locale: String,
}

impl EventData for UserUpdated {
    const TYPE: &'static str = "user.updated.v1";
    const TOPIC: &'static str = USER_EVENTS;
}
