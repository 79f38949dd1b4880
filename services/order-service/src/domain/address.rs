//! The shipping address of an order: what a parcel label needs, checked field by field.
//!
//! It is stored as JSONB, which refuses NUL (a 500 before the check existed), and its schema's
//! patterns exclude the same control characters the check refuses, so the API document and the
//! rule agree.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use web::FieldError;

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingAddress {
    #[schema(
        example = "Ada Lovelace",
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    )]
    pub name: String,
    #[schema(
        example = "12 St James's Square",
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    )]
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f]*$")]
    pub line2: Option<String>,
    #[schema(
        example = "London",
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    )]
    pub city: String,
    #[schema(
        example = "SW1Y 4JH",
        max_length = 20,
        pattern = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    )]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    #[schema(example = "GB", pattern = "^[A-Z]{2}$")]
    pub country: String,
}

impl ShippingAddress {
    /// Adds a field error to `errors` for every field that cannot go on a parcel label.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        let mut text = |field: &str, value: &str, max: usize| {
            let length = value.trim().chars().count();
            // The address is stored as JSONB, which refuses NUL (a 500 before); no control
            // character belongs on a parcel label anyway.
            if value.chars().any(is_control) {
                errors.push(FieldError::new(
                    format!("shipping_address.{field}"),
                    "must not contain control characters",
                ));
            } else if length == 0 {
                errors.push(FieldError::new(
                    format!("shipping_address.{field}"),
                    "must not be empty",
                ));
            } else if length > max {
                errors.push(FieldError::new(
                    format!("shipping_address.{field}"),
                    format!("must be at most {max} characters"),
                ));
            }
        };
        text("name", &self.name, 200);
        text("line1", &self.line1, 200);
        text("city", &self.city, 100);
        text("postal_code", &self.postal_code, 20);
        if let Some(line2) = &self.line2
            && (line2.chars().count() > 200 || line2.chars().any(is_control))
        {
            errors.push(FieldError::new(
                "shipping_address.line2",
                "must be at most 200 characters, without control characters",
            ));
        }
        if !(self.country.len() == 2 && self.country.chars().all(|c| c.is_ascii_uppercase())) {
            errors.push(FieldError::new(
                "shipping_address.country",
                "must be an ISO 3166-1 alpha-2 code such as GB",
            ));
        }
    }
}

/// C0 controls and DEL, which the address schema's patterns exclude too.
fn is_control(c: char) -> bool {
    c <= '\u{1f}' || c == '\u{7f}'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(line1: &str) -> ShippingAddress {
        ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: line1.into(),
            line2: None,
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
        }
    }

    /// A NUL in the address reached PostgreSQL's JSONB and answered 500 (contract fuzzing).
    #[test]
    fn control_characters_in_the_address_are_refused_by_field() {
        let mut errors = Vec::new();
        address("12 St James\u{0}s Square").validate(&mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "shipping_address.line1");
        let mut errors = Vec::new();
        address("12 St James's Square").validate(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }
}
