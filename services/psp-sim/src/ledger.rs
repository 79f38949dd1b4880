//! The provider's books, in memory: charges, refunds, and the answers recorded under each
//! idempotency key.
//!
//! Idempotency works as at Stripe: the first request with a key decides the outcome and its
//! answer is recorded with a fingerprint of the request; a later request with the same key
//! and the same request gets the recorded answer (not a second charge), and with another
//! request a conflict. The charge is written to the books the moment the first request
//! arrives, even when its answer is held back (the slow card), so a duplicate sent while the
//! first still waits gets the same charge, and a look-up by key sees it at once. Calls that
//! fail before charging (a provider error, an injected 503) record nothing, so a retry with
//! the same key is safe and may succeed.
//!
//! One mutex guards everything; it is never held across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;
use uuid::Uuid;

use crate::cards::Behaviour;

/// A charge as the provider shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Charge {
    /// `ch_...`
    pub id: String,
    /// `succeeded` or `declined`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    /// The caller's reference (payment-service sends the order id).
    pub reference: String,
    pub card: CardView,
    /// Unix seconds.
    pub created: i64,
    pub refunded: bool,
    pub amount_refunded: i64,
    pub idempotency_key: String,
}

/// What the provider keeps of a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CardView {
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: i32,
}

/// A refund of a whole charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Refund {
    /// `re_...`
    pub id: String,
    pub charge: String,
    pub amount: i64,
    pub currency: String,
    /// Always `succeeded` here.
    pub status: String,
    pub created: i64,
}

/// A charge to make: the card is already validated.
#[derive(Debug, Clone, Serialize)]
pub struct NewCharge {
    pub amount: i64,
    pub currency: String,
    pub reference: String,
    pub card_number: String,
    pub exp_month: u32,
    pub exp_year: i32,
    pub cvc: String,
    /// Expired cards are declined, not rejected.
    #[serde(skip)]
    pub expired: bool,
}

/// An answer to give, and when (the slow card's answer is held back).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub not_before: Instant,
}

