//! The users module: accounts, passwords, signing keys, access and refresh tokens.
//!
//! Public interface: the [`UsersApi`] trait other modules call, its DTOs, the `user.deleted`
//! domain event, the routes ([`configure`]) and the migrations. Everything else is private.

mod domain;
mod error;
mod handlers;
mod keys;
mod module;
mod password_hash;
mod schema;
mod service;
mod store;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use error::UsersError;
pub use handlers::{ApiDoc, configure};
pub use keys::{KeysError, SigningKeys};
pub use module::{MODULE, service};
pub use service::UsersService;

use std::sync::Arc;

use crate::platform::{
    auth::{DeletedAccounts, Role},
    db::ModuleMigrations,
};
use modkit::events::{DeliveryError, DomainEvent, EventHandler};

/// What other modules may ask of the users module. In process it is [`UsersService`]; where the
/// module runs elsewhere, `UsersApiRemote` (written by the kit from this trait) calls its
/// internal endpoint (`serve_users_api`, mounted by the process that hosts the module).
#[modkit::interface(path = "/internal/users")]
#[async_trait]
pub trait UsersApi: Send + Sync {
    /// Public profiles of `ids`, each known id once, in one call however many ids; unknown
    /// ids are left out.
    #[idempotent]
    async fn public_profiles(&self, ids: &[Uuid]) -> Result<Vec<PublicProfile>, UsersApiError>;

    /// Where to reach the accounts of `ids` (email and name), each known id once; for modules
    /// that write to people, never shown to other people.
    #[idempotent]
    async fn contacts(&self, ids: &[Uuid]) -> Result<Vec<Contact>, UsersApiError>;
}

/// How to reach an account's owner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    pub id: Uuid,
    pub email: String,
    pub name: String,
}

modkit::interface_error!(
    /// Why a [`UsersApi`] call failed.
    pub UsersApiError, "users module"
);

/// An account as its owner (or an admin) sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// What anyone logged in may see of an account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PublicProfile {
    pub id: Uuid,
    pub name: String,
}

/// What a login or a refresh returns.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
}

/// The `auth` section of the configuration: what the users module needs to hash passwords and
/// issue tokens.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub bcrypt_cost: u32,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// PKCS#8 PEM file with the Ed25519 signing key; generated (mode 0600) when missing.
    pub signing_key_path: std::path::PathBuf,
    /// PEM files of former signing keys: published for verification only.
    #[serde(deserialize_with = "crate::platform::settings::list")]
    pub retired_signing_key_paths: Vec<String>,
    pub issuer: String,
    /// Password checks allowed per account and minute (a burst of as many), whichever address
    /// they come from; 0 turns the limit off.
    pub password_attempts_per_minute: u32,
}

/// The kind of [`crate::platform::changes::Change`] a rename or a deletion announces: caches
/// of names listen for it.
pub const PROFILE_CHANGES: &str = "user";

/// Topic of [`UserDeleted`].
pub const USER_DELETED: &str = "user.deleted";

/// Published after an account was deleted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserDeleted {
    pub user_id: Uuid,
}

impl UserDeleted {
    /// The payload of a `user.deleted` domain event; a malformed one is never delivered again.
    pub fn from_event(event: &DomainEvent) -> Result<Self, DeliveryError> {
        serde_json::from_value(event.payload.clone())
            .map_err(|e| DeliveryError::because(format!("malformed {USER_DELETED} payload: {e}")))
    }
}

/// Teaches a process's [`DeletedAccounts`] every `user.deleted`: subscribed as a broadcast, so
/// every instance of every process that verifies tokens refuses a deleted account, not only the
/// one instance that ran the cascade.
pub struct RememberDeletions(pub Arc<DeletedAccounts>);

#[async_trait]
impl EventHandler for RememberDeletions {
    fn topics(&self) -> &'static [&'static str] {
        &[USER_DELETED]
    }

    async fn handle(&self, event: &DomainEvent) -> Result<(), DeliveryError> {
        let payload = UserDeleted::from_event(event)?;
        self.0.insert(payload.user_id, event.occurred_at);
        Ok(())
    }
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/users/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/users/postgres");

/// The users module's tables, for both backends.
pub static MIGRATIONS: ModuleMigrations = ModuleMigrations {
    module: "users",
    tables: &[
        "users",
        "refresh_tokens",
        "users_deleted",
        "users_outbox",
        "password_resets",
    ],
    sqlite: || SQLITE_MIGRATIONS,
    postgres: || POSTGRES_MIGRATIONS,
};
