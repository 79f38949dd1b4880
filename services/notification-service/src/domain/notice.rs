//! Which events tell the customer something, on which channels, and with what data.
//!
//! The triggers (DESIGN.md, checkout saga step 8): `user.registered` -> welcome,
//! `order.created` -> order received, `order.paid` -> receipt (e-mail, and SMS for users with
//! a phone number who opted in), `payment.failed`, `order.rejected`, `order.cancelled` ->
//! notices; `order.refunded` (an approved refund request, paid back) -> refund notice;
//! `order.refund_rejected` -> the rejection with the admin's comment. Every
//! other event type is not a notification.

use contracts::order::{
    OrderCancelled, OrderCreated, OrderPaid, OrderRefundRejected, OrderRefunded, OrderRejected,
};
use contracts::payment::PaymentFailed;
use contracts::user::UserRegistered;
use contracts::{CloudEvent, EnvelopeError, EventData};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::locale::Locale;
use super::money;

/// A way of reaching a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            _ => None,
        }
    }
}

/// An event that becomes a message to its user.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Welcome(UserRegistered),
    OrderReceived(OrderCreated),
    Receipt(OrderPaid),
    PaymentFailed(PaymentFailed),
    OrderRejected(OrderRejected),
    OrderCancelled(OrderCancelled),
    OrderRefunded(OrderRefunded),
    RefundRejected(OrderRefundRejected),
}

/// The contact fields a message is addressed and written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub locale: String,
}

/// A user's channel choices. E-mail is on and SMS off unless the user says otherwise: an SMS
/// costs money and interrupts, so it needs an opt-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Preferences {
    pub email: bool,
    pub sms: bool,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            email: true,
            sms: false,
        }
    }
}

fn decode<T: EventData>(event: &CloudEvent) -> Result<T, EnvelopeError> {
    event.decode::<T>().map(|event| event.data)
}

impl Notice {
    /// The notice an event carries; `None` for event types that tell the customer nothing.
    pub fn from_event(event: &CloudEvent) -> Result<Option<Self>, EnvelopeError> {
        Ok(Some(match event.event_type.as_str() {
            UserRegistered::TYPE => Notice::Welcome(decode(event)?),
            OrderCreated::TYPE => Notice::OrderReceived(decode(event)?),
            OrderPaid::TYPE => Notice::Receipt(decode(event)?),
            PaymentFailed::TYPE => Notice::PaymentFailed(decode(event)?),
            OrderRejected::TYPE => Notice::OrderRejected(decode(event)?),
            OrderCancelled::TYPE => Notice::OrderCancelled(decode(event)?),
            OrderRefunded::TYPE => Notice::OrderRefunded(decode(event)?),
            OrderRefundRejected::TYPE => Notice::RefundRejected(decode(event)?),
            _ => return Ok(None),
        }))
    }

    pub fn user_id(&self) -> Uuid {
        match self {
            Notice::Welcome(e) => e.user_id,
            Notice::OrderReceived(e) => e.user_id,
            Notice::Receipt(e) => e.user_id,
            Notice::PaymentFailed(e) => e.user_id,
            Notice::OrderRejected(e) => e.user_id,
            Notice::OrderCancelled(e) => e.user_id,
            Notice::OrderRefunded(e) => e.user_id,
            Notice::RefundRejected(e) => e.user_id,
        }
    }

