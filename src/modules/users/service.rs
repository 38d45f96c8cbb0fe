//! The users module's rules: accounts, passwords, token issuance and rotation, account deletion
//! with its `user.deleted` domain event. All database and bcrypt work runs off the async runtime.

use std::{num::NonZeroU32, sync::Arc};

use bytes::Bytes;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use uuid::Uuid;

use super::{
    AuthSettings, Contact, PROFILE_CHANGES, PublicProfile, TokenPair, USER_DELETED, User,
    UserDeleted, UsersApi, UsersApiError,
    domain::{Checker, DisplayName, Email, Password},
    error::UsersError,
    keys::SigningKeys,
    password_hash::{self, Verdict},
    store::{self, RefreshTokenRow, UserRow},
};
use crate::modules::notifications::{NotificationsApi, PasswordResetMail};
use crate::platform::{
    auth::{Claims, DeletedAccounts, Role},
    changes::{Change, ChangeListener, Changes, note},
    db::{Db, DbError, is_unique_violation, spawn_blocking_in_span},
    now,
    outbox::Outbox,
    pagination::{Page, PageRequest, into_page},
    read_cache::{CacheMetrics, CacheSettings, ReadCache},
    secret,
};
use modkit::{Apis, events::DomainEvent};

/// The in-process implementation of the users module.
pub struct UsersService {
    db: Db,
    keys: Arc<SigningKeys>,
    settings: AuthSettings,
    /// Where `user.deleted` is recorded, in the deletion's transaction.
    outbox: Outbox,
    /// Verified against when the email is unknown, so a login takes as long either way.
    dummy_hash: String,
    /// Deleted accounts whose access tokens this process refuses.
    deleted: Arc<DeletedAccounts>,
    /// Where renames and deletions are announced to the caches holding names.
    changes: Arc<Changes>,
    /// Each account's JSON as `GET /api/users/me` answers it: a hot read like an event's.
    profiles: Arc<ProfileCache>,
    /// The other modules' interfaces, asked when needed (the notifications module is stood up
    /// after this one).
    apis: Apis,
    /// The base of links in mail (`server.public_url`).
    public_url: String,
    /// Password checks per account (its id, or the email when no account has it), whichever
    /// address they come from: the gateway limits per address, this per target.
    attempts: Option<DefaultKeyedRateLimiter<String>>,
    /// Password-reset requests per email, whether or not an account has it: apart from the
    /// password checks, so a flood of resets neither locks the owner out of logging in nor
    /// tells (by a 429 on login) that the email has an account.
    reset_requests: Option<DefaultKeyedRateLimiter<String>>,
}

/// How long a password-reset link works.
const PASSWORD_RESET_MINUTES: i64 = 30;

/// Where this module records its domain events.
const OUTBOX: &str = "users_outbox";

/// Accounts whose attempts are remembered before idle ones are forgotten.
const ATTEMPTS_KEPT: usize = 10_000;

/// Fields a caller may change on their own account.
pub struct ProfileChange {
    pub name: Option<String>,
    pub password: Option<String>,
    pub current_password: String,
}

