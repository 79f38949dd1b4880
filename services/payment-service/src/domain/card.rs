//! The card in a payment request: its checks (Luhn, expiry, CVC), what may be kept of it
//! (brand and last four digits), and a keyed fingerprint of the request.
//!
//! The number and CVC live only in memory for the length of the request and the provider
//! call: [`CardInput`]'s `Debug` hides them, so no log line can carry them by accident.

use chrono::Datelike as _;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::Sha256;
use uuid::Uuid;
use web::FieldError;

/// The card as the client sends it.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    /// 12 to 19 digits (spaces allowed), Luhn-valid.
    #[schema(example = "4242 4242 4242 4242", pattern = "^ *([0-9] *){12,19}$")]
    pub number: String,
    /// 1 to 12.
    #[schema(example = 12, minimum = 1, maximum = 12)]
    pub exp_month: u32,
    /// Four digits, e.g. 2030; the card must not have expired.
    #[schema(example = 2030, minimum = 2000, maximum = 2100)]
    pub exp_year: i32,
    /// 3 or 4 digits.
    #[schema(example = "123", pattern = "^[0-9]{3,4}$")]
    pub cvc: String,
}

impl std::fmt::Debug for CardInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardInput")
            .field("last4", &last4(&digits(&self.number)))
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .finish_non_exhaustive()
    }
}

/// A card that passed the checks, number normalised to digits only.
#[derive(Clone)]
pub struct Card {
    pub number: String,
    pub exp_month: u32,
    pub exp_year: i32,
    pub cvc: String,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("brand", &self.brand())
            .field("last4", &self.last4())
            .finish_non_exhaustive()
    }
}

impl Card {
    pub fn brand(&self) -> &'static str {
        brand(&self.number)
    }

    pub fn last4(&self) -> String {
        last4(&self.number)
    }
}

fn digits(number: &str) -> String {
    number.chars().filter(|c| *c != ' ').collect()
}

fn last4(number: &str) -> String {
    number
        .get(number.len().saturating_sub(4)..)
        .unwrap_or_default()
        .to_owned()
}

/// Checks every field; all problems are reported at once, each naming its field.
pub fn validate(input: &CardInput, today: chrono::NaiveDate) -> Result<Card, Vec<FieldError>> {
    let mut errors = Vec::new();
    let number = digits(&input.number);
    if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(FieldError::new("card.number", "must be 12 to 19 digits"));
    } else if !luhn_valid(&number) {
        errors.push(FieldError::new("card.number", "is not a valid card number"));
    }
    let month_ok = (1..=12).contains(&input.exp_month);
    if !month_ok {
        errors.push(FieldError::new("card.exp_month", "must be 1 to 12"));
    }
    if !(2000..=2100).contains(&input.exp_year) {
        errors.push(FieldError::new(
            "card.exp_year",
            "must be a four-digit year",
        ));
    } else if month_ok && (input.exp_year, input.exp_month) < (today.year(), today.month()) {
        errors.push(FieldError::new("card.exp_year", "the card has expired"));
    }
    if !(3..=4).contains(&input.cvc.len()) || !input.cvc.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(FieldError::new("card.cvc", "must be 3 or 4 digits"));
    }
    match errors.is_empty() {
        true => Ok(Card {
            number,
            exp_month: input.exp_month,
            exp_year: input.exp_year,
            cvc: input.cvc.clone(),
        }),
        false => Err(errors),
    }
}

/// The Luhn checksum every card number carries.
pub fn luhn_valid(number: &str) -> bool {
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            match index % 2 {
                1 if digit * 2 > 9 => digit * 2 - 9,
                1 => digit * 2,
                _ => digit,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The card network, from the leading digits.
pub fn brand(number: &str) -> &'static str {
    let two: u32 = number.get(..2).and_then(|d| d.parse().ok()).unwrap_or(0);
    match number.as_bytes().first() {
        Some(b'4') => "visa",
        Some(b'5') if (51..=55).contains(&two) => "mastercard",
        Some(b'2') if (22..=27).contains(&two) => "mastercard",
        Some(b'3') if two == 34 || two == 37 => "amex",
        Some(b'6') => "discover",
        _ => "unknown",
    }
}

/// Identifies "the same request" under one Idempotency-Key: an HMAC over the order and the
/// whole card. A plain hash of a card number could be reversed by trying the few billion
/// numbers that share its brand and last four digits; without the key it cannot.
pub fn fingerprint(key: &[u8], order_id: Uuid, card: &Card) -> String {
    let message = format!(
        "{order_id}|{}|{}|{}|{}",
        card.number, card.exp_month, card.exp_year, card.cvc
    );
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm is unreachable.
        Err(_) => return String::new(),
    };
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap_or_default()
    }

    fn input(number: &str, month: u32, year: i32, cvc: &str) -> CardInput {
        CardInput {
            number: number.into(),
            exp_month: month,
            exp_year: year,
            cvc: cvc.into(),
        }
    }

    fn fields(result: Result<Card, Vec<FieldError>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_good_card_passes_with_spaces_removed() {
        let card = validate(&input("4242 4242 4242 4242", 11, 2026, "123"), today());
        let card = card.unwrap_or_else(|errors| panic!("{errors:?}"));
        assert_eq!(card.number, "4242424242424242");
        assert_eq!(card.last4(), "4242");
        assert_eq!(card.brand(), "visa");
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            fields(validate(
                &input("4242424242424241", 1, 2030, "123"),
                today()
            )),
            ["card.number"]
        );
        assert_eq!(
            fields(validate(&input("42", 13, 2030, "1"), today())),
            ["card.number", "card.exp_month", "card.cvc"]
        );
        assert_eq!(
            fields(validate(
                &input("4242424242424242", 10, 2026, "1234"),
                today()
            )),
            ["card.exp_year"],
            "expired last month"
        );
        assert_eq!(
            fields(validate(&input("4242424242424242", 1, 26, "123"), today())),
            ["card.exp_year"]
        );
    }

    #[test]
    fn debug_output_never_shows_the_number_or_cvc() {
        let raw = input("4000000000009995", 1, 2030, "987");
        let shown = format!("{raw:?}");
        assert!(
            !shown.contains("4000000000009995") && !shown.contains("987"),
            "{shown}"
        );
        let card = validate(&raw, today()).unwrap_or_else(|errors| panic!("{errors:?}"));
        let shown = format!("{card:?}");
        assert!(
            !shown.contains("4000000000009995") && !shown.contains("987"),
            "{shown}"
        );
    }

    #[test]
    fn the_fingerprint_depends_on_key_order_and_card() {
        let card = validate(&input("4242424242424242", 1, 2030, "123"), today())
            .unwrap_or_else(|errors| panic!("{errors:?}"));
        let other = validate(&input("4000000000000002", 1, 2030, "123"), today())
            .unwrap_or_else(|errors| panic!("{errors:?}"));
        let order = Uuid::nil();
        let a = fingerprint(b"k1", order, &card);
        assert_eq!(a, fingerprint(b"k1", order, &card));
        assert_ne!(a, fingerprint(b"k2", order, &card));
        assert_ne!(a, fingerprint(b"k1", Uuid::max(), &card));
        assert_ne!(a, fingerprint(b"k1", order, &other));
        assert!(!a.contains("4242"));
    }
}
