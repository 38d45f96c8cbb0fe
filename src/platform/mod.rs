//! What every module stands on and none owns: settings helpers, the database layer, errors as
//! problem details, token verification, domain-event plumbing, pagination and logging.

pub mod auth;
pub mod changes;
pub mod compression;
pub mod db;
pub mod html;
pub mod ids;
pub mod instant;
pub mod json;
#[cfg(feature = "split")]
pub mod jwks;
#[cfg(feature = "split")]
pub mod nats;
pub mod outbox;
pub mod pagination;
pub mod problem;
pub mod read_cache;
#[cfg(feature = "split")]
pub mod remote;
pub mod secret;
pub mod settings;
pub mod telemetry;
pub mod text;
pub mod trace;
pub mod zone;

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at the microsecond precision both databases store, so a value read back
/// equals the value written (and cursors built from either agree).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
