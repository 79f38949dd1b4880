//! The admins' reminder of a refund request that waits for their decision (the `refund`
//! process's escalation, `workflow/models/refund.bpmn`): who receives it, under which message
//! id, and with which words.
//!
//! Recipients are every contact whose account is an admin (the role `user.registered` carries)
//! plus the addresses configured in `NOTIFICATION_ADMIN_EMAILS` (a mailbox that is no account,
//! or a deployment whose contacts predate the role), each address once. A recipient's message
//! id is derived from the request and the address, so a task that runs again (a lost
//! completion, a worker killed mid-task) finds its messages stored and queues nothing twice.

use contracts::product::Money;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::locale::Locale;
use super::money;
use super::notice::Contact;

/// The template of the reminder, and its name in an admin's history.
pub const TEMPLATE: &str = "approval_reminder";
/// The role whose contacts are reminded.
pub const ADMIN_ROLE: &str = "admin";

/// Someone the reminder goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The admin's account; for a configured address without one, an id derived from the
    /// address (the message table keys its per-user order and history by it).
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub locale: Locale,
}

/// The request waiting for a decision, as the process describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingRequest {
    pub request_id: Uuid,
    pub order_id: Uuid,
    pub amount: Money,
    /// The customer's reason code (`damaged`, `not_received`, ...).
    pub reason: String,
}

/// Admin contacts first (in their own language), then the configured addresses no admin
/// contact has (in English); addresses compared without case, blanks skipped.
pub fn recipients(admins: &[Contact], configured: &[String]) -> Vec<Recipient> {
    let mut seen = std::collections::HashSet::new();
    let mut recipients = Vec::new();
    for admin in admins {
        let email = admin.email.trim();
        if email.is_empty() || !seen.insert(email.to_lowercase()) {
            continue;
        }
        recipients.push(Recipient {
            user_id: admin.user_id,
            email: email.to_owned(),
            name: admin.name.clone(),
            locale: Locale::from_tag(&admin.locale),
        });
    }
    for address in configured {
        let email = address.trim();
        if email.is_empty() || !seen.insert(email.to_lowercase()) {
            continue;
        }
        recipients.push(Recipient {
            user_id: derived_id("configured-admin", email),
            email: email.to_owned(),
            name: email.to_owned(),
            locale: Locale::En,
        });
    }
    recipients
}

/// The id of `request`'s reminder to `email`: the same for every run of the task.
pub fn message_id(request: Uuid, email: &str) -> Uuid {
    derived_id(&format!("approval-reminder:{request}"), email)
}

fn derived_id(scope: &str, email: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(scope.as_bytes())
        .chain_update(b"\0")
        .chain_update(email.to_lowercase().as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

impl WaitingRequest {
    /// The template variables for `recipient`, localised.
    pub fn context(&self, recipient: &Recipient) -> Value {
        json!({
            "name": recipient.name,
            "order_id": self.order_id,
            "order_ref": self.order_id.simple().to_string()[..8].to_uppercase(),
            "request_id": self.request_id,
            "amount": money::format(&self.amount),
            "reason": recipient.locale.reason(&self.reason),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(email: &str, locale: &str) -> Contact {
        Contact {
            user_id: Uuid::now_v7(),
            email: email.into(),
            name: "Grace".into(),
            phone: None,
            locale: locale.into(),
        }
    }

    #[test]
    fn admins_and_configured_addresses_each_get_one_reminder() {
        let zh = admin("Li@Example.com", "zh-CN");
        let en = admin("ops@example.com", "en");
        let configured = vec![
            "li@example.com".to_owned(),
            " ".to_owned(),
            "refunds@example.com".to_owned(),
            "REFUNDS@example.com".to_owned(),
        ];
        let recipients = recipients(&[zh.clone(), en.clone()], &configured);
        let emails: Vec<&str> = recipients.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(
            emails,
            ["Li@Example.com", "ops@example.com", "refunds@example.com"]
        );
        assert_eq!(recipients[0].locale, Locale::ZhCn);
        assert_eq!(recipients[0].user_id, zh.user_id);
        assert_eq!(recipients[2].locale, Locale::En);
        // A configured address gets the same stand-in id at every start.
        assert_eq!(
            recipients[2].user_id,
            super::recipients(&[], &["Refunds@Example.com".to_owned()])[0].user_id
        );
    }

    #[test]
    fn no_admin_and_nothing_configured_is_nobody() {
        assert!(recipients(&[], &[]).is_empty());
    }

    #[test]
    fn a_reminder_keeps_its_id_per_request_and_address() {
        let request = Uuid::now_v7();
        assert_eq!(
            message_id(request, "a@example.com"),
            message_id(request, "A@example.com")
        );
        assert_ne!(
            message_id(request, "a@example.com"),
            message_id(request, "b@example.com")
        );
        assert_ne!(
            message_id(request, "a@example.com"),
            message_id(Uuid::now_v7(), "a@example.com")
        );
    }

    #[test]
    fn the_context_words_the_reason_in_the_admins_language() {
        let waiting = WaitingRequest {
            request_id: Uuid::nil(),
            order_id: Uuid::nil(),
            amount: Money {
                amount: 250_000,
                currency: "EUR".into(),
            },
            reason: "not_received".into(),
        };
        let zh = recipients(&[admin("li@example.com", "zh-CN")], &[]);
        let context = waiting.context(&zh[0]);
        assert_eq!(context["amount"], "2500.00 EUR");
        assert_eq!(context["reason"], "未收到商品");
        assert_eq!(context["order_ref"], "00000000");
        assert_eq!(context["name"], "Grace");
    }
}