    /// The template's name (also shown in the user's history).
    pub fn template(&self) -> &'static str {
        match self {
            Notice::Welcome(_) => "welcome",
            Notice::OrderReceived(_) => "order_received",
            Notice::Receipt(_) => "receipt",
            Notice::PaymentFailed(_) => "payment_failed",
            Notice::OrderRejected(_) => "order_rejected",
            Notice::OrderCancelled(_) => "order_cancelled",
            Notice::OrderRefunded(_) => "order_refunded",
            Notice::RefundRejected(_) => "refund_rejected",
        }
    }

    /// Channels this notice may use. Only money moving is worth an SMS: the receipt and the
    /// refund.
    pub fn channels(&self) -> &'static [Channel] {
        match self {
            Notice::Receipt(_) | Notice::OrderRefunded(_) => &[Channel::Email, Channel::Sms],
            _ => &[Channel::Email],
        }
    }

    /// The messages to send: (channel, recipient) for every channel the notice uses, the user
    /// allows and the contact can be reached on.
    pub fn plan(&self, contact: &Contact, preferences: Preferences) -> Vec<(Channel, String)> {
        self.channels()
            .iter()
            .filter_map(|channel| match channel {
                Channel::Email if preferences.email && !contact.email.is_empty() => {
                    Some((Channel::Email, contact.email.clone()))
                }
                Channel::Sms if preferences.sms => contact
                    .phone
                    .as_ref()
                    .filter(|phone| !phone.is_empty())
                    .map(|phone| (Channel::Sms, phone.clone())),
                _ => None,
            })
            .collect()
    }

    /// The template variables, already localised and formatted.
    pub fn context(&self, contact: &Contact, locale: Locale) -> Value {
        let order_ref = |id: &Uuid| id.simple().to_string()[..8].to_uppercase();
        let mut context = match self {
            Notice::Welcome(_) => json!({}),
            Notice::OrderReceived(order) => json!({
                "order_id": order.order_id,
                "order_ref": order_ref(&order.order_id),
                "total": money::format(&order.total),
                "items": order.items.iter().map(|item| json!({
                    "name": item.name,
                    "quantity": item.quantity,
                    "unit_price": money::format(&item.unit_price),
                    "line_total": money::format(&money::times(&item.unit_price, item.quantity)),
                })).collect::<Vec<_>>(),
            }),
            Notice::Receipt(paid) => json!({
                "order_id": paid.order_id,
                "order_ref": order_ref(&paid.order_id),
                "total": money::format(&paid.total),
                "payment_ref": order_ref(&paid.payment_id),
            }),
            Notice::PaymentFailed(failed) => json!({
                "order_id": failed.order_id,
                "order_ref": order_ref(&failed.order_id),
                "amount": money::format(&failed.amount),
                "reason": locale.reason(&failed.reason),
            }),
            Notice::OrderRejected(rejected) => json!({
                "order_id": rejected.order_id,
                "order_ref": order_ref(&rejected.order_id),
                "reason": locale.reason(&rejected.reason),
            }),
            Notice::OrderCancelled(cancelled) => json!({
                "order_id": cancelled.order_id,
                "order_ref": order_ref(&cancelled.order_id),
                "reason": locale.reason(&cancelled.reason),
            }),
            Notice::OrderRefunded(refunded) => json!({
                "order_id": refunded.order_id,
                "order_ref": order_ref(&refunded.order_id),
                "amount": money::format(&refunded.amount),
                "reason": locale.reason(&refunded.reason),
            }),
            Notice::RefundRejected(rejected) => json!({
                "order_id": rejected.order_id,
                "order_ref": order_ref(&rejected.order_id),
                "reason": locale.reason(&rejected.reason),
                // The process's own comment when nobody decided in time is a code; an admin's
                // words are shown as written.
                "comment": rejected.comment.as_deref().map(|comment| match comment {
                    "approval_timeout" => locale.reason(comment),
                    words => words.to_owned(),
                }),
            }),
        };
        context["name"] = Value::String(contact.name.clone());
        context
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::product::Money;

    fn contact(phone: Option<&str>) -> Contact {
        Contact {
            user_id: Uuid::nil(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            phone: phone.map(str::to_owned),
            locale: "en".into(),
        }
    }

    fn receipt() -> Notice {
        Notice::Receipt(OrderPaid {
            order_id: Uuid::nil(),
            user_id: Uuid::nil(),
            total: Money {
                amount: 4200,
                currency: "EUR".into(),
            },
            payment_id: Uuid::nil(),
        })
    }

    fn channels(plan: Vec<(Channel, String)>) -> Vec<Channel> {
        plan.into_iter().map(|(channel, _)| channel).collect()
    }

    #[test]
    fn the_receipt_goes_by_sms_only_to_users_with_a_phone_who_opted_in() {
        let opted_in = Preferences {
            email: true,
            sms: true,
        };
        let phone = contact(Some("+4915112345678"));
        assert_eq!(
            receipt().plan(&phone, opted_in),
            vec![
                (Channel::Email, "ada@example.com".to_owned()),
                (Channel::Sms, "+4915112345678".to_owned())
            ]
        );
        assert_eq!(
            channels(receipt().plan(&phone, Preferences::default())),
            [Channel::Email]
        );
        assert_eq!(
            channels(receipt().plan(&contact(None), opted_in)),
            [Channel::Email]
        );
        let sms_only = Preferences {
            email: false,
            sms: true,
        };
        assert_eq!(channels(receipt().plan(&phone, sms_only)), [Channel::Sms]);
    }

    #[test]
    fn a_rejection_shows_the_admins_words_and_words_the_timeout_in_the_language() {
        let rejection = |comment: Option<&str>| {
            Notice::RefundRejected(OrderRefundRejected {
                order_id: Uuid::nil(),
                user_id: Uuid::nil(),
                refund_request_id: Uuid::nil(),
                reason: "not_received".into(),
                comment: comment.map(str::to_owned),
            })
        };
        let zh = rejection(Some("approval_timeout")).context(&contact(None), Locale::ZhCn);
        assert_eq!(zh["comment"], "我们未能在规定时间内完成审核");
        assert_eq!(zh["reason"], "未收到商品");
        let en = rejection(Some("Signed for on 3 May")).context(&contact(None), Locale::En);
        assert_eq!(en["comment"], "Signed for on 3 May");
        assert!(rejection(None).context(&contact(None), Locale::En)["comment"].is_null());
        assert_eq!(rejection(None).template(), "refund_rejected");
    }

    #[test]
    fn the_refund_goes_by_sms_too_where_the_customer_opted_in() {
        let refunded = Notice::OrderRefunded(contracts::order::OrderRefunded {
            order_id: Uuid::nil(),
            user_id: Uuid::nil(),
            refund_request_id: Uuid::nil(),
            amount: contracts::product::Money {
                amount: 1_999,
                currency: "EUR".into(),
            },
            reason: "damaged".into(),
        });
        let phone = contact(Some("+4915112345678"));
        let everything = Preferences {
            email: true,
            sms: true,
        };
        assert_eq!(
            channels(refunded.plan(&phone, everything)),
            [Channel::Email, Channel::Sms]
        );
        let mail_only = Preferences {
            email: true,
            sms: false,
        };
        assert_eq!(channels(refunded.plan(&phone, mail_only)), [Channel::Email]);
        assert_eq!(
            channels(refunded.plan(&contact(None), everything)),
            [Channel::Email]
        );
    }

    #[test]
    fn notices_other_than_the_receipt_and_the_refund_are_mail_only() {
        let rejected = Notice::OrderRejected(OrderRejected {
            order_id: Uuid::nil(),
            user_id: Uuid::nil(),
            reason: "out_of_stock".into(),
        });
        let everything = Preferences {
            email: true,
            sms: true,
        };
        assert_eq!(
            channels(rejected.plan(&contact(Some("+4915112345678")), everything)),
            [Channel::Email]
        );
    }

    #[test]
    fn events_map_to_notices_and_others_are_ignored() -> Result<(), Box<dyn std::error::Error>> {
        let paid = match receipt() {
            Notice::Receipt(paid) => paid,
            _ => unreachable!(),
        };
        let event = CloudEvent::new("/order-service", "x", paid).into_untyped()?;
        assert_eq!(
            Notice::from_event(&event)?.map(|n| n.template()),
            Some("receipt")
        );
        let login = CloudEvent::new(
            "/user-service",
            "x",
            contracts::user::UserLoggedIn {
                user_id: Uuid::nil(),
                method: contracts::user::SignInMethod::Password,
            },
        )
        .into_untyped()?;
        assert_eq!(Notice::from_event(&login)?, None);
        let mut broken = event.clone();
        broken.data = json!({"order_id": 5});
        assert!(Notice::from_event(&broken).is_err());
        Ok(())
    }

    #[test]
    fn the_context_formats_money_and_localises_reasons() {
        let failed = Notice::PaymentFailed(PaymentFailed {
            payment_id: Uuid::nil(),
            order_id: Uuid::nil(),
            user_id: Uuid::nil(),
            amount: Money {
                amount: 1999,
                currency: "EUR".into(),
            },
            reason: "card_declined".into(),
        });
        let context = failed.context(&contact(None), Locale::ZhCn);
        assert_eq!(context["amount"], "19.99 EUR");
        assert_eq!(context["reason"], "银行卡被拒绝");
        assert_eq!(context["name"], "Ada");
        assert_eq!(context["order_ref"], "00000000");
    }
}
