//! Token verification in a service that does not hold the signing key (split build): the users
//! service's JWKS is fetched once, cached, and fetched again when a token names an unknown `kid`
//! (a key rotation), at most once per cool-down so garbage tokens can not flood the users service.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::sync::{Mutex, RwLock};

use super::auth::{Claims, JwkSet, KeySetVerifier, TokenError, TokenVerifier};

/// Bounds the fetches that tokens with made-up key ids can cause, and how long a token signed by
/// a key the users service just started using may be refused.
const REFRESH_COOL_DOWN: Duration = Duration::from_secs(2);

/// Verifies tokens with the users service's published keys, cached, refetched on a new `kid`.
pub struct JwksVerifier(Arc<KeySet>);

/// The cached key set and how to fetch it; shared with the fetch in flight.
struct KeySet {
    issuer: String,
    users: Arc<modkit::Remote>,
    keys: RwLock<Option<Arc<KeySetVerifier>>>,
    /// When the key set was last asked for, whether the users service answered or not. Held
    /// while a fetch is in flight, so callers meanwhile wait for its result.
    last_attempt: Mutex<Option<Instant>>,
}

impl JwksVerifier {
    /// A verifier for tokens of `issuer`, fetching keys through `users`.
    pub fn new(issuer: String, users: Arc<modkit::Remote>) -> Self {
        Self(Arc::new(KeySet {
            issuer,
            users,
            keys: RwLock::new(None),
            last_attempt: Mutex::new(None),
        }))
    }

    /// The key set as freshly as the cool-down allows. The fetch runs as a task of its own: a
    /// request dropped meanwhile (actix drops a handler's other extractors when one refuses the
    /// request, a client goes away) no longer takes the fetch with it, which left the cool-down
    /// started, no keys, and every request of the next two seconds a 503.
    async fn fetch(&self) -> Result<Arc<KeySetVerifier>, TokenError> {
        let keys = self.0.clone();
        tokio::spawn(async move { keys.fetch().await })
            .await
            .map_err(|e| TokenError::KeysUnavailable(format!("the key set fetch stopped: {e}")))?
    }
}

impl KeySet {
    /// Fetched now, or, when any request asked within the cool-down (successfully or not),
    /// whatever that left. A users service that is down is asked once per cool-down, not once
    /// per request.
    async fn fetch(&self) -> Result<Arc<KeySetVerifier>, TokenError> {
        let mut last_attempt = self.last_attempt.lock().await;
        if last_attempt.is_some_and(|at| at.elapsed() < REFRESH_COOL_DOWN) {
            return self.keys.read().await.clone().ok_or_else(|| {
                TokenError::KeysUnavailable("the key set could not be fetched just now".into())
            });
        }
        *last_attempt = Some(Instant::now());
        let jwks: JwkSet = self
            .users
            .get_json("/.well-known/jwks.json")
            .await
            .map_err(|e| TokenError::KeysUnavailable(e.to_string()))?;
        let verifier = Arc::new(KeySetVerifier::new(&self.issuer, &jwks)?);
        *self.keys.write().await = Some(verifier.clone());
        tracing::info!(keys = jwks.keys.len(), "fetched the users service's JWKS");
        Ok(verifier)
    }
}

#[async_trait]
impl TokenVerifier for JwksVerifier {
    async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let cached = self.0.keys.read().await.clone();
        let keys = match cached {
            Some(keys) => keys,
            None => self.fetch().await?,
        };
        match keys.verify_now(token) {
            Err(TokenError::UnknownKey(kid)) => match self.fetch().await {
                Ok(fresh) => fresh.verify_now(token),
                // The keys are known, only not this one: the token is refused (401) whether or
                // not the users service answers now; "unavailable" would blame an outage.
                Err(err) => {
                    tracing::debug!(error = %err, "key set not refetched for an unknown kid");
                    Err(TokenError::UnknownKey(kid))
                }
            },
            other => other,
        }
    }
}
