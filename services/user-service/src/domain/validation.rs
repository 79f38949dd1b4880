//! Input rules. Each check returns the field's error so a request reports every bad field at
//! once.

use web::FieldError;

pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_CHARS: usize = 128;
pub const NAME_MAX_CHARS: usize = 100;
/// Locales messages can be written in.
pub const LOCALES: &[&str] = &["en", "zh-CN"];

/// A plausible e-mail address: one `@`, a non-empty local part, a dotted domain, no spaces.
/// Deliverability is proven by mail, not by a regular expression.
pub fn email(value: &str) -> Result<String, FieldError> {
    let value = value.trim();
    let invalid = || FieldError::new("email", "must be an e-mail address like name@example.com");
    // Control characters (NUL among them, which PostgreSQL refuses in text: a 500 before) are
    // never part of an address.
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !domain.contains('@');
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(invalid());
    }
    Ok(value.to_owned())
}

pub fn password(value: &str) -> Result<(), FieldError> {
    let chars = value.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        return Err(FieldError::new(
            "password",
            format!("must be at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    if chars > PASSWORD_MAX_CHARS {
        return Err(FieldError::new(
            "password",
            format!("must be at most {PASSWORD_MAX_CHARS} characters"),
        ));
    }
    Ok(())
}

pub fn name(value: &str) -> Result<String, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    if value.chars().count() > NAME_MAX_CHARS || value.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            format!("must be at most {NAME_MAX_CHARS} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

/// E.164: `+`, a country code not starting with 0, 8 to 15 digits in all.
pub fn phone(value: &str) -> Result<String, FieldError> {
    let compact: String = value.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = compact.strip_prefix('+').unwrap_or("");
    let valid = (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if valid {
        Ok(compact)
    } else {
        Err(FieldError::new(
            "phone",
            "must be an international number like +4915112345678",
        ))
    }
}

pub fn locale(value: &str) -> Result<String, FieldError> {
    LOCALES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(value))
        .map(|known| (*known).to_owned())
        .ok_or_else(|| FieldError::new("locale", format!("must be one of {}", LOCALES.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            email(" Ada@Example.com ").ok().as_deref(),
            Some("Ada@Example.com")
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@x.io",
            "a@.x.io",
            "a@x..io",
            "a@b@c.io",
            "a\u{0}b@x.io",
            "ada@exam\u{0}ple.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn passwords_have_bounds_in_characters_not_bytes() {
        assert!(password("short").is_err());
        assert!(password("correct horse battery").is_ok());
        assert!(password(&"密".repeat(12)).is_ok());
        assert!(password(&"x".repeat(129)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            name("  Ada Lovelace ").ok().as_deref(),
            Some("Ada Lovelace")
        );
        assert!(name("   ").is_err());
        assert!(name(&"x".repeat(101)).is_err());
        assert!(name("bad\u{0}name").is_err());
    }

    #[test]
    fn phones_are_e164() {
        assert_eq!(
            phone("+49 151 1234-5678").ok().as_deref(),
            Some("+4915112345678")
        );
        for bad in ["015112345678", "+0151123456", "+12", "+49abc12345678", ""] {
            assert!(phone(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn locales_are_normalised() {
        assert_eq!(locale("zh-cn").ok().as_deref(), Some("zh-CN"));
        assert!(locale("xx").is_err());
    }
}
