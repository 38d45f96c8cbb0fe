//! The users module's input rules, as parsed newtypes: once a value exists, it is valid.

use icu_normalizer::ComposingNormalizerBorrowed;

use crate::platform::{
    problem::FieldError,
    text::{Lines, check_text},
};

/// An email address in the one spelling that stands for all that look the same: trimmed,
/// Unicode-normalised (NFKC: full-width and compatibility forms become their plain letters), the
/// local part case-folded, the domain in its ASCII (IDNA) form. Invisible and direction-changing
/// characters are refused rather than dropped: an address holding one was never typed by its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let invalid = || FieldError::new("email", "must be a valid email address");
        let trimmed = raw.trim();
        check_text("email", trimmed, Lines::Single)?;
        let normalized = ComposingNormalizerBorrowed::new_nfkc().normalize(trimmed);
        let (local, domain) = normalized.split_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || domain.contains('@')
            || normalized
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let local = fold_case(local);
        let domain = idna::domain_to_ascii(domain).map_err(|_| invalid())?;
        let domain_ok = !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.contains('.')
            && !domain.contains("..");
        if !domain_ok {
            return Err(invalid());
        }
        let email = format!("{local}@{domain}");
        if email.len() > 254 {
            return Err(FieldError::new("email", "must be at most 254 characters"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Unicode case folding, as lower(upper(text)) letter by letter: unlike `to_lowercase` it makes
/// a final sigma and a sigma, or `ß` and `ss`, one spelling, and it does not depend on where in
/// the word a letter stands. NFKC again afterwards, since case mapping may decompose.
fn fold_case(text: &str) -> String {
    let folded: String = text
        .chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect();
    ComposingNormalizerBorrowed::new_nfkc()
        .normalize(&folded)
        .into_owned()
}

/// A password of 8..128 characters, kept only until it is hashed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let len = raw.chars().count();
        if !(8..=128).contains(&len) {
            return Err(FieldError::new(field, "must be 8 to 128 characters"));
        }
        // Hashes of the former kind (plain bcrypt) stop at a NUL; no new password has one.
        if raw.contains('\0') {
            return Err(FieldError::new(field, "must not contain NUL characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name of 1..100 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        let len = name.chars().count();
        if !(1..=100).contains(&len) {
            return Err(FieldError::new(
                "name",
                "must be 1 to 100 characters after trimming",
            ));
        }
        check_text("name", name, Lines::Single)?;
        Ok(Self(name.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Collects every field error of a request instead of stopping at the first.
#[derive(Default)]
pub struct Checker(pub Vec<FieldError>);

impl Checker {
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_that_look_the_same_are_one_spelling() {
        let same = |a: &str, b: &str| {
            assert_eq!(
                Email::parse(a).unwrap().as_str(),
                Email::parse(b).unwrap().as_str(),
                "{a} / {b}"
            );
        };
        // Width, compatibility forms and case, in the local part and the domain.
        same("ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ", "ada@example.com");
        same("ADA@EXAMPLE.COM", "ada@example.com");
        same("ΟΔΥΣΣΕΥΣ@example.com", "οδυσσευς@example.com");
        same("STRASSE@example.com", "straße@example.com");
        same("ﬁle@example.com", "file@example.com");
        // A composed letter and its decomposition.
        same("jose\u{301}@example.com", "josé@example.com");
        // The domain in its ASCII form, however it was typed.
        same("ada@BÜCHER.de", "ada@xn--bcher-kva.de");
        same("ada@bücher.de", "ADA@XN--BCHER-KVA.DE");
        assert_eq!(
            Email::parse("ada@bücher.de").unwrap().as_str(),
            "ada@xn--bcher-kva.de"
        );
    }

    #[test]
    fn invisible_characters_in_emails_are_refused() {
        for hidden in [
            "ada\u{200b}@example.com",
            "ada@exa\u{200d}mple.com",
            "\u{202e}ada@example.com",
            "ada@example.com\u{2066}",
            "ada\u{85}@example.com",
        ] {
            let refused = Email::parse(hidden).unwrap_err();
            assert_eq!(refused.field, "email", "{hidden:?}");
        }
    }

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a b@example.com",
            "a@b@c.de",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_are_8_to_128_characters() {
        assert!(Password::parse("password", "1234567").is_err());
        assert!(Password::parse("password", "12345678").is_ok());
        assert!(Password::parse("password", &"é".repeat(128)).is_ok());
        assert!(Password::parse("password", &"x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("p", "secret-secret").unwrap()),
            "Password(..)"
        );
    }

    #[test]
    fn emails_are_at_most_254_characters() {
        let at = |local: usize| format!("{}@example.com", "a".repeat(local));
        assert!(Email::parse(&at(254 - 12)).is_ok());
        let too_long = Email::parse(&at(255 - 12)).unwrap_err();
        assert_eq!(too_long.message, "must be at most 254 characters");
        assert!(Email::parse("ada@exa..mple.com").is_err());
        assert!(Email::parse("ada@example.com.").is_err());
        assert!(Email::parse("a\u{7}@example.com").is_err());
    }

    #[test]
    fn passwords_are_kept_as_given_and_refuse_nul() {
        let password = Password::parse("password", " spaced out ").unwrap();
        assert_eq!(password.expose(), " spaced out ");
        let nul = Password::parse("new_password", "pass\0word").unwrap_err();
        assert_eq!(nul.field, "new_password");
        assert_eq!(
            Password::parse("current", "short").unwrap_err().field,
            "current"
        );
    }

    #[test]
    fn a_checker_collects_every_error_and_keeps_the_values() {
        let mut checker = Checker::default();
        assert_eq!(checker.check(Ok::<_, FieldError>(7)), Some(7));
        assert_eq!(checker.check(Email::parse("nope")), None);
        assert_eq!(checker.check(DisplayName::parse("")), None);
        let fields: Vec<&str> = checker.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "name"]);
    }

    #[test]
    fn names_are_1_to_100_characters_after_trimming() {
        assert!(DisplayName::parse("esc\u{1b}").is_err());
        assert_eq!(
            DisplayName::parse(&"é".repeat(100))
                .unwrap()
                .into_inner()
                .chars()
                .count(),
            100
        );
        assert_eq!(DisplayName::parse("  Ada ").unwrap().into_inner(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"n".repeat(100)).is_ok());
        assert!(DisplayName::parse(&"n".repeat(101)).is_err());
    }
}
