//! The Ed25519 key that signs access tokens: loaded from a PKCS#8 PEM file, or generated there
//! (mode 0600) on first start, and published as a JWK set so any service can verify tokens.

use std::{fs, io::Write, path::Path};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::EncodingKey;
use sha2::{Digest, Sha256};

use crate::platform::auth::{ALGORITHM, Jwk, JwkSet};

/// The current signing key, its id and its public half.
pub struct SigningKeys {
    encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKeys {
    /// Reads the key at `path`, creating a new one (and its folder) when the file is missing.
    pub fn load_or_generate(path: &Path) -> Result<Self, String> {
        let pem = match fs::read_to_string(path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pem = generate_pem()?;
                write_private(path, &pem)
                    .map_err(|e| format!("cannot write signing key {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "generated a new token signing key");
                pem
            }
            Err(e) => return Err(format!("cannot read signing key {}: {e}", path.display())),
        };
        Self::from_pem(&pem).map_err(|e| format!("signing key {}: {e}", path.display()))
    }

    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let signing = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        Ok(Self {
            encoding,
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

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn header(&self) -> jsonwebtoken::Header {
        let mut header = jsonwebtoken::Header::new(ALGORITHM);
        header.kid = Some(self.jwk.kid.clone());
        header
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
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

        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: uuid::Uuid::new_v4(),
            role: Role::Member,
            iss: "rsvp".into(),
            iat: now,
            exp: now + 60,
            jti: uuid::Uuid::new_v4(),
        };
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
}
