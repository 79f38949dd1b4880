//! The search text as users send it: bounded, and reduced to something worth searching.
//!
//! Text is refused (422) only when it is longer than [`MAX_QUERY_CHARS`]: any script, emoji or
//! punctuation is accepted and simply finds nothing when no word is left. The index
//! (`crate::catalog::text`) splits words; this module bounds how much work one query may ask for.

/// The longest search text accepted; longer input is refused rather than silently cut.
pub const MAX_QUERY_CHARS: usize = 200;

/// Words of one query that are searched; the rest are ignored (a query's cost grows with its
/// words, and no shopper types more).
pub const MAX_QUERY_WORDS: usize = 12;

/// The longest prefix `suggest` completes.
pub const MAX_SUGGEST_CHARS: usize = 50;

/// The search text, if the request has one: trimmed, empty counts as absent.
pub fn text(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|q| !q.is_empty())
}

/// Whether `text` has anything a word can be made of (letters or digits in any script).
pub fn has_words(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_text_is_no_search() {
        assert_eq!(text(None), None);
        assert_eq!(text(Some("   ")), None);
        assert_eq!(text(Some(" 耳机 ")), Some("耳机"));
    }

    #[test]
    fn punctuation_and_emoji_have_no_words() {
        assert!(!has_words("?!.,;:()[]"));
        assert!(!has_words("😀🎧"));
        assert!(has_words("耳机"));
        assert!(has_words("usb-c"));
    }
}
