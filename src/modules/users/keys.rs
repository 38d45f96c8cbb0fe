//! The Ed25519 key that signs access tokens: loaded from a PKCS#8 PEM file, or generated there
//! (mode 0600) on first start, and published as a JWK set so any service can verify tokens.
//!
//! Rotation: retired keys (`auth.retired_signing_key_paths`) sign nothing but stay in the JWK
//! set, so the tokens they signed keep working until they expire.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::EncodingKey;
use sha2::{Digest, Sha256};

use crate::platform::auth::{ALGORITHM, Jwk, JwkSet};

/// The current signing key, its id and its public half, plus the retired keys' public halves.
/// Why the signing keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write signing key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path}: not an Ed25519 PKCS#8 key: {reason}")]
    NotAKey {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot generate a signing key: {0}")]
    Generate(String),
}

/// The token signing key and the retired keys still published for verification.
pub struct SigningKeys {
    encoding: EncodingKey,
    jwk: Jwk,
    retired: Vec<Jwk>,
}

impl SigningKeys {
    /// The current key (see [`SigningKeys::load_or_generate`]) and the retired ones, which must
    /// exist: a retired key that cannot be read would log everyone it signed for out.
    pub fn load(current: &Path, retired: &[PathBuf]) -> Result<Self, KeysError> {
        let mut keys = Self::load_or_generate(current)?;
        for path in retired {
            const WHAT: &str = "retired signing key";
            let pem = fs::read_to_string(path).map_err(|source| KeysError::Read {
                what: WHAT,
                path: path.clone(),
                source,
            })?;
            let old = Self::from_pem(&pem).map_err(|reason| KeysError::NotAKey {
                what: WHAT,
                path: path.clone(),
                reason,
            })?;
            if old.jwk.kid != keys.jwk.kid && keys.retired.iter().all(|k| k.kid != old.jwk.kid) {
                keys.retired.push(old.jwk);
            }
        }
        Ok(keys)
    }

    /// Reads the key at `path`, creating a new one (and its folder) when the file is missing.
    fn load_or_generate(path: &Path) -> Result<Self, KeysError> {
        const WHAT: &str = "signing key";
        let pem = match fs::read_to_string(path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pem = generate_pem().map_err(KeysError::Generate)?;
                write_private(path, &pem).map_err(|source| KeysError::Write {
                    path: path.to_owned(),
                    source,
                })?;
                tracing::info!(path = %path.display(), "generated a new token signing key");
                pem
            }
            Err(source) => {
                return Err(KeysError::Read {
                    what: WHAT,
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::from_pem(&pem).map_err(|reason| KeysError::NotAKey {
            what: WHAT,
            path: path.to_owned(),
            reason,
        })
    }

    /// A key from its PKCS#8 PEM text; the error says why it is not an Ed25519 key.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let signing = SigningKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())?;
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        Ok(Self {
            encoding,
            retired: Vec::new(),
            jwk: Jwk {
                kid: thumbprint(&x),
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x,
                alg: "EdDSA".into(),
                usage: "sig".into(),
            },
        })
    }

    /// The current key's id: its JWK thumbprint.
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The current key, for signing.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The header every access token carries: the pinned algorithm and the current `kid`.
    pub fn header(&self) -> jsonwebtoken::Header {
        let mut header = jsonwebtoken::Header::new(ALGORITHM);
        header.kid = Some(self.jwk.kid.clone());
        header
    }

    /// The public keys that verify tokens: the current one first, then the retired ones.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: std::iter::once(&self.jwk)
                .chain(&self.retired)
                .cloned()
                .collect(),
        }
    }
}

fn generate_pem() -> Result<String, String> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| format!("cannot encode a new signing key: {e}"))
}

/// The RFC 7638 JWK thumbprint: a key id derived from the key itself.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(pem.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::auth::{Claims, KeySetVerifier, Role};

    /// A member's claims, valid for a minute from now.
    fn member_claims() -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: uuid::Uuid::new_v4(),
            role: Role::Member,
            iss: "rsvp".into(),
            iat: now,
            exp: now + 60,
            jti: uuid::Uuid::new_v4(),
        }
    }

    #[test]
    fn a_generated_key_is_private_reloadable_and_verifies_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.pem");
        let keys = SigningKeys::load_or_generate(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = SigningKeys::load_or_generate(&path).unwrap();
        assert_eq!(keys.kid(), again.kid());

        let claims = member_claims();
        let token = jsonwebtoken::encode(&keys.header(), &claims, keys.encoding_key()).unwrap();
        let verifier = KeySetVerifier::new("rsvp", &keys.jwks()).unwrap();
        assert_eq!(verifier.verify_now(&token).unwrap().sub, claims.sub);
        assert!(
            KeySetVerifier::new("other", &keys.jwks())
                .unwrap()
                .verify_now(&token)
                .is_err()
        );

        // A token signed with HMAC over the public key must never pass.
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(keys.jwks().keys[0].x.as_bytes()),
        )
        .unwrap();
        assert!(verifier.verify_now(&forged).is_err());
    }

    #[test]
    fn retired_keys_verify_but_never_sign() {
        let dir = tempfile::tempdir().unwrap();
        let old_path = dir.path().join("old.pem");
        let old = SigningKeys::load_or_generate(&old_path).unwrap();
        let claims = member_claims();
        let old_token = jsonwebtoken::encode(&old.header(), &claims, old.encoding_key()).unwrap();

        let retired = vec![old_path.clone(), old_path];
        let keys = SigningKeys::load(&dir.path().join("new.pem"), &retired).unwrap();
        assert_ne!(keys.kid(), old.kid());
        let kids: Vec<String> = keys.jwks().keys.into_iter().map(|k| k.kid).collect();
        assert_eq!(
            kids,
            [keys.kid(), old.kid()],
            "current first, duplicates once"
        );
        let verifier = KeySetVerifier::new("rsvp", &keys.jwks()).unwrap();
        assert_eq!(verifier.verify_now(&old_token).unwrap().sub, claims.sub);

        let missing = SigningKeys::load(&dir.path().join("new.pem"), &[dir.path().join("gone")]);
        assert!(missing.is_err_and(|e| e.to_string().contains("gone")));
    }
}