#[derive(Debug, Clone)]
struct Recorded {
    fingerprint: String,
    answer: Answer,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LedgerError {
    #[error("this idempotency key was used with a different request")]
    KeyReused,
    #[error("the provider failed before charging")]
    ProviderError,
    #[error("no such charge")]
    NoSuchCharge,
    #[error("{0}")]
    NotRefundable(&'static str),
}

#[derive(Debug, Default)]
struct Books {
    charges: HashMap<String, Charge>,
    charge_answers: HashMap<String, Recorded>,
    refund_answers: HashMap<String, Recorded>,
}

/// The books, shared by every request.
#[derive(Debug, Default)]
pub struct Ledger {
    books: Mutex<Books>,
}

/// A stable fingerprint of a request body.
pub fn fingerprint(request: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(request).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Ledger {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        // A panic while holding the lock cannot leave the maps half-changed (each change is
        // one insert), so a poisoned lock is still good to use.
        self.books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Charges `request` under `key`, or replays what the key answered before.
    pub fn charge(
        &self,
        key: &str,
        request: &NewCharge,
        behaviour: Behaviour,
        slow_delay: Duration,
    ) -> Result<Answer, LedgerError> {
        let fingerprint = fingerprint(request);
        let mut books = self.books();
        if let Some(recorded) = books.charge_answers.get(key) {
            return match recorded.fingerprint == fingerprint {
                true => Ok(recorded.answer.clone()),
                false => Err(LedgerError::KeyReused),
            };
        }
        let (status, decline_code, delay) = match behaviour {
            Behaviour::ProviderError => return Err(LedgerError::ProviderError),
            _ if request.expired => ("declined", Some("expired_card"), Duration::ZERO),
            Behaviour::Succeed => ("succeeded", None, Duration::ZERO),
            Behaviour::Slow => ("succeeded", None, slow_delay),
            Behaviour::Decline(code) => ("declined", Some(code), Duration::ZERO),
        };
        let number = &request.card_number;
        let charge = Charge {
            id: format!("ch_{}", Uuid::new_v4().simple()),
            status: status.to_owned(),
            decline_code: decline_code.map(str::to_owned),
            amount: request.amount,
            currency: request.currency.clone(),
            reference: request.reference.clone(),
            card: CardView {
                brand: crate::cards::brand(number).to_owned(),
                last4: number[number.len().saturating_sub(4)..].to_owned(),
                exp_month: request.exp_month,
                exp_year: request.exp_year,
            },
            created: unix_now(),
            refunded: false,
            amount_refunded: 0,
            idempotency_key: key.to_owned(),
        };
        let answer = Answer {
            status: if decline_code.is_some() { 402 } else { 201 },
            body: serde_json::to_value(&charge).unwrap_or_default(),
            not_before: Instant::now() + delay,
        };
        metrics::counter!("psp_charges_total", "status" => status).increment(1);
        books.charges.insert(charge.id.clone(), charge);
        books.charge_answers.insert(
            key.to_owned(),
            Recorded {
                fingerprint,
                answer: answer.clone(),
            },
        );
        Ok(answer)
    }

    /// Refunds the whole of a succeeded charge under `key`, or replays the key's answer.
    pub fn refund(&self, key: &str, charge_id: &str) -> Result<Answer, LedgerError> {
        let fingerprint = fingerprint(&charge_id);
        let mut books = self.books();
        if let Some(recorded) = books.refund_answers.get(key) {
            return match recorded.fingerprint == fingerprint {
                true => Ok(recorded.answer.clone()),
                false => Err(LedgerError::KeyReused),
            };
        }
        let charge = books
            .charges
            .get_mut(charge_id)
            .ok_or(LedgerError::NoSuchCharge)?;
        if charge.status != "succeeded" {
            return Err(LedgerError::NotRefundable(
                "only a succeeded charge can be refunded",
            ));
        }
        if charge.refunded {
            return Err(LedgerError::NotRefundable("the charge is refunded already"));
        }
        charge.refunded = true;
        charge.amount_refunded = charge.amount;
        let refund = Refund {
            id: format!("re_{}", Uuid::new_v4().simple()),
            charge: charge.id.clone(),
            amount: charge.amount,
            currency: charge.currency.clone(),
            status: "succeeded".into(),
            created: unix_now(),
        };
        let answer = Answer {
            status: 201,
            body: serde_json::to_value(&refund).unwrap_or_default(),
            not_before: Instant::now(),
        };
        metrics::counter!("psp_refunds_total").increment(1);
        books.refund_answers.insert(
            key.to_owned(),
            Recorded {
                fingerprint,
                answer: answer.clone(),
            },
        );
        Ok(answer)
    }

    pub fn charge_by_id(&self, id: &str) -> Option<Charge> {
        self.books().charges.get(id).cloned()
    }

    /// The charge made under an idempotency key, if any.
    pub fn charge_by_key(&self, key: &str) -> Option<Charge> {
        let books = self.books();
        let recorded = books.charge_answers.get(key)?;
        let id = recorded.answer.body.get("id")?.as_str()?;
        books.charges.get(id).cloned()
    }

    /// Every charge with the caller's `reference`, oldest first.
    pub fn charges_by_reference(&self, reference: &str) -> Vec<Charge> {
        let mut charges: Vec<Charge> = self
            .books()
            .charges
            .values()
            .filter(|charge| charge.reference == reference)
            .cloned()
            .collect();
        charges.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        charges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cards;

    fn request(number: &str, amount: i64) -> NewCharge {
        NewCharge {
            amount,
            currency: "EUR".into(),
            reference: "order-1".into(),
            card_number: number.into(),
            exp_month: 12,
            exp_year: 2030,
            cvc: "123".into(),
            expired: false,
        }
    }

    fn charge(ledger: &Ledger, key: &str, req: &NewCharge) -> Result<Answer, LedgerError> {
        ledger.charge(
            key,
            req,
            cards::behaviour(&req.card_number),
            Duration::from_secs(5),
        )
    }

    #[test]
    fn the_same_key_and_request_replays_the_first_answer() -> Result<(), LedgerError> {
        let ledger = Ledger::default();
        let first = charge(&ledger, "k1", &request(cards::SUCCEEDS, 100))?;
        let again = charge(&ledger, "k1", &request(cards::SUCCEEDS, 100))?;
        assert_eq!(first.status, 201);
        assert_eq!(first.body, again.body);
        assert_eq!(ledger.charges_by_reference("order-1").len(), 1);
        Ok(())
    }

    #[test]
    fn the_same_key_with_another_request_is_a_conflict() -> Result<(), LedgerError> {
        let ledger = Ledger::default();
        charge(&ledger, "k1", &request(cards::SUCCEEDS, 100))?;
        assert_eq!(
            charge(&ledger, "k1", &request(cards::SUCCEEDS, 200)).err(),
            Some(LedgerError::KeyReused)
        );
        Ok(())
    }

    #[test]
    fn declines_are_recorded_and_provider_errors_are_not() -> Result<(), LedgerError> {
        let ledger = Ledger::default();
        let declined = charge(&ledger, "k1", &request(cards::INSUFFICIENT_FUNDS, 100))?;
        assert_eq!(declined.status, 402);
        assert_eq!(declined.body["decline_code"], "insufficient_funds");
        assert_eq!(
            charge(&ledger, "k2", &request(cards::PROVIDER_ERROR, 100)).err(),
            Some(LedgerError::ProviderError)
        );
        assert!(ledger.charge_by_key("k2").is_none());
        assert_eq!(ledger.charges_by_reference("order-1").len(), 1);
        Ok(())
    }

    #[test]
    fn the_slow_card_is_charged_at_once_and_answered_later() -> Result<(), LedgerError> {
        let ledger = Ledger::default();
        let answer = charge(&ledger, "slow", &request(cards::SLOW, 100))?;
        assert!(answer.not_before > Instant::now() + Duration::from_secs(4));
        let charge = ledger
            .charge_by_key("slow")
            .ok_or(LedgerError::NoSuchCharge)?;
        assert_eq!(charge.status, "succeeded");
        assert_eq!(charge.card.last4, "3220");
        Ok(())
    }

    #[test]
    fn an_expired_card_is_declined() -> Result<(), LedgerError> {
        let ledger = Ledger::default();
        let mut req = request(cards::SUCCEEDS, 100);
        req.expired = true;
        assert_eq!(
            charge(&ledger, "k", &req)?.body["decline_code"],
            "expired_card"
        );
        Ok(())
    }

    #[test]
    fn a_charge_is_refunded_once() -> Result<(), LedgerError> {
        let ledger = Ledger::default();
        let answer = charge(&ledger, "k1", &request(cards::SUCCEEDS, 100))?;
        let id = answer.body["id"].as_str().unwrap_or_default().to_owned();
        let refund = ledger.refund("r1", &id)?;
        assert_eq!(refund.body["amount"], 100);
        assert_eq!(ledger.refund("r1", &id)?.body, refund.body, "replayed");
        assert!(matches!(
            ledger.refund("r2", &id),
            Err(LedgerError::NotRefundable(_))
        ));
        assert!(ledger.charge_by_id(&id).is_some_and(|c| c.refunded));
        assert_eq!(
            ledger.refund("r3", "ch_nope").err(),
            Some(LedgerError::NoSuchCharge)
        );
        let declined = charge(&ledger, "k2", &request(cards::DECLINED, 100))?;
        let declined_id = declined.body["id"].as_str().unwrap_or_default().to_owned();
        assert!(matches!(
            ledger.refund("r4", &declined_id),
            Err(LedgerError::NotRefundable(_))
        ));
        Ok(())
    }
}
