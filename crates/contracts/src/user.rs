//! Events on `user.events` (key: user id). Consumers build contact replicas from them, so each
//! carries the contact fields current at the time of the change.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventData;
use crate::topics::USER_EVENTS;

/// How a person proved who they are when an account was created or a session began.
///
/// Added after the first events were published: an event without it was a password
/// registration or login, so that is the default when reading. A method this version does not
/// know (a provider added later) reads as [`SignInMethod::Other`] instead of failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignInMethod {
    /// E-mail and password.
    #[default]
    Password,
    /// "Sign in with Google" (OpenID Connect).
    Google,
    /// A method newer than this definition; never written.
    #[serde(other)]
    Other,
}

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
    /// How the account was created: `password` (registration, the seeded admin) or `google`
    /// (first sign-in with Google; the account then has no password).
    #[serde(default)]
    pub method: SignInMethod,
}

impl EventData for UserRegistered {
    const TYPE: &'static str = "user.registered.v1";
    const TOPIC: &'static str = USER_EVENTS;
}

/// A successful sign-in, with a password or with Google (refreshes are not logins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserLoggedIn {
    pub user_id: Uuid,
    #[serde(default)]
    pub method: SignInMethod,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_without_a_method_read_as_password_and_unknown_methods_as_other()
    -> serde_json::Result<()> {
        let old: UserLoggedIn =
            serde_json::from_str(r#"{"user_id":"0193a4b2-7c1d-7f00-8e2b-5b1f0a9d3c42"}"#)?;
        assert_eq!(old.method, SignInMethod::Password);
        let newer: UserLoggedIn = serde_json::from_str(
            r#"{"user_id":"0193a4b2-7c1d-7f00-8e2b-5b1f0a9d3c42","method":"passkey"}"#,
        )?;
        assert_eq!(newer.method, SignInMethod::Other);
        let google = UserLoggedIn {
            user_id: old.user_id,
            method: SignInMethod::Google,
        };
        assert_eq!(serde_json::to_value(&google)?["method"], "google");
        Ok(())
    }
}