impl UsersService {
    /// Blocks (a bcrypt hash): call it off the async runtime.
    #[allow(clippy::too_many_arguments)] // each is a separate part of the process it runs in
    pub fn new(
        db: Db,
        keys: Arc<SigningKeys>,
        settings: AuthSettings,
        deleted: Arc<DeletedAccounts>,
        changes: Arc<Changes>,
        (cache, metrics): (&CacheSettings, &CacheMetrics),
        apis: Apis,
        public_url: String,
    ) -> Result<Self, bcrypt::BcryptError> {
        let profiles = Arc::new(ProfileCache(ReadCache::new(
            "user_profiles",
            cache,
            metrics,
        )));
        changes.listen(profiles.clone());
        let dummy_hash = password_hash::hash("not a real password", settings.bcrypt_cost)?;
        let attempts = NonZeroU32::new(settings.password_attempts_per_minute)
            .map(|rate| RateLimiter::keyed(Quota::per_minute(rate)));
        let reset_requests = NonZeroU32::new(settings.password_attempts_per_minute)
            .map(|rate| RateLimiter::keyed(Quota::per_minute(rate)));
        Ok(Self {
            attempts,
            reset_requests,
            outbox: Outbox::new(db.clone(), OUTBOX),
            db,
            keys,
            settings,
            dummy_hash,
            deleted,
            changes,
            profiles,
            apis,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    /// This module's outbox, for the process's relay.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Loads the deletions of the last token lifetime into [`DeletedAccounts`], so a restarted
    /// process goes on refusing their tokens.
    pub async fn recall_deleted_accounts(&self) -> Result<usize, UsersError> {
        let since = self.deleted.horizon(now());
        let rows = self
            .db
            .run(move |conn| store::deleted_since(conn, since).map_err(UsersError::from))
            .await?;
        Ok(self.deleted.insert_recorded(&rows))
    }

    /// The signing keys, for the process's token verifier.
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// Creates an account (a member); the email must be new.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: &str,
    ) -> Result<User, UsersError> {
        let mut checker = Checker::default();
        let email = checker.check(Email::parse(email));
        let password = checker.check(Password::parse("password", password));
        let name = checker.check(DisplayName::parse(name));
        let (Some(email), Some(password), Some(name)) = (email, password, name) else {
            return Err(UsersError::Validation(checker.0));
        };
        let password_hash = self.hash_password(&password).await?;
        let at = now().naive_utc();
        let row = UserRow {
            id: Uuid::now_v7().to_string(),
            email: email.as_str().to_owned(),
            name: name.into_inner(),
            password_hash,
            role: Role::Member.as_str().to_owned(),
            created_at: at,
            updated_at: at,
        };
        self.db
            .write(move |conn| match store::insert_user(conn, &row) {
                Ok(()) => Ok(row),
                Err(e) if is_unique_violation(&e) => Err(UsersError::EmailTaken),
                Err(e) => Err(e.into()),
            })
            .await
            .and_then(User::try_from)
    }

    /// A token pair for valid credentials; the same `401` for an unknown email or a wrong password.
    pub async fn login(&self, email: &str, password: &str) -> Result<TokenPair, UsersError> {
        // Malformed input fails exactly like a wrong password: no hint that an email exists.
        let email = Email::parse(email).map_err(|_| UsersError::InvalidCredentials)?;
        let lookup = email.as_str().to_owned();
        let user = self
            .db
            .run(move |conn| store::find_user_by_email(conn, &lookup).map_err(UsersError::from))
            .await?;
        match &user {
            Some(user) => self.count_attempt(&user.id)?,
            None => self.count_attempt(email.as_str())?,
        }
        let hash = user
            .as_ref()
            .map_or(self.dummy_hash.clone(), |u| u.password_hash.clone());
        let verdict = verify_password(password.to_owned(), hash).await?;
        match (user, verdict) {
            (Some(mut user), Verdict::Match { rehash }) => {
                if rehash {
                    user.password_hash = self.upgrade_password_hash(&user, password).await?;
                }
                self.open_session(&user).await
            }
            _ => Err(UsersError::InvalidCredentials),
        }
    }

    /// Starts a password reset for `email` and returns at once, whether or not an account has
    /// it: the lookup, the token and the mail happen after the answer, so the answer and its
    /// timing say nothing about the email.
    pub fn request_password_reset(self: &Arc<Self>, email: String) {
        let service = self.clone();
        tokio::spawn(async move {
            // The notifications module may be restarting: a few tries, then it is said.
            for attempt in 0..5u32 {
                match service.send_password_reset(&email).await {
                    Ok(()) => return,
                    Err(err) => {
                        tracing::warn!(error = %err, attempt, "password reset not sent yet")
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1 << attempt)).await;
            }
            tracing::error!("password reset not sent: the notifications module did not take it");
        });
    }

    async fn send_password_reset(&self, email: &str) -> Result<(), UsersError> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        if let Some(limit) = &self.reset_requests
            && limit.check_key(&email.as_str().to_owned()).is_err()
        {
            tracing::warn!("password reset refused: too many for this email");
            return Ok(());
        }
        let lookup = email.as_str().to_owned();
        let Some(user) = self
            .db
            .run(move |conn| store::find_user_by_email(conn, &lookup).map_err(UsersError::from))
            .await?
        else {
            return Ok(());
        };
        let user_id: Uuid = user
            .id
            .parse()
            .map_err(|e| UsersError::Internal(format!("user id: {e}")))?;
        let token = secret::new_secret();
        let token_hash = secret::digest(&token);
        let at = now();
        let expires_at = at + Duration::minutes(PASSWORD_RESET_MINUTES);
        self.db
            .write(move |conn| {
                store::insert_password_reset(conn, &token_hash, user_id, expires_at, at)
                    .map_err(UsersError::from)
            })
            .await?;
        let mail = PasswordResetMail {
            user_id,
            email: user.email.clone(),
            name: user.name.clone(),
            link: format!("{}/#/reset?token={token}", self.public_url),
            expires_at,
        };
        let notifications = self
            .apis
            .get::<dyn NotificationsApi>()
            .map_err(|e| UsersError::Internal(e.to_string()))?;
        notifications
            .send_password_reset(&mail)
            .await
            .map_err(|e| UsersError::Internal(e.to_string()))?;
        tracing::info!(user_id = %user_id, "password reset mail queued");
        Ok(())
    }

    /// Sets a new password with a reset token: single use, before it expires; every session of
    /// the account ends (its refresh tokens are revoked) and every other reset link dies.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        password: &str,
    ) -> Result<(), UsersError> {
        let password =
            Password::parse("password", password).map_err(|e| UsersError::Validation(vec![e]))?;
        let token_hash = secret::digest(token);
        let lookup = token_hash.clone();
        // Checked before the (costly) hashing, and again under the account's lock below; it
        // counts as a password attempt on the account (the gateway counts per address).
        let account = self
            .db
            .run(move |conn| {
                store::live_password_reset(conn, &lookup, now()).map_err(UsersError::from)
            })
            .await?
            .ok_or(UsersError::InvalidResetToken)?;
        self.count_attempt(&account)?;
        let new_hash = self.hash_password(&password).await?;
        self.db
            .write(move |conn| {
                let at = now();
                let user = store::live_password_reset(conn, &token_hash, at)?
                    .ok_or(UsersError::InvalidResetToken)?;
                let id: Uuid = user
                    .parse()
                    .map_err(|e| UsersError::Internal(format!("user id: {e}")))?;
                if !store::lock_user(conn, id)? {
                    return Err(UsersError::InvalidResetToken);
                }
                // Under the account's lock: of two uses of one token at once, one spends it
                // and the other finds it spent.
                if store::spend_password_reset(conn, &token_hash, at)? != 1 {
                    return Err(UsersError::InvalidResetToken);
                }
                store::spend_password_resets(conn, &user, at)?;
                store::set_password_hash(conn, id, &new_hash, at)?;
                store::revoke_all_of_user(conn, id, at)?;
                Ok(())
            })
            .await
    }

