//! Amounts in minor units, written for people: `1999 EUR` -> `19.99 EUR`.

use contracts::product::Money;

/// Digits after the decimal point of an ISO 4217 currency.
fn exponent(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "UGX" | "XAF" | "XOF" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 3,
        _ => 2,
    }
}

/// `amount` in major units with the currency code, e.g. `19.99 EUR` or `-5.00 USD`.
pub fn format(money: &Money) -> String {
    let digits = exponent(&money.currency);
    let sign = if money.amount < 0 { "-" } else { "" };
    let minor = money.amount.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{minor} {}", money.currency);
    }
    let scale = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$} {}",
        minor / scale,
        minor % scale,
        money.currency,
        width = digits as usize
    )
}

/// `unit * quantity` without overflow surprises (saturates; such orders are refused upstream).
pub fn times(unit: &Money, quantity: i64) -> Money {
    Money {
        amount: unit.amount.saturating_mul(quantity),
        currency: unit.currency.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(amount: i64, currency: &str) -> Money {
        Money {
            amount,
            currency: currency.into(),
        }
    }

    #[test]
    fn minor_units_are_written_with_the_currency_exponent() {
        assert_eq!(format(&money(1999, "EUR")), "19.99 EUR");
        assert_eq!(format(&money(5, "USD")), "0.05 USD");
        assert_eq!(format(&money(-500, "USD")), "-5.00 USD");
        assert_eq!(format(&money(1200, "JPY")), "1200 JPY");
        assert_eq!(format(&money(1234, "KWD")), "1.234 KWD");
        assert_eq!(format(&times(&money(250, "CNY"), 3)), "7.50 CNY");
    }
}
