//! The notifications module: what people are told and how — in-app notifications, mail over
//! SMTP (or `.eml` files when no server is configured), per-person settings, the delivery queue.
//!
//! Public interface: [`NotificationsApi`] (the one thing other modules ask of it: the
//! password-reset mail), the routes and the migrations. It learns everything else from other
//! modules' domain events: a seat obtained from the waitlist, an event cancelled or moved, an
//! account deleted.

mod error;
mod handlers;
mod mail;
mod module;
mod schema;
mod service;
mod store;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use error::NotificationsError;
pub use module::MODULE;
pub use service::NotificationsService;

use crate::platform::db::ModuleMigrations;

/// What other modules may ask of the notifications module. In process it is
/// [`NotificationsService`]; elsewhere `NotificationsApiRemote`, written by the kit.
#[modkit::interface(path = "/internal/notifications")]
#[async_trait]
pub trait NotificationsApi: Send + Sync {
    /// Queues the mail carrying a password-reset link (never switched off). The same `mail`
    /// twice is queued once.
    #[idempotent]
    async fn send_password_reset(
        &self,
        mail: &PasswordResetMail,
    ) -> Result<(), NotificationsApiError>;
}

modkit::interface_error!(
    /// Why a [`NotificationsApi`] call failed.
    pub NotificationsApiError, "notifications module"
);

/// A password-reset mail to send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PasswordResetMail {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    /// The link with the single-use token.
    pub link: String,
    pub expires_at: DateTime<Utc>,
}

/// The kinds of notification; the first four can be switched off for mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A seat obtained from the waitlist.
    Promotion,
    /// An event one is registered for was cancelled.
    Cancellation,
    /// An event one is registered for changed its time or place.
    Changes,
    /// An event one has a seat at starts within a day.
    Reminders,
    /// A password-reset link (mail only, never switched off).
    PasswordReset,
}

impl Kind {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Promotion => "promotion",
            Kind::Cancellation => "cancellation",
            Kind::Changes => "changes",
            Kind::Reminders => "reminders",
            Kind::PasswordReset => "password_reset",
        }
    }

    /// The kind stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Kind::Promotion,
            Kind::Cancellation,
            Kind::Changes,
            Kind::Reminders,
            Kind::PasswordReset,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// A notification as its recipient sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: Uuid,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    pub event_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// A page of notifications, newest first, with how many are unread in all.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    pub next_cursor: Option<String>,
    pub unread: i64,
}

/// Which kinds of mail a person wants (in-app notifications always come).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    pub promotion: bool,
    pub cancellation: bool,
    pub changes: bool,
    pub reminders: bool,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            promotion: true,
            cancellation: true,
            changes: true,
            reminders: true,
        }
    }
}

impl EmailSettings {
    /// Whether mail of `kind` goes out.
    pub fn wants(&self, kind: Kind) -> bool {
        match kind {
            Kind::Promotion => self.promotion,
            Kind::Cancellation => self.cancellation,
            Kind::Changes => self.changes,
            Kind::Reminders => self.reminders,
            Kind::PasswordReset => true,
        }
    }

    /// These settings with mail of `kind` switched off.
    pub fn without(mut self, kind: Kind) -> Self {
        match kind {
            Kind::Promotion => self.promotion = false,
            Kind::Cancellation => self.cancellation = false,
            Kind::Changes => self.changes = false,
            Kind::Reminders => self.reminders = false,
            Kind::PasswordReset => {}
        }
        self
    }
}

/// A person's notification settings (`GET`/`PUT /api/users/me/notification-settings`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    pub email: EmailSettings,
}

/// The `notifications` and `smtp` sections of the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct MailSettings {
    /// `smtp://host:25`, `smtps://host:465` (TLS), `smtp://host:587?tls=required` (STARTTLS);
    /// empty: mail is written to `mail_dir`.
    pub url: String,
    /// The sender, `Name <address>`.
    pub from: String,
    /// A file holding the SMTP password (the URL's user logs in with it).
    pub password_file: String,
    /// A PEM file of certificate authorities to trust besides the system's (a relay with a
    /// certificate of its organisation's own CA); empty: the system's only.
    pub ca_file: String,
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/notifications/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("migrations/notifications/postgres");

/// The notifications module's tables, for both backends.
pub static MIGRATIONS: ModuleMigrations = ModuleMigrations {
    module: "notifications",
    tables: &[
        "notifications",
        "notification_settings",
        "mail_queue",
        "unsubscribe_tokens",
        "notifications_inbox",
        "notifications_forgotten_users",
    ],
    sqlite: || SQLITE_MIGRATIONS,
    postgres: || POSTGRES_MIGRATIONS,
};