    /// Rewrites a former-kind hash (see [`password_hash`]) now that the password is known;
    /// returns the new hash.
    async fn upgrade_password_hash(
        &self,
        user: &UserRow,
        password: &str,
    ) -> Result<String, UsersError> {
        let cost = self.settings.bcrypt_cost;
        let password = password.to_owned();
        let upgraded =
            spawn_blocking_in_span(move || password_hash::hash(&password, cost)).await??;
        let (id, former, stored) = (
            user.id.clone(),
            user.password_hash.clone(),
            upgraded.clone(),
        );
        self.db
            .write(move |conn| {
                store::upgrade_password_hash(conn, &id, &former, &stored).map_err(UsersError::from)
            })
            .await?;
        tracing::info!(user_id = %user.id, "password hash upgraded to the full-length kind");
        Ok(upgraded)
    }

    /// Rotates a refresh token. A token presented twice revokes its whole family: whoever holds
    /// the other copy (the thief or the owner) has to log in again. Consuming the token and
    /// storing its successor are one transaction under the account's lock, so a revocation
    /// (password change, logout, reuse, deletion) either comes first and the token is refused,
    /// or comes after and revokes the successor too.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, UsersError> {
        let hash = hash_refresh_token(refresh_token);
        let (successor, mut successor_row) = self.new_refresh_token(now());
        let outcome = self
            .db
            .write(
                move |conn| -> Result<Result<UserRow, UsersError>, UsersError> {
                    let Some(token) = store::find_refresh_token(conn, &hash)? else {
                        return Ok(Err(UsersError::InvalidRefreshToken));
                    };
                    let user_id: Uuid = token.user_id.parse().map_err(|_| {
                        UsersError::Internal("refresh token with a malformed user id".into())
                    })?;
                    if !store::lock_user(conn, user_id)? {
                        return Ok(Err(UsersError::InvalidRefreshToken));
                    }
                    // Read again under the lock: a revocation that committed meanwhile shows now.
                    let Some(token) = store::find_refresh_token(conn, &hash)? else {
                        return Ok(Err(UsersError::InvalidRefreshToken));
                    };
                    let at = now();
                    if token.revoked_at.is_some() || token.used_at.is_some() {
                        store::revoke_family(conn, &token.family_id, at)?;
                        return Ok(Err(UsersError::RefreshTokenReused));
                    }
                    if token.expires_at < at.naive_utc() {
                        return Ok(Err(UsersError::InvalidRefreshToken));
                    }
                    if store::consume_refresh_token(conn, &hash, at)? == 0 {
                        store::revoke_family(conn, &token.family_id, at)?;
                        return Ok(Err(UsersError::RefreshTokenReused));
                    }
                    let Some(user) = store::find_user(conn, user_id)? else {
                        return Ok(Err(UsersError::InvalidRefreshToken));
                    };
                    successor_row.user_id = token.user_id;
                    successor_row.family_id = token.family_id;
                    store::insert_refresh_token(conn, &successor_row)?;
                    Ok(Ok(user))
                },
            )
            .await?;
        // The revocation above must commit, so the refusal is returned only after the write.
        match outcome {
            Ok(user) => self.token_pair(&user, successor),
            Err(UsersError::RefreshTokenReused) => {
                tracing::warn!("refresh token reuse detected; token family revoked");
                Err(UsersError::RefreshTokenReused)
            }
            Err(err) => Err(err),
        }
    }

    /// Ends the session the refresh token belongs to. Unknown tokens are ignored: logging out
    /// twice is not an error.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), UsersError> {
        let hash = hash_refresh_token(refresh_token);
        self.db
            .write(move |conn| {
                let Some(token) = store::find_refresh_token(conn, &hash)? else {
                    return Ok(());
                };
                // Under the account's lock, so a successor issued at this instant is revoked too.
                if let Ok(user_id) = token.user_id.parse()
                    && store::lock_user(conn, user_id)?
                {
                    store::revoke_family(conn, &token.family_id, now())?;
                }
                Ok(())
            })
            .await
    }

    /// The caller's account; a token outliving its account is refused as unauthenticated.
    pub async fn me(&self, id: Uuid) -> Result<User, UsersError> {
        self.find(id)
            .await?
            .map(User::try_from)
            .ok_or(UsersError::AccountGone)?
    }

    /// [`Self::me`] as the API answers it (JSON), from the cache while the account is unchanged
    /// (a rename or the deletion invalidates it, here and in every other instance; the
    /// `make-admin` command's new role shows within `cache.ttl_ms`).
    pub async fn me_json(&self, id: Uuid) -> Result<Bytes, UsersError> {
        if let Some(json) = self.profiles.0.get(&id) {
            return Ok(json);
        }
        let ticket = self.profiles.0.ticket(&id);
        let user = self.me(id).await?;
        let json = Bytes::from(serde_json::to_vec(&user).expect("a user always serializes"));
        self.profiles.0.fill(ticket, id, json.clone());
        Ok(json)
    }

    /// What anyone logged in may see of an account.
    pub async fn public_profile(&self, id: Uuid) -> Result<PublicProfile, UsersError> {
        let row = self.find(id).await?.ok_or(UsersError::NotFound)?;
        Ok(PublicProfile {
            id: row.id()?,
            name: row.name,
        })
    }

    /// Renames the account or changes its password, after checking the current one.
    pub async fn update_me(&self, id: Uuid, change: ProfileChange) -> Result<User, UsersError> {
        let mut checker = Checker::default();
        let name = change
            .name
            .as_deref()
            .map(|n| checker.check(DisplayName::parse(n)));
        let password = change
            .password
            .as_deref()
            .map(|p| checker.check(Password::parse("password", p)));
        if !checker.0.is_empty() {
            return Err(UsersError::Validation(checker.0));
        }
        let user = self.find(id).await?.ok_or(UsersError::AccountGone)?;
        self.check_current_password(&user, change.current_password)
            .await?;
        let new_hash = match password.flatten() {
            Some(p) => Some(self.hash_password(&p).await?),
            None => None,
        };
        let name = name.flatten().map(DisplayName::into_inner);
        let renamed = name.is_some();
        let user = self
            .db
            .write(move |conn| {
                let at = now();
                let password_changed = new_hash.is_some();
                if store::update_profile(conn, id, name, new_hash, at)? == 0 {
                    return Err(UsersError::AccountGone);
                }
                if password_changed {
                    store::revoke_all_of_user(conn, id, at)?;
                }
                store::find_user(conn, id)?
                    .map(User::try_from)
                    .ok_or(UsersError::AccountGone)?
            })
            .await?;
        if renamed {
            self.changes
                .announce(Change::item(PROFILE_CHANGES, id, false));
        }
        Ok(user)
    }

    /// Deletes the caller's own account after checking their password.
    pub async fn delete_me(&self, id: Uuid, current_password: String) -> Result<(), UsersError> {
        let user = self.find(id).await?.ok_or(UsersError::AccountGone)?;
        self.check_current_password(&user, current_password).await?;
        self.delete_account(id).await
    }

    /// Deletes an account and, in the same transaction, records `user.deleted` in the outbox.
    pub async fn delete_account(&self, id: Uuid) -> Result<(), UsersError> {
        // Refused from before the commit on, so no request acts for the account once it is gone
        // (the 204 included); the mark goes with this attempt if it fails, and only this one's.
        let pending = self.deleted.begin(id);
        let (changes, outbox, wake) = (
            self.changes.clone(),
            self.outbox.clone(),
            self.outbox.clone(),
        );
        self.db
            .write_then(
                move |conn| {
                    if !store::lock_user(conn, id)? {
                        return Err(UsersError::NotFound);
                    }
                    // Timed under the account's lock: no token is issued to it after this
                    // instant, so remembering the deletion one token lifetime from it suffices.
                    let at = now();
                    let event = DomainEvent {
                        id: Uuid::now_v7(),
                        topic: USER_DELETED.to_owned(),
                        payload: serde_json::to_value(UserDeleted { user_id: id })
                            .map_err(|e| UsersError::Internal(e.to_string()))?,
                        occurred_at: at,
                    };
                    store::delete_user(conn, id, at)?;
                    outbox.record(conn, &event)?;
                    Ok(at)
                },
                move |at| {
                    pending.done(*at);
                    changes.announce(Change::item(PROFILE_CHANGES, id, false));
                    wake.wake();
                },
            )
            .await?;
        // Announced on the database's thread, which is not this request's.
        note(&Change::item(PROFILE_CHANGES, id, false));
        tracing::info!(user_id = %id, "account deleted");
        Ok(())
    }

    /// A page of accounts, for admins; `email` narrows it to one.
    pub async fn list(
        &self,
        email: Option<String>,
        page: PageRequest,
    ) -> Result<Page<User>, UsersError> {
        // An email that can not be valid matches nobody; no need to ask the database.
        let email = match email {
            Some(raw) => match Email::parse(&raw) {
                Ok(e) => Some(e.as_str().to_owned()),
                Err(_) => {
                    return Ok(Page {
                        items: vec![],
                        next_cursor: None,
                    });
                }
            },
            None => None,
        };
        let rows = self
            .db
            .run(move |conn| {
                store::list_users(conn, email.as_deref(), page).map_err(UsersError::from)
            })
            .await?;
        let users = rows
            .into_iter()
            .map(User::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(into_page(users, page, store::cursor, |user| user))
    }

    /// Gives an existing account the admin role (the `make-admin` command).
    pub async fn promote_to_admin(&self, email: &str) -> Result<(), UsersError> {
        let email = Email::parse(email).map_err(|e| UsersError::Validation(vec![e]))?;
        let changed = self
            .db
            .write(move |conn| {
                store::set_role(conn, email.as_str(), Role::Admin).map_err(UsersError::from)
            })
            .await?;
        if changed == 0 {
            return Err(UsersError::NotFound);
        }
        // The command is a process of its own: a server already running shows the new role in
        // `/api/users/me` once its cached profile ages out (`cache.ttl_ms`), and grants it with
        // the account's next token (the role is a claim), as before.
        Ok(())
    }

    async fn find(&self, id: Uuid) -> Result<Option<UserRow>, UsersError> {
        self.db
            .run(move |conn| store::find_user(conn, id).map_err(UsersError::from))
            .await
    }

    /// Counts one password check against `account`'s limit.
    fn count_attempt(&self, account: &str) -> Result<(), UsersError> {
        let Some(attempts) = &self.attempts else {
            return Ok(());
        };
        if attempts.len() > ATTEMPTS_KEPT {
            attempts.retain_recent();
        }
        attempts
            .check_key(&account.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                UsersError::TooManyAttempts {
                    retry_after_secs: wait.as_secs() + 1,
                }
            })
    }

    async fn check_current_password(
        &self,
        user: &UserRow,
        password: String,
    ) -> Result<(), UsersError> {
        self.count_attempt(&user.id)?;
        match verify_password(password, user.password_hash.clone()).await? {
            Verdict::Match { .. } => Ok(()),
            Verdict::Mismatch => Err(UsersError::WrongCurrentPassword),
        }
    }

    async fn hash_password(&self, password: &Password) -> Result<String, UsersError> {
        let password = password.expose().to_owned();
        let cost = self.settings.bcrypt_cost;
        spawn_blocking_in_span(move || password_hash::hash(&password, cost))
            .await?
            .map_err(UsersError::from)
    }

    /// A new session (a token family) for `user`, whose password was just checked against the
    /// hash in `user`: unless the account was deleted, or its password changed, meanwhile.
    async fn open_session(&self, user: &UserRow) -> Result<TokenPair, UsersError> {
        let (refresh_token, mut row) = self.new_refresh_token(now());
        row.user_id = user.id.clone();
        row.family_id = Uuid::new_v4().to_string();
        let (id, checked) = (user.id()?, user.password_hash.clone());
        self.db
            .write(move |conn| {
                // The account's lock, on the hash that was checked: a deletion or password change
                // racing this login comes first (and the login is refused like a wrong password)
                // or after (and revokes this session).
                if !store::lock_user_with_hash(conn, id, &checked)? {
                    return Err(UsersError::InvalidCredentials);
                }
                store::insert_refresh_token(conn, &row).map_err(UsersError::from)
            })
            .await?;
        self.token_pair(user, refresh_token)
    }

    /// A fresh refresh token and its row, without owner or family yet.
    fn new_refresh_token(&self, at: DateTime<Utc>) -> (String, RefreshTokenRow) {
        let token = new_refresh_token();
        let row = RefreshTokenRow {
            token_hash: hash_refresh_token(&token),
            user_id: String::new(),
            family_id: String::new(),
            expires_at: (at + Duration::seconds(self.settings.refresh_ttl_secs as i64)).naive_utc(),
            created_at: at.naive_utc(),
            used_at: None,
            revoked_at: None,
        };
        (token, row)
    }

    /// The pair answered to `user`: a new access token beside the stored `refresh_token`.
    fn token_pair(&self, user: &UserRow, refresh_token: String) -> Result<TokenPair, UsersError> {
        let at = now();
        let claims = Claims {
            sub: user.id()?,
            role: user.role()?,
            iss: self.settings.issuer.clone(),
            iat: at.timestamp(),
            exp: at.timestamp() + self.settings.access_ttl_secs as i64,
            jti: Uuid::new_v4(),
        };
        let access_token =
            jsonwebtoken::encode(&self.keys.header(), &claims, self.keys.encoding_key())?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            token_type: "Bearer".to_owned(),
            expires_in: self.settings.access_ttl_secs,
        })
    }
}

