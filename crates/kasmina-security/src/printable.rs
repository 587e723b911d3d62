//! Terminal-safe display of values that came from the wire (seed ids, command ids, reasons).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is a Unicode bidirectional formatting character: ALM (U+061C), LRM/RLM
/// (U+200E, U+200F), the embeddings and overrides LRE/RLE/PDF/LRO/RLO (U+202A–U+202E) and the
/// isolates LRI/RLI/FSI/PDI (U+2066–U+2069). They are not [`char::is_control`] characters, yet
/// they reorder the text around them on a terminal ("Trojan Source", CVE-2021-42574).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` made safe to print on a terminal or in a one-line log: every control character
/// ([`char::is_control`]: C0, DEL, C1), bidirectional formatting character
/// ([`is_bidi_control`]) and line or paragraph separator (U+2028, U+2029) is written as
/// `\u{…}` (lowercase hex, as Rust's `escape_debug` writes it). Any other text, backslashes
/// included, is kept as is; a string with nothing to escape is returned borrowed.
///
/// ```
/// use kasmina_security::printable;
/// assert_eq!(printable("seed-1"), "seed-1");
/// assert_eq!(printable("seed\u{202E}1-dees"), "seed\\u{202e}1-dees");
/// assert_eq!(printable("a\nb"), "a\\u{a}b");
/// ```
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["", "seed-1", "BP001", "köln ü 日本 \\u{202e}", "tab-free text with spaces"] {
            assert!(matches!(printable(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn control_bidi_and_separator_characters_are_escaped() {
        let cases = [
            ("a\u{202E}b", "a\\u{202e}b"),
            ("\u{200E}\u{200F}", "\\u{200e}\\u{200f}"),
            ("\u{202A}\u{202B}\u{202C}\u{202D}", "\\u{202a}\\u{202b}\\u{202c}\\u{202d}"),
            ("\u{2066}x\u{2067}\u{2068}\u{2069}", "\\u{2066}x\\u{2067}\\u{2068}\\u{2069}"),
            ("\u{061C}", "\\u{61c}"),
            ("a\nb\rc\td\u{0}", "a\\u{a}b\\u{d}c\\u{9}d\\u{0}"),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("\u{7f}\u{85}\u{9b}", "\\u{7f}\\u{85}\\u{9b}"),
            ("line\u{2028}para\u{2029}", "line\\u{2028}para\\u{2029}"),
        ];
        for (raw, escaped) in cases {
            assert_eq!(printable(raw), escaped, "{raw:?}");
            assert!(matches!(printable(raw), Cow::Owned(_)));
        }
    }

    #[test]
    fn every_escaped_character_is_a_control_or_bidi_character() {
        for c in (0..=0x3000u32).filter_map(char::from_u32) {
            let text = c.to_string();
            let escaped = !matches!(printable(&text), Cow::Borrowed(_));
            let expected = c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}');
            assert_eq!(escaped, expected, "U+{:04X}", u32::from(c));
        }
        assert!(!is_bidi_control('a') && !is_bidi_control('\u{202F}') && !is_bidi_control('\u{2065}'));
    }
}
