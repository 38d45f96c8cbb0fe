//! # modkit
//!
//! Modules of a modular monolith that run in one process or as services of their own, from the
//! same code. A module offers others a trait; [`interface`] reads it and writes the two things
//! that let it live in another process:
//!
//! - a client that implements the same trait over HTTP (`<Trait>Remote`, built on [`Remote`]:
//!   pooled connections, a timeout per call, round-robin over instances, retries of calls that
//!   are safe to repeat, a circuit breaker, the service credential, trace headers), and
//! - the internal endpoint that serves it (`serve_<trait>`: `POST <path>/<method>` on an
//!   actix-web app, refusing calls without the service credential).
//!
//! The composition root of each process then picks, per module, the module itself or its
//! `Remote` client behind the same `Arc<dyn Trait>`; nothing else in the code knows the difference.
//! A refused call ([`CallError::Rejected`]: a wrong credential, a request the other side deems
//! malformed) stays apart from an outage ([`CallError::Unavailable`]), so a misconfiguration is
//! not mistaken for a service being down.
//!
//! Build with the `remote` feature where some module is elsewhere; a process hosting every module
//! builds without it and compiles no HTTP client.
//!
//! Modules also tell each other what happened, through domain events ([`events`]): the envelope,
//! publishers and handlers, and the two kinds of delivery a handler may want when its process
//! runs as several instances — a work queue (one instance handles each event) or a broadcast
//! (every instance learns every event) — kept apart by type.
//!
//! Each module declares itself once ([`Declaration`]): its name, public routes, the domain events
//! it publishes and consumes. An application keeps one registry of declarations and derives every
//! list of modules from it; [`Apis`] hands each module the interfaces of the others, hosted here
//! or remote.
//!
//! See the crate's README for a walk-through and `examples/two_modules.rs` for a program that runs
//! both ways.

#![warn(missing_docs)]

mod credential;
pub mod endpoint;
mod error;
pub mod events;
pub mod module;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "remote")]
mod remote;

pub use async_trait::async_trait;
pub use credential::{CREDENTIAL_HEADER, Credential};
pub use error::CallError;
pub use modkit_macros::interface;
pub use module::{Apis, Declaration, MissingApi, RegistryError, check_registry, route_table};
#[cfg(feature = "remote")]
pub use remote::{Propagation, Remote, RemoteSettings, SetupError};

/// Expands its input only when modkit is built with the `remote` feature: the generated clients
/// exist only where an HTTP client is compiled.
#[cfg(feature = "remote")]
#[doc(hidden)]
#[macro_export]
macro_rules! remote_only {
    ($($item:tt)*) => { $($item)* };
}

/// Expands its input only when modkit is built with the `remote` feature: the generated clients
/// exist only where an HTTP client is compiled.
#[cfg(not(feature = "remote"))]
#[doc(hidden)]
#[macro_export]
macro_rules! remote_only {
    ($($item:tt)*) => {};
}
