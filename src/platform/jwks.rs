//! Token verification in a service that does not hold the signing key (split build): the users
//! service's JWKS is fetched once, cached, and fetched again when a token names an unknown `kid`
//! (a key rotation), at most once per cool-down so garbage tokens can not flood the users service.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::sync::{Mutex, RwLock};

use super::{
    auth::{Claims, JwkSet, KeySetVerifier, TokenError, TokenVerifier},
    service_client::ServiceClient,
};

/// Bounds the fetches that tokens with made-up key ids can cause, and how long a token signed by
/// a key the users service just started using may be refused.
const REFRESH_COOL_DOWN: Duration = Duration::from_secs(2);

/// Verifies tokens with the users service's published keys, cached, refetched on a new `kid`.
pub struct JwksVerifier {
    issuer: String,
    users: Arc<ServiceClient>,
    keys: RwLock<Option<Arc<KeySetVerifier>>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl JwksVerifier {
    /// A verifier for tokens of `issuer`, fetching keys through `users`.
    pub fn new(issuer: String, users: Arc<ServiceClient>) -> Self {
        Self {
            issuer,
            users,
            keys: RwLock::new(None),
            last_fetch: Mutex::new(None),
        }
    }

    /// Fetches the key set unless one was fetched within the cool-down (or `force`).
    async fn refresh(&self, force: bool) -> Result<Arc<KeySetVerifier>, TokenError> {
        let mut last_fetch = self.last_fetch.lock().await;
        if let Some(keys) = self.keys.read().await.clone()
            && !force
            && last_fetch.is_some_and(|at| at.elapsed() < REFRESH_COOL_DOWN)
        {
            return Ok(keys);
        }
        let jwks: JwkSet = self
            .users
            .get_json("/.well-known/jwks.json")
            .await
            .map_err(|e| TokenError::KeysUnavailable(e.to_string()))?;
        let verifier = Arc::new(KeySetVerifier::new(&self.issuer, &jwks)?);
        *self.keys.write().await = Some(verifier.clone());
        *last_fetch = Some(Instant::now());
        tracing::info!(keys = jwks.keys.len(), "fetched the users service's JWKS");
        Ok(verifier)
    }
}

#[async_trait]
impl TokenVerifier for JwksVerifier {
    async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let cached = self.keys.read().await.clone();
        let keys = match cached {
            Some(keys) => keys,
            None => self.refresh(true).await?,
        };
        match keys.verify_now(token) {
            Err(TokenError::UnknownKey(_)) => self.refresh(false).await?.verify_now(token),
            other => other,
        }
    }
}
