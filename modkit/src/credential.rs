//! The shared secret that internal calls carry and internal endpoints require.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The header carrying the service credential on internal calls.
pub const CREDENTIAL_HEADER: &str = "x-service-credential";

/// The service credential, shared by the processes of one deployment. Registered as app data
/// (`web::Data<Credential>`) where internal endpoints are served; its `Debug` never shows it.
#[derive(Clone)]
pub struct Credential(pub SecretString);

impl Credential {
    /// Whether `presented` is this credential (never when it is empty). Digests are compared,
    /// so the time taken says nothing about how much of the secret matched.
    pub fn accepts(&self, presented: &str) -> bool {
        let expected = self.0.expose_secret();
        !expected.is_empty()
            && Sha256::digest(expected.as_bytes()) == Sha256::digest(presented.as_bytes())
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}
