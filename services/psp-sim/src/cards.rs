//! Cards as the provider sees them: which test card does what, the brand, and the checks a
//! provider makes before it tries to charge.

use chrono::Datelike as _;

/// What the provider does with a charge on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Charged.
    Succeed,
    /// Refused by the issuer with this decline code; nothing charged.
    Decline(&'static str),
    /// The provider fails (HTTP 500) before charging; retrying with the same key is safe.
    ProviderError,
    /// Charged at once, but the answer comes only after the slow delay (past the caller's
    /// timeout): the caller must find out by asking, and must not charge again.
    Slow,
}

pub const SUCCEEDS: &str = "4242424242424242";
pub const DECLINED: &str = "4000000000000002";
pub const INSUFFICIENT_FUNDS: &str = "4000000000009995";
pub const PROVIDER_ERROR: &str = "4000000000000119";
pub const SLOW: &str = "4000000000003220";

/// The behaviour of a (valid) card number: the test cards above, and success for any other.
pub fn behaviour(number: &str) -> Behaviour {
    match number {
        DECLINED => Behaviour::Decline("card_declined"),
        INSUFFICIENT_FUNDS => Behaviour::Decline("insufficient_funds"),
        PROVIDER_ERROR => Behaviour::ProviderError,
        SLOW => Behaviour::Slow,
        _ => Behaviour::Succeed,
    }
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

/// The first problem with a card's fields, as `(field, message)`; `None` if it can be tried.
/// An expired card is not an input error but a decline (see [`is_expired`]).
pub fn invalid_field(number: &str, exp_month: u32, cvc: &str) -> Option<(&'static str, String)> {
    if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Some(("card.number", "must be 12 to 19 digits".into()));
    }
    if !luhn_valid(number) {
        return Some(("card.number", "is not a valid card number".into()));
    }
    if !(1..=12).contains(&exp_month) {
        return Some(("card.exp_month", "must be 1 to 12".into()));
    }
    if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Some(("card.cvc", "must be 3 or 4 digits".into()));
    }
    None
}

/// Whether a card valid through the end of `exp_month/exp_year` has expired on `today`.
pub fn is_expired(exp_month: u32, exp_year: i32, today: chrono::NaiveDate) -> bool {
    (exp_year, exp_month) < (today.year(), today.month())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_pass_luhn_and_pick_their_behaviour() {
        for card in [SUCCEEDS, DECLINED, INSUFFICIENT_FUNDS, PROVIDER_ERROR, SLOW] {
            assert!(luhn_valid(card), "{card}");
        }
        assert_eq!(behaviour(SUCCEEDS), Behaviour::Succeed);
        assert_eq!(behaviour(DECLINED), Behaviour::Decline("card_declined"));
        assert_eq!(
            behaviour(INSUFFICIENT_FUNDS),
            Behaviour::Decline("insufficient_funds")
        );
        assert_eq!(behaviour(PROVIDER_ERROR), Behaviour::ProviderError);
        assert_eq!(behaviour(SLOW), Behaviour::Slow);
        assert_eq!(behaviour("5555555555554444"), Behaviour::Succeed);
    }

    #[test]
    fn luhn_rejects_a_changed_digit_and_non_digits() {
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid("4242 4242 4242 4242"));
        assert!(!luhn_valid(""));
    }

    #[test]
    fn brands_follow_the_leading_digits() {
        assert_eq!(brand(SUCCEEDS), "visa");
        assert_eq!(brand("5555555555554444"), "mastercard");
        assert_eq!(brand("378282246310005"), "amex");
        assert_eq!(brand("9999999999999995"), "unknown");
    }

    #[test]
    fn fields_are_checked_in_order() {
        assert_eq!(invalid_field(SUCCEEDS, 12, "123"), None);
        assert_eq!(
            invalid_field("4242", 12, "123").map(|f| f.0),
            Some("card.number")
        );
        assert_eq!(
            invalid_field(SUCCEEDS, 13, "123").map(|f| f.0),
            Some("card.exp_month")
        );
        assert_eq!(
            invalid_field(SUCCEEDS, 1, "12").map(|f| f.0),
            Some("card.cvc")
        );
    }

    #[test]
    fn a_card_is_valid_through_its_expiry_month() -> Result<(), String> {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).ok_or("date")?;
        assert!(!is_expired(11, 2026, today));
        assert!(is_expired(10, 2026, today));
        assert!(!is_expired(1, 2027, today));
        Ok(())
    }
}