#[async_trait]
impl UsersApi for UsersService {
    async fn public_profiles(&self, ids: &[Uuid]) -> Result<Vec<PublicProfile>, UsersApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        let rows = self
            .db
            .run(move |conn| store::find_names(conn, &ids).map_err(DbError::from))
            .await
            .map_err(|e| UsersApiError::Unavailable(e.to_string()))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, name)| {
                Some(PublicProfile {
                    id: id.parse().ok()?,
                    name,
                })
            })
            .collect())
    }

    async fn contacts(&self, ids: &[Uuid]) -> Result<Vec<Contact>, UsersApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        let rows = self
            .db
            .run(move |conn| store::find_contacts(conn, &ids).map_err(DbError::from))
            .await
            .map_err(|e| UsersApiError::Unavailable(e.to_string()))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, email, name)| {
                Some(Contact {
                    id: id.parse().ok()?,
                    email,
                    name,
                })
            })
            .collect())
    }
}

impl TryFrom<UserRow> for User {
    type Error = UsersError;

    fn try_from(row: UserRow) -> Result<Self, UsersError> {
        Ok(User {
            id: row.id()?,
            role: row.role()?,
            email: row.email,
            name: row.name,
            created_at: row.created_at.and_utc(),
        })
    }
}

async fn verify_password(password: String, hash: String) -> Result<Verdict, UsersError> {
    spawn_blocking_in_span(move || password_hash::verify(&password, &hash))
        .await?
        .map_err(UsersError::from)
}

/// A refresh token (see [`secret`]).
fn new_refresh_token() -> String {
    secret::new_secret()
}

fn hash_refresh_token(token: &str) -> String {
    secret::digest(token)
}

/// The accounts' JSON (`GET /api/users/me`), dropped on each change of one (a rename, a
/// deletion) or of all.
struct ProfileCache(ReadCache<Uuid, Bytes>);

impl ChangeListener for ProfileCache {
    fn apply(&self, change: &Change) {
        if let Some((id, _)) = change.of_kind(PROFILE_CHANGES) {
            self.0.invalidate(&id);
        } else if *change == Change::Everything {
            self.0.invalidate_all();
        }
    }
}
