//! Stock arithmetic: an adjustment may never take `available` below zero.

use web::FieldError;

/// The largest single adjustment, either way.
pub const MAX_DELTA: i64 = 1_000_000;
/// The most units a product may hold available.
pub const MAX_AVAILABLE: i64 = 1_000_000_000;
/// How many recent adjustments each product keeps in its own log (older ones live on in the
/// `product.updated` events and in the running total).
pub const ADJUSTMENT_LOG_LEN: i32 = 100;

/// `available` after applying `delta`, or the error naming `delta`.
pub fn apply(available: i64, delta: i64) -> Result<i64, FieldError> {
    check_delta(delta)?;
    let next = available
        .checked_add(delta)
        .ok_or_else(|| FieldError::new("delta", "is out of range"))?;
    if next < 0 {
        return Err(FieldError::new(
            "delta",
            format!("would take available stock below zero (available: {available})"),
        ));
    }
    if next > MAX_AVAILABLE {
        return Err(FieldError::new(
            "delta",
            format!("would take available stock above {MAX_AVAILABLE}"),
        ));
    }
    Ok(next)
}

/// A delta is non-zero and bounded.
pub fn check_delta(delta: i64) -> Result<(), FieldError> {
    if delta == 0 {
        return Err(FieldError::new("delta", "must not be zero"));
    }
    if delta.unsigned_abs() > MAX_DELTA as u64 {
        return Err(FieldError::new(
            "delta",
            format!("must be between -{MAX_DELTA} and {MAX_DELTA}"),
        ));
    }
    Ok(())
}

/// The reason recorded with an adjustment: required, trimmed, bounded.
pub fn reason(value: &str) -> Result<String, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::new("reason", "must not be empty"));
    }
    if value.chars().count() > 200 || value.chars().any(char::is_control) {
        return Err(FieldError::new(
            "reason",
            "must be at most 200 printable characters",
        ));
    }
    Ok(value.to_owned())
}

/// The initial stock of a new product.
pub fn initial(value: i64) -> Result<i64, FieldError> {
    if (0..=MAX_AVAILABLE).contains(&value) {
        Ok(value)
    } else {
        Err(FieldError::new(
            "initial_stock",
            format!("must be between 0 and {MAX_AVAILABLE}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_never_goes_below_zero() {
        assert_eq!(apply(10, -10).ok(), Some(0));
        assert_eq!(apply(0, 5).ok(), Some(5));
        let error = apply(3, -4).err();
        assert_eq!(error.map(|e| e.field), Some("delta".to_owned()));
    }

    #[test]
    fn deltas_are_non_zero_and_bounded() {
        assert!(apply(5, 0).is_err());
        assert!(apply(0, MAX_DELTA + 1).is_err());
        assert!(apply(i64::MAX, 1).is_err());
        assert!(apply(MAX_AVAILABLE, 1).is_err());
    }

    #[test]
    fn reasons_are_required() {
        assert_eq!(reason("  restock ").ok().as_deref(), Some("restock"));
        assert!(reason("  ").is_err());
        assert!(reason(&"x".repeat(201)).is_err());
    }

    #[test]
    fn initial_stock_is_bounded() {
        assert!(initial(0).is_ok());
        assert!(initial(-1).is_err());
        assert!(initial(MAX_AVAILABLE + 1).is_err());
    }
}
