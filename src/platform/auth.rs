//! Access-token verification, shared by every module: the claims, the roles, a verifier trait
//! (in-process keys in the monolith, a JWKS cache in a split service) and the `AuthUser`
//! extractor that makes a handler's signature say it needs a login.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    time::Duration,
};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ids::UserId, problem::Problem};

/// The only algorithm accepted: pinning it rules out `none` and HMAC-with-public-key tricks.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
}

impl Role {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }

    /// The role of a stored name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// A public signing key as published at `/.well-known/jwks.json` (RFC 8037 OKP key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub usage: String,
}

/// The published key set (`/.well-known/jwks.json`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// Why a token was refused. All of them answer 401; the reason goes to the logs only.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token signed with unknown key {0:?}")]
    UnknownKey(Option<String>),
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
    #[error("the token's account was deleted")]
    AccountDeleted,
}

/// Checks access tokens. Handlers never know where the public keys come from.
#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// The claims of a valid token, or why it is refused.
    async fn verify(&self, token: &str) -> Result<Claims, TokenError>;
}

/// Verifies against a fixed set of public keys (the monolith's own, in process).
pub struct KeySetVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl KeySetVerifier {
    /// A verifier for tokens of `issuer` signed by one of `jwks`.
    pub fn new(issuer: &str, jwks: &JwkSet) -> Result<Self, TokenError> {
        let keys = jwks
            .keys
            .iter()
            .map(|jwk| Ok((jwk.kid.clone(), DecodingKey::from_ed_components(&jwk.x)?)))
            .collect::<Result<_, TokenError>>()?;
        Ok(Self {
            keys,
            validation: validation(issuer),
        })
    }

    /// Verifies with the known keys; `UnknownKey` lets a caching verifier refresh and retry.
    pub fn verify_now(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token)?;
        let key = header
            .kid
            .as_ref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey(header.kid.clone()))?;
        Ok(jsonwebtoken::decode::<Claims>(token, key, &self.validation)?.claims)
    }
}

#[async_trait]
impl TokenVerifier for KeySetVerifier {
    async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_now(token)
    }
}

/// Accounts deleted while tokens issued to them may still be unexpired. Access tokens are
/// stateless, so each process remembers the deletions it learnt of (the users module as it
/// deletes, every other process from the broadcast of `user.deleted`) for one token lifetime,
/// and refuses their tokens without asking anyone per request. Memory is bounded by the
/// deletions of one lifetime.
///
/// A deletion in progress is refused too, from before its transaction commits: each one holds a
/// [`PendingDeletion`], counted, so a deletion that fails (or loses a race with another deletion
/// of the same account) takes back only its own mark, never another's.
pub struct DeletedAccounts {
    remember_for: chrono::Duration,
    marks: RwLock<Marks>,
}

#[derive(Default)]
struct Marks {
    deleted_at: HashMap<Uuid, DateTime<Utc>>,
    /// Deletions in progress per account.
    pending: HashMap<Uuid, u32>,
}

impl DeletedAccounts {
    /// Remembers each deletion for `access_ttl` plus the verifier's leeway and some clock skew.
    pub fn new(access_ttl: Duration) -> Self {
        let slack = Duration::from_secs(LEEWAY_SECS + 60);
        Self {
            remember_for: chrono::Duration::from_std(access_ttl + slack)
                .unwrap_or(chrono::Duration::MAX),
            marks: RwLock::default(),
        }
    }

    fn marks(&self) -> std::sync::RwLockWriteGuard<'_, Marks> {
        self.marks.write().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a deletion is remembered: one token lifetime, with the verifier's leeway and
    /// some clock skew.
    pub fn remembered_for(&self) -> Duration {
        self.remember_for.to_std().unwrap_or(Duration::MAX)
    }

