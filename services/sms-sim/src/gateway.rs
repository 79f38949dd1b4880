//! The simulated gateway's state: accepted messages, requests seen, and the failure rules
//! tests switch on. Pure and synchronous; the HTTP layer holds it behind a mutex.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How the gateway answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Accept everything.
    Ok,
    /// Refuse every request.
    FailAlways,
    /// Refuse the next `count` requests, then accept again.
    FailN,
}

/// A failure rule: the mode, how many failures are left (for `fail_n`) and the HTTP status
/// the refusals carry (5xx: worth retrying; 4xx: the request is wrong for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRule {
    pub mode: FailureMode,
    pub remaining: u32,
    pub status: u16,
}

impl FailureRule {
    /// Whether this request fails, consuming one failure of a `fail_n` rule.
    fn strikes(&mut self) -> bool {
        match self.mode {
            FailureMode::Ok => false,
            FailureMode::FailAlways => true,
            FailureMode::FailN if self.remaining > 0 => {
                self.remaining -= 1;
                true
            }
            FailureMode::FailN => false,
        }
    }
}

/// A message the gateway accepted for delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub id: String,
    pub to: String,
    pub text: String,
    pub client_reference: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// What the gateway did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Accepted),
    /// The `client_reference` was seen before: the earlier message, not sent again.
    Duplicate(Accepted),
    /// Refused by a failure rule, with this HTTP status.
    Refused(u16),
}

/// Messages kept at most; the oldest go first (a long load run must not exhaust memory).
const MAX_MESSAGES: usize = 200_000;

#[derive(Debug, Default)]
pub struct Gateway {
    messages: Vec<Accepted>,
    by_reference: HashMap<String, String>,
    requests: HashMap<String, u64>,
    global: Option<FailureRule>,
    per_recipient: HashMap<String, FailureRule>,
}

impl Gateway {
    /// Handles one send request.
    pub fn submit(&mut self, to: &str, text: &str, client_reference: Option<&str>) -> Outcome {
        *self.requests.entry(to.to_owned()).or_default() += 1;
        // Idempotency first: a retry of a message already accepted gets the original answer,
        // whatever the failure rules say now.
        if let Some(id) = client_reference.and_then(|reference| self.by_reference.get(reference))
            && let Some(existing) = self.messages.iter().rev().find(|m| &m.id == id)
        {
            return Outcome::Duplicate(existing.clone());
        }
        let rule = match self.per_recipient.get_mut(to) {
            Some(rule) => Some(rule),
            None => self.global.as_mut(),
        };
        if let Some(rule) = rule
            && rule.strikes()
        {
            return Outcome::Refused(rule.status);
        }
        let accepted = Accepted {
            id: format!("sms_{}", Uuid::now_v7().simple()),
            to: to.to_owned(),
            text: text.to_owned(),
            client_reference: client_reference.map(str::to_owned),
            received_at: Utc::now(),
        };
        if let Some(reference) = client_reference {
            self.by_reference
                .insert(reference.to_owned(), accepted.id.clone());
        }
        if self.messages.len() >= MAX_MESSAGES {
            let dropped = self.messages.remove(0);
            if let Some(reference) = dropped.client_reference {
                self.by_reference.remove(&reference);
            }
        }
        self.messages.push(accepted.clone());
        Outcome::Accepted(accepted)
    }

    /// Sets the rule for one recipient, or for everyone when `to` is `None`.
    pub fn set_failure(&mut self, to: Option<&str>, rule: FailureRule) {
        match to {
            Some(to) => {
                self.per_recipient.insert(to.to_owned(), rule);
            }
            None => self.global = Some(rule),
        }
    }

    /// Accepted messages, optionally only those to `to`, oldest first.
    pub fn messages(&self, to: Option<&str>) -> Vec<Accepted> {
        self.messages
            .iter()
            .filter(|m| to.is_none_or(|to| m.to == to))
            .cloned()
            .collect()
    }

    /// Requests received (accepted, duplicate or refused) for `to`.
    pub fn requests(&self, to: &str) -> u64 {
        self.requests.get(to).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(mode: FailureMode, remaining: u32) -> FailureRule {
        FailureRule {
            mode,
            remaining,
            status: 503,
        }
    }

    #[test]
    fn the_same_client_reference_is_sent_once() {
        let mut gateway = Gateway::default();
        let first = gateway.submit("+15550000001", "hi", Some("ref-1"));
        let second = gateway.submit("+15550000001", "hi", Some("ref-1"));
        let (Outcome::Accepted(a), Outcome::Duplicate(b)) = (first, second) else {
            panic!("expected accepted then duplicate");
        };
        assert_eq!(a.id, b.id);
        assert_eq!(gateway.messages(Some("+15550000001")).len(), 1);
        assert_eq!(gateway.requests("+15550000001"), 2);
    }

    #[test]
    fn fail_n_refuses_n_requests_then_accepts() {
        let mut gateway = Gateway::default();
        gateway.set_failure(Some("+15550000002"), rule(FailureMode::FailN, 2));
        assert_eq!(
            gateway.submit("+15550000002", "a", None),
            Outcome::Refused(503)
        );
        assert_eq!(
            gateway.submit("+15550000002", "a", None),
            Outcome::Refused(503)
        );
        assert!(matches!(
            gateway.submit("+15550000002", "a", None),
            Outcome::Accepted(_)
        ));
    }

    #[test]
    fn a_recipient_rule_does_not_touch_other_numbers_and_overrides_the_global_one() {
        let mut gateway = Gateway::default();
        gateway.set_failure(Some("+15550000003"), rule(FailureMode::FailAlways, 0));
        assert!(matches!(
            gateway.submit("+15550000004", "a", None),
            Outcome::Accepted(_)
        ));
        assert_eq!(
            gateway.submit("+15550000003", "a", None),
            Outcome::Refused(503)
        );
        gateway.set_failure(None, rule(FailureMode::FailAlways, 0));
        gateway.set_failure(Some("+15550000005"), rule(FailureMode::Ok, 0));
        assert!(matches!(
            gateway.submit("+15550000005", "a", None),
            Outcome::Accepted(_)
        ));
        assert_eq!(
            gateway.submit("+15550000006", "a", None),
            Outcome::Refused(503)
        );
    }
}
