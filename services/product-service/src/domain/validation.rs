//! Input rules for products. Each check returns the field's error so a request reports every
//! bad field at once.

use contracts::product::{Money, ProductImage};
use serde_json::Value;
use web::FieldError;

/// Currencies the catalog prices in (ISO 4217).
pub const CURRENCIES: &[&str] = &["EUR", "USD", "GBP", "CNY", "JPY"];
/// The largest price, in minor units (one million in a two-decimal currency).
pub const MAX_AMOUNT: i64 = 100_000_000;
pub const NAME_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 5_000;
pub const MAX_TAGS: usize = 20;
pub const TAG_MAX_CHARS: usize = 40;
pub const MAX_IMAGES: usize = 10;
/// Specs are nested at most this deep and take at most this many bytes as JSON.
pub const SPECS_MAX_DEPTH: usize = 8;
pub const SPECS_MAX_BYTES: usize = 16 * 1024;
const SPEC_KEY_MAX_CHARS: usize = 64;

/// Stock-keeping unit: 3 to 64 of `A-Z 0-9 - _ .`, starting with a letter or digit; stored in
/// upper case, so `kt-1` and `KT-1` are the same SKU.
pub fn sku(value: &str) -> Result<String, FieldError> {
    let value = value.trim().to_ascii_uppercase();
    let valid = (3..=64).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(value)
    } else {
        Err(FieldError::new(
            "sku",
            "must be 3 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
        ))
    }
}

fn text(field: &str, value: &str, max: usize, required: bool) -> Result<String, FieldError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    let bad_control = value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'));
    if value.chars().count() > max || bad_control {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

pub fn name(value: &str) -> Result<String, FieldError> {
    text("name", value, NAME_MAX_CHARS, true)
}

pub fn description(value: &str) -> Result<String, FieldError> {
    text("description", value, DESCRIPTION_MAX_CHARS, false)
}

/// Translations of name and description, by language: every key a supported language (stored
/// as `en` or `zh-CN`), every name and description valid as the base ones are.
pub fn translations(
    given: &std::collections::BTreeMap<String, contracts::product::Translation>,
) -> Result<contracts::product::Translations, FieldError> {
    let mut valid = contracts::product::Translations::new();
    for (tag, translation) in given {
        let Some(language) = super::language::supported(tag).filter(|_| tag.len() <= 35) else {
            return Err(FieldError::new(
                "translations",
                "languages must be en or zh-CN",
            ));
        };
        let name = text(
            &format!("translations.{language}.name"),
            &translation.name,
            NAME_MAX_CHARS,
            true,
        )?;
        let description = text(
            &format!("translations.{language}.description"),
            &translation.description,
            DESCRIPTION_MAX_CHARS,
            false,
        )?;
        if valid
            .insert(
                language.to_owned(),
                contracts::product::Translation { name, description },
            )
            .is_some()
        {
            return Err(FieldError::new(
                "translations",
                format!("{language} is given twice"),
            ));
        }
    }
    Ok(valid)
}

/// A category slug: 1 to 50 of `a-z 0-9 -`, stored in lower case.
pub fn category(field: &str, value: &str) -> Result<String, FieldError> {
    let value = value.trim().to_ascii_lowercase();
    let valid = (1..=50).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(value)
    } else {
        Err(FieldError::new(
            field,
            "must be 1 to 50 lower-case letters, digits or '-'",
        ))
    }
}