    /// The earliest deletion that still matters: older ones have no unexpired token left.
    pub fn horizon(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_signed(self.remember_for)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Records a deletion, forgetting those past the horizon. Idempotent: learning a deletion
    /// twice (a redelivery, the broadcast and the cascade) keeps the earlier time.
    pub fn insert(&self, id: Uuid, deleted_at: DateTime<Utc>) {
        let horizon = self.horizon(Utc::now());
        let mut marks = self.marks();
        marks.deleted_at.retain(|_, at| *at >= horizon);
        if deleted_at >= horizon {
            let at = marks.deleted_at.entry(id).or_insert(deleted_at);
            *at = (*at).min(deleted_at);
        }
    }

    /// Records the deletions a module kept in its own table (`id`, when), skipping ids that do
    /// not parse; returns how many it read.
    pub fn insert_recorded(&self, rows: &[(String, chrono::NaiveDateTime)]) -> usize {
        for (id, at) in rows {
            if let Ok(id) = id.parse() {
                self.insert(id, at.and_utc());
            }
        }
        rows.len()
    }

    /// Refuses `id` while its deletion is in progress: until the returned mark is dropped, or
    /// for good once [`PendingDeletion::done`] says the deletion committed.
    pub fn begin(self: &Arc<Self>, id: Uuid) -> PendingDeletion {
        *self.marks().pending.entry(id).or_default() += 1;
        PendingDeletion {
            accounts: self.clone(),
            id,
        }
    }

    /// Whether `id`'s account was deleted within the last token lifetime, or is being deleted.
    pub fn contains(&self, id: Uuid) -> bool {
        let marks = self.marks.read().unwrap_or_else(|e| e.into_inner());
        marks.deleted_at.contains_key(&id) || marks.pending.contains_key(&id)
    }

    /// How many deletions are remembered.
    pub fn len(&self) -> usize {
        self.marks
            .read()
            .map(|m| m.deleted_at.len())
            .unwrap_or_default()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One deletion in progress (see [`DeletedAccounts::begin`]).
pub struct PendingDeletion {
    accounts: Arc<DeletedAccounts>,
    id: Uuid,
}

impl PendingDeletion {
    /// The deletion committed at `deleted_at`: the account stays refused.
    pub fn done(self, deleted_at: DateTime<Utc>) {
        self.accounts.insert(self.id, deleted_at);
    }
}

impl Drop for PendingDeletion {
    fn drop(&mut self) {
        let mut marks = self.accounts.marks();
        if let Some(count) = marks.pending.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                marks.pending.remove(&self.id);
            }
        }
    }
}

/// A verifier that refuses the tokens of [`DeletedAccounts`]; every process's verifier is one.
pub struct RefuseDeletedAccounts {
    inner: Arc<dyn TokenVerifier>,
    deleted: Arc<DeletedAccounts>,
}

impl RefuseDeletedAccounts {
    /// `inner`, refusing the tokens of `deleted` accounts.
    pub fn new(inner: Arc<dyn TokenVerifier>, deleted: Arc<DeletedAccounts>) -> Self {
        Self { inner, deleted }
    }
}

#[async_trait]
impl TokenVerifier for RefuseDeletedAccounts {
    async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = self.inner.verify(token).await?;
        if self.deleted.contains(claims.sub) {
            return Err(TokenError::AccountDeleted);
        }
        Ok(claims)
    }
}

/// A verifier that remembers the tokens it verified, so a client's every request does not pay
/// for a signature check (an Ed25519 verification costs more than the rest of a cached read).
/// An entry lives at most [`VERIFIED_TOKEN_TTL`] and never past the token's own expiry; only
/// accepted tokens are kept. Deletions are still checked on every request by
/// [`RefuseDeletedAccounts`] around it; a signing key withdrawn from the key set stops
/// accepting its tokens within the TTL.
pub struct RememberVerifiedTokens {
    inner: Arc<dyn TokenVerifier>,
    verified: moka::sync::Cache<Box<str>, Arc<Claims>>,
}

/// How long a verified token is taken on trust.
pub const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(60);

impl RememberVerifiedTokens {
    /// `inner`, remembering up to `capacity` verified tokens.
    pub fn new(inner: Arc<dyn TokenVerifier>, capacity: u64) -> Self {
        Self {
            inner,
            verified: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(VERIFIED_TOKEN_TTL)
                .build(),
        }
    }
}

#[async_trait]
impl TokenVerifier for RememberVerifiedTokens {
    async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let now = Utc::now().timestamp();
        if let Some(claims) = self.verified.get(token)
            && now <= claims.exp.saturating_add(LEEWAY_SECS as i64)
        {
            return Ok((*claims).clone());
        }
        let claims = self.inner.verify(token).await?;
        self.verified.insert(token.into(), Arc::new(claims.clone()));
        Ok(claims)
    }
}

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

/// The validation rules every verifier applies.
pub fn validation(issuer: &str) -> Validation {
    let mut validation = Validation::new(ALGORITHM);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.leeway = LEEWAY_SECS;
    validation
}

/// The caller of a request that carried a valid access token.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: UserId,
    pub role: Role,
}

impl AuthUser {
    /// Whether the caller has the admin role.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Problem::forbidden("this action needs the admin role"))
        }
    }
}

impl FromRequest for AuthUser {
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Problem>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<dyn TokenVerifier>>().cloned();
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            });
        Box::pin(async move {
            let token = token.ok_or_else(|| {
                Problem::unauthorized("an Authorization: Bearer access token is required")
            })?;
            let verifier: Arc<dyn TokenVerifier> = verifier
                .ok_or_else(|| {
                    tracing::error!("no token verifier registered");
                    Problem::internal()
                })?
                .into_inner();
            match verifier.verify(&token).await {
                Ok(claims) => Ok(AuthUser {
                    id: claims.sub.into(),
                    role: claims.role,
                }),
                Err(TokenError::KeysUnavailable(why)) => {
                    tracing::warn!(%why, "cannot verify token: keys unavailable");
                    Err(Problem::unavailable("token verification is unavailable", 5))
                }
                Err(TokenError::AccountDeleted) => Err(Problem::unauthorized(
                    "the account of this token was deleted",
                )),
                Err(err) => {
                    tracing::debug!(error = %err, "token refused");
                    Err(Problem::unauthorized(
                        "the access token is invalid or expired",
                    ))
                }
            }
        })
    }
}
