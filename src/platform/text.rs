//! The one rule for text a client sends: no control characters (U+0000–U+001F, U+007F), except
//! line feeds and tabs where a field is multi-line. Checked before any database sees the text,
//! so SQLite (which stores a NUL) and PostgreSQL (which refuses one) give the same answer.
//! Single-line fields (emails, names, titles, locations, categories) also refuse what shows as
//! nothing or rearranges what follows it: C1 controls (U+0080–U+009F), zero-width characters and
//! direction marks (U+200B–U+200F), direction embeddings and overrides (U+202A–U+202E) and
//! isolates (U+2066–U+2069). Two names that look the same are then the same text, and a title
//! can not make the text after it read backwards.

use super::problem::FieldError;

/// Whether a field may span lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    Single,
    /// Line feeds and tabs allowed (descriptions).
    Multi,
}

/// Whether `c` is invisible or changes the direction of the text around it.
pub fn is_invisible_or_directional(c: char) -> bool {
    matches!(c, '\u{80}'..='\u{9f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The first character `value` may not contain, if any.
fn forbidden_control(value: &str, lines: Lines) -> Option<char> {
    value.chars().find(|&c| match lines {
        Lines::Single => c.is_ascii_control() || is_invisible_or_directional(c),
        Lines::Multi => c.is_ascii_control() && !matches!(c, '\n' | '\t'),
    })
}

/// Refuses a text field holding a control character, naming the field.
pub fn check_text(field: &str, value: &str, lines: Lines) -> Result<(), FieldError> {
    match forbidden_control(value, lines) {
        None => Ok(()),
        Some(_) if lines == Lines::Multi => Err(FieldError::new(
            field,
            "must not contain control characters other than line feeds and tabs",
        )),
        Some(c) if c.is_ascii_control() => Err(FieldError::new(
            field,
            "must not contain control characters",
        )),
        Some(c) => Err(FieldError::new(
            field,
            format!(
                "must not contain invisible or direction-changing characters (U+{:04X})",
                u32::from(c)
            ),
        )),
    }
}

/// Whether a query parameter's text is free of control characters (else the caller's `400`).
pub fn is_clean_parameter(value: &str) -> bool {
    forbidden_control(value, Lines::Single).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_except_line_breaks_where_allowed() {
        for bad in ["a\0b", "\u{1b}[31m", "bell\u{7}", "del\u{7f}", "cr\r"] {
            assert!(check_text("title", bad, Lines::Single).is_err(), "{bad:?}");
            assert!(
                check_text("description", bad, Lines::Multi).is_err(),
                "{bad:?}"
            );
            assert!(!is_clean_parameter(bad), "{bad:?}");
        }
        for multi in ["two\nlines", "a\tb"] {
            assert!(
                check_text("title", multi, Lines::Single).is_err(),
                "{multi:?}"
            );
            assert!(
                check_text("description", multi, Lines::Multi).is_ok(),
                "{multi:?}"
            );
        }
        for invisible in [
            "a\u{85}b",
            "zero\u{200b}width",
            "\u{200f}rtl mark",
            "evil\u{202e}txt.exe",
            "\u{2066}isolate\u{2069}",
            "c1\u{9f}",
        ] {
            let refused = check_text("title", invisible, Lines::Single).unwrap_err();
            assert!(refused.message.contains("invisible"), "{invisible:?}");
            assert!(!is_clean_parameter(invisible), "{invisible:?}");
            // Descriptions are prose in any script: only control characters are refused there.
            assert!(
                check_text("description", invisible, Lines::Multi).is_ok(),
                "{invisible:?}"
            );
        }
        for fine in [
            "Rust meetup",
            "Café 🎉",
            "עברית and English",
            "\u{200a}hair space",
            "",
        ] {
            assert!(check_text("title", fine, Lines::Single).is_ok(), "{fine:?}");
            assert!(is_clean_parameter(fine), "{fine:?}");
        }
        assert_eq!(
            check_text("location", "x\0", Lines::Single)
                .unwrap_err()
                .field,
            "location"
        );
    }
}
