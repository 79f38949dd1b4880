//! Turning a user's search text into a safe, case-insensitive substring pattern.

/// The longest search text accepted; longer input is refused rather than silently cut.
pub const MAX_QUERY_CHARS: usize = 100;

/// A regular expression matching `text` literally: every metacharacter is escaped, so input
/// like `.*` or `(` is searched for as typed and can neither break the query nor turn into an
/// expensive pattern.
pub fn literal_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '.'
                | '+'
                | '*'
                | '?'
                | '('
                | ')'
                | '|'
                | '['
                | ']'
                | '{'
                | '}'
                | '^'
                | '$'
                | '#'
                | '-'
                | ' '
        ) {
            // `#` and space matter only in extended mode; escaping them keeps the pattern
            // literal whatever options a server applies.
            if c == ' ' {
                pattern.push_str("\\x20");
                continue;
            }
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metacharacters_are_escaped() {
        assert_eq!(literal_pattern("a.b*"), r"a\.b\*");
        assert_eq!(literal_pattern("(x|y)"), r"\(x\|y\)");
        assert_eq!(literal_pattern(r"c:\dir"), r"c:\\dir");
        assert_eq!(literal_pattern("^$[]{}?+-#"), r"\^\$\[\]\{\}\?\+\-\#");
        assert_eq!(literal_pattern("usb c"), r"usb\x20c");
    }

    #[test]
    fn plain_text_and_unicode_pass_through() {
        assert_eq!(literal_pattern("Kettle"), "Kettle");
        assert_eq!(literal_pattern("茶壶"), "茶壶");
    }
}