/// Tags: trimmed, non-empty, bounded, duplicates (ignoring case) dropped, order kept.
pub fn tags(values: &[String]) -> Result<Vec<String>, FieldError> {
    if values.len() > MAX_TAGS {
        return Err(FieldError::new(
            "tags",
            format!("must hold at most {MAX_TAGS} tags"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (index, tag) in values.iter().enumerate() {
        let tag = text(&format!("tags[{index}]"), tag, TAG_MAX_CHARS, true)?;
        if !out.iter().any(|known| known.eq_ignore_ascii_case(&tag)) {
            out.push(tag);
        }
    }
    Ok(out)
}

/// A price: positive, bounded minor units in an accepted currency.
pub fn price(field: &str, value: &Money) -> Result<Money, Vec<FieldError>> {
    let mut errors = Vec::new();
    if !(1..=MAX_AMOUNT).contains(&value.amount) {
        errors.push(FieldError::new(
            format!("{field}.amount"),
            format!("must be between 1 and {MAX_AMOUNT} minor units"),
        ));
    }
    if !CURRENCIES.contains(&value.currency.as_str()) {
        errors.push(FieldError::new(
            format!("{field}.currency"),
            format!("must be one of {}", CURRENCIES.join(", ")),
        ));
    }
    if errors.is_empty() {
        Ok(value.clone())
    } else {
        Err(errors)
    }
}

pub fn images(values: &[ProductImage]) -> Result<Vec<ProductImage>, FieldError> {
    if values.len() > MAX_IMAGES {
        return Err(FieldError::new(
            "images",
            format!("must hold at most {MAX_IMAGES} images"),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(index, image)| {
            let url = image.url.trim();
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.len() > 2048 || url.chars().any(char::is_whitespace) {
                return Err(FieldError::new(
                    format!("images[{index}].url"),
                    "must be an http(s) URL of at most 2048 characters",
                ));
            }
            let alt = text(&format!("images[{index}].alt"), &image.alt, 200, false)?;
            Ok(ProductImage {
                url: url.to_owned(),
                alt,
            })
        })
        .collect()
}

/// Specs: a JSON object, bounded in depth and size, whose keys are safe as MongoDB field names
/// (no leading `$`, no `.`, no NUL) and whose numbers fit a signed 64-bit integer or a double.
pub fn specs(value: &Value) -> Result<Value, FieldError> {
    let invalid = |message: String| FieldError::new("specs", message);
    if !value.is_object() {
        return Err(invalid("must be a JSON object".into()));
    }
    let size = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > SPECS_MAX_BYTES {
        return Err(invalid(format!(
            "must be at most {SPECS_MAX_BYTES} bytes as JSON"
        )));
    }
    check_spec_value(value, "specs", 1)?;
    Ok(value.clone())
}

fn check_spec_value(value: &Value, path: &str, depth: usize) -> Result<(), FieldError> {
    if depth > SPECS_MAX_DEPTH {
        return Err(FieldError::new(
            path,
            format!("specs may be nested at most {SPECS_MAX_DEPTH} levels deep"),
        ));
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key_ok = !key.is_empty()
                    && key.chars().count() <= SPEC_KEY_MAX_CHARS
                    && !key.starts_with('$')
                    && !key.contains('.')
                    && !key.contains('\0');
                let child_path = format!("{path}.{key}");
                if !key_ok {
                    return Err(FieldError::new(
                        child_path,
                        "keys must be 1 to 64 characters without '.', NUL or a leading '$'",
                    ));
                }
                check_spec_value(child, &child_path, depth + 1)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_spec_value(item, &format!("{path}[{i}]"), depth + 1)),
        // Integers beyond i64 (and floats of that size, which is how serde reads integers
        // beyond u64) are refused: stored documents keep every number within i64's range,
        // as the API document says.
        Value::Number(number)
            if number.as_i64().is_none()
                && !number
                    .as_f64()
                    .is_some_and(|f| f > i64::MIN as f64 && f < i64::MAX as f64) =>
        {
            Err(FieldError::new(
                path,
                "numbers must be within the range of a signed 64-bit integer",
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(error: FieldError) -> String {
        error.field
    }

    #[test]
    fn skus_are_upper_cased_and_restricted() {
        assert_eq!(sku(" kt-100.b ").ok().as_deref(), Some("KT-100.B"));
        for bad in ["", "ab", "-AB1", "A B C", "ÄBC", &"X".repeat(65)] {
            assert!(sku(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn prices_are_positive_bounded_and_in_known_currencies() {
        let ok = Money {
            amount: 1999,
            currency: "EUR".into(),
        };
        assert!(price("price", &ok).is_ok());
        let Err(errors) = price(
            "price",
            &Money {
                amount: 0,
                currency: "eur".into(),
            },
        ) else {
            panic!("expected errors");
        };
        let fields: Vec<_> = errors.into_iter().map(field).collect();
        assert_eq!(fields, ["price.amount", "price.currency"]);
        let too_much = Money {
            amount: MAX_AMOUNT + 1,
            currency: "USD".into(),
        };
        assert!(price("price", &too_much).is_err());
    }

    #[test]
    fn categories_are_slugs() {
        assert_eq!(
            category("category", " Home-Kitchen ").ok().as_deref(),
            Some("home-kitchen")
        );
        assert!(category("category", "home kitchen").is_err());
        assert!(category("category", "").is_err());
    }

    #[test]
    fn tags_are_deduplicated_and_bounded() {
        let tags_in = vec!["Steel".to_owned(), " steel ".to_owned(), "blue".to_owned()];
        assert_eq!(
            tags(&tags_in).ok(),
            Some(vec!["Steel".into(), "blue".into()])
        );
        assert!(tags(&vec!["x".to_owned(); MAX_TAGS + 1]).is_err());
        assert_eq!(
            tags(&["ok".into(), " ".into()]).err().map(field).as_deref(),
            Some("tags[1]")
        );
    }

    #[test]
    fn specs_are_objects_with_safe_keys_bounded_depth_and_size() {
        assert!(specs(&json!({"a": {"b": [1, 2.5, "x", null, {"c": true}]}})).is_ok());
        assert!(specs(&json!([1])).is_err());
        assert_eq!(
            specs(&json!({"a": {"$where": 1}}))
                .err()
                .map(field)
                .as_deref(),
            Some("specs.a.$where")
        );
        assert!(specs(&json!({"a.b": 1})).is_err());
        assert!(specs(&json!({"n": u64::MAX})).is_err());
        // Found by contract fuzzing: below i64::MIN, serde reads a float, which was kept.
        let below: serde_json::Value = serde_json::from_str(r#"{"n": -9223372036854775809}"#)
            .unwrap_or_else(|_| json!({"n": 1e300}));
        assert!(specs(&below).is_err());
        assert!(specs(&json!({"n": i64::MIN, "m": i64::MAX, "f": -1.5e18})).is_ok());
        let mut deep = json!(1);
        for _ in 0..SPECS_MAX_DEPTH {
            deep = json!({ "d": deep });
        }
        assert!(specs(&deep).is_err());
        assert!(specs(&json!({"big": "x".repeat(SPECS_MAX_BYTES)})).is_err());
    }

    #[test]
    fn images_need_http_urls() {
        let good = ProductImage {
            url: "https://img.example.com/a.jpg".into(),
            alt: "front".into(),
        };
        assert!(images(std::slice::from_ref(&good)).is_ok());
        let bad = ProductImage {
            url: "javascript:alert(1)".into(),
            alt: String::new(),
        };
        assert_eq!(
            images(&[good, bad]).err().map(field).as_deref(),
            Some("images[1].url")
        );
    }

    #[test]
    fn names_are_required_and_descriptions_optional() {
        assert!(name("  ").is_err());
        assert_eq!(name(" Kettle ").ok().as_deref(), Some("Kettle"));
        assert!(description("").is_ok());
        assert!(description(&"x".repeat(DESCRIPTION_MAX_CHARS + 1)).is_err());
    }
}
