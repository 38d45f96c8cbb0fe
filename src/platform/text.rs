//! The one rule for text a client sends: no control characters (U+0000–U+001F, U+007F), except
//! line feeds and tabs where a field is multi-line. Checked before any database sees the text,
//! so SQLite (which stores a NUL) and PostgreSQL (which refuses one) give the same answer.

use super::problem::FieldError;

/// Whether a field may span lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    Single,
    /// Line feeds and tabs allowed (descriptions).
    Multi,
}

/// The first control character `value` may not contain, if any.
fn forbidden_control(value: &str, lines: Lines) -> Option<char> {
    value
        .chars()
        .find(|&c| c.is_ascii_control() && !(lines == Lines::Multi && matches!(c, '\n' | '\t')))
}

/// Refuses a text field holding a control character, naming the field.
pub fn check_text(field: &str, value: &str, lines: Lines) -> Result<(), FieldError> {
    match forbidden_control(value, lines) {
        None => Ok(()),
        Some(_) if lines == Lines::Multi => Err(FieldError::new(
            field,
            "must not contain control characters other than line feeds and tabs",
        )),
        Some(_) => Err(FieldError::new(
            field,
            "must not contain control characters",
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
        for fine in ["Rust meetup", "Café 🎉", "a\u{85}b", ""] {
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
