//! Password hashes. bcrypt reads at most 72 bytes of its input, so on its own two passwords that
//! share their first 72 bytes would both log in. rsvp hashes the SHA-256 digest of the whole
//! password (base64, 44 bytes) with bcrypt instead, and marks such hashes with [`PREFIX`].
//!
//! Migration: hashes written before (plain bcrypt, `$2b$…`) still verify, and the first
//! successful login replaces them with a prefixed one; from then on the whole password counts.

use base64::{Engine, engine::general_purpose::STANDARD};
use bcrypt::BcryptError;
use sha2::{Digest, Sha256};

/// Marks a bcrypt hash of the password's SHA-256 digest.
pub const PREFIX: &str = "$sha256";

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password matches; `rehash` when the stored hash is of the former, truncating kind.
    Match {
        rehash: bool,
    },
    Mismatch,
}

/// The whole password, reduced to 44 bytes bcrypt reads in full.
fn digest(password: &str) -> String {
    STANDARD.encode(Sha256::digest(password.as_bytes()))
}

/// A new hash of `password` at bcrypt `cost`.
pub fn hash(password: &str, cost: u32) -> Result<String, BcryptError> {
    Ok(format!("{PREFIX}{}", bcrypt::hash(digest(password), cost)?))
}

/// Checks `password` against a stored hash of either kind.
pub fn verify(password: &str, stored: &str) -> Result<Verdict, BcryptError> {
    let (matches, rehash) = match stored.strip_prefix(PREFIX) {
        Some(bcrypt_hash) => (bcrypt::verify(digest(password), bcrypt_hash)?, false),
        None => (bcrypt::verify(password, stored)?, true),
    };
    Ok(if matches {
        Verdict::Match { rehash }
    } else {
        Verdict::Mismatch
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_differing_after_72_bytes_do_not_match() {
        let long = "A".repeat(72);
        let stored = hash(&format!("{long}-one"), 4).unwrap();
        assert!(stored.starts_with(PREFIX));
        assert_eq!(
            verify(&format!("{long}-one"), &stored).unwrap(),
            Verdict::Match { rehash: false }
        );
        assert_eq!(
            verify(&format!("{long}-two"), &stored).unwrap(),
            Verdict::Mismatch
        );
        assert_eq!(verify(&long, &stored).unwrap(), Verdict::Mismatch);
    }

    #[test]
    fn former_hashes_verify_and_ask_to_be_replaced() {
        let legacy = bcrypt::hash("correct horse", 4).unwrap();
        assert_eq!(
            verify("correct horse", &legacy).unwrap(),
            Verdict::Match { rehash: true }
        );
        assert_eq!(verify("wrong horse", &legacy).unwrap(), Verdict::Mismatch);
    }
}
