//! The language of an answer: `lang` if given, else the best supported language of
//! `Accept-Language`, else none (each product then shows its base text). Catalog texts exist in
//! Simplified Chinese (`zh-CN`) and English (`en`); a product has a base name and description in
//! one of them and optional translations (`translations` of the product snapshot).

use contracts::product::ProductSnapshot;
use web::FieldError;

/// The languages a product text can be in.
pub const SUPPORTED: [&str; 2] = ["en", "zh-CN"];

/// The supported tag `tag` names, if any: `zh`, `zh-cn`, `zh-Hans`, `zh-Hans-CN`, `zh-SG` are
/// Simplified Chinese; `en` and `en-*` are English.
pub fn supported(tag: &str) -> Option<&'static str> {
    let tag = tag.trim().to_ascii_lowercase();
    let primary = tag.split(['-', '_']).next().unwrap_or_default();
    match primary {
        "en" => Some("en"),
        // Traditional Chinese is not in the catalog; Simplified is closer than English.
        "zh" => Some("zh-CN"),
        _ => None,
    }
}

/// What a product shows a reader of `lang`: its translation into `lang` when it has one, else
/// its base texts (and no language). One rule for the product view, the key its kept JSON is
/// found under, and the name listings sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown<'p, 'l> {
    /// `lang` when the product has a translation into it.
    pub lang: Option<&'l str>,
    pub name: &'p str,
    pub description: &'p str,
}

/// [`Shown`] for `product` and `lang`.
pub fn shown<'p, 'l>(product: &'p ProductSnapshot, lang: Option<&'l str>) -> Shown<'p, 'l> {
    match lang.and_then(|lang| product.translations.get(lang).map(|t| (lang, t))) {
        Some((lang, t)) => Shown {
            lang: Some(lang),
            name: &t.name,
            description: &t.description,
        },
        None => Shown {
            lang: None,
            name: &product.name,
            description: &product.description,
        },
    }
}

/// `lang` from the query: absent is fine, an unsupported one is a 422 naming `lang`.
pub fn from_param(value: Option<&str>) -> Result<Option<&'static str>, FieldError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) if value.len() <= 35 => supported(value).map(Some).ok_or_else(refused),
        Some(_) => Err(refused()),
    }
}

fn refused() -> FieldError {
    FieldError::new("lang", "must be en or zh-CN")
}

/// The supported language the client prefers most in an `Accept-Language` header (highest
/// `q`, earliest on ties); `None` when it names none (or cannot be read: a header is a hint,
/// never a reason to refuse the request).
pub fn from_accept_language(header: &str) -> Option<&'static str> {
    let mut best: Option<(f32, &'static str)> = None;
    for item in header.split(',').take(32) {
        let mut parts = item.split(';');
        let Some(language) = parts.next().and_then(supported) else {
            continue;
        };
        let weight = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .filter(|q| q.is_finite())
            .unwrap_or(1.0);
        if weight > 0.0 && best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, language));
        }
    }
    best.map(|(_, language)| language)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lang_accepts_the_usual_spellings_of_both_languages() {
        for zh in ["zh", "zh-CN", "zh-cn", "zh-Hans", "zh_CN"] {
            assert_eq!(from_param(Some(zh)).ok(), Some(Some("zh-CN")), "{zh}");
        }
        assert_eq!(from_param(Some("en-GB")).ok(), Some(Some("en")));
        assert_eq!(from_param(None).ok(), Some(None));
        for bad in ["fr", "xx-YY", "😀", &"e".repeat(100)] {
            assert_eq!(
                from_param(Some(bad)).err().map(|e| e.field).as_deref(),
                Some("lang")
            );
        }
    }

    #[test]
    fn accept_language_picks_the_preferred_supported_language() {
        assert_eq!(
            from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Some("zh-CN")
        );
        assert_eq!(
            from_accept_language("fr-FR, en;q=0.5, zh;q=0.4"),
            Some("en")
        );
        assert_eq!(from_accept_language("en;q=0.2, zh-TW;q=0.9"), Some("zh-CN"));
        assert_eq!(from_accept_language("de, fr"), None);
        assert_eq!(from_accept_language("en;q=0"), None);
        assert_eq!(from_accept_language(";;;,,,q="), None);
    }
}
