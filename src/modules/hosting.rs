//! What a module is to the process that hosts it, in one place: its [`Module`] declaration
//! (name, routes, events, migrations, OpenAPI part and the two ways to stand it up), what it gets
//! from the process ([`Process`]: the database, the other modules' interfaces, its settings
//! section, what the process's modules share) and what it gives back ([`Hosted`]: routes,
//! internal API, event handlers, outbox). The topology composes a process from these alone, so
//! it names no module.

use std::sync::Arc;

use actix_web::web;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::platform::{
    auth::DeletedAccounts, changes::Changes, db::Db, db::ModuleMigrations, outbox::Outbox,
    read_cache::CacheMetrics,
};
use modkit::{Apis, Declaration, events::Subscription};

/// Why a module could not be stood up (its settings, its database, its keys...).
pub type HostError = Box<dyn std::error::Error + Send + Sync>;

/// Routes (and the app data they need) a module adds to an actix-web app.
pub type Mount = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// A module, declared once. [`super::MODULES`] lists them; every list of modules derives from it.
pub struct Module {
    /// Name, public routes, domain events published and consumed, default address.
    pub declaration: Declaration,
    /// Its tables, for both backends.
    pub migrations: &'static ModuleMigrations,
    /// Its part of the public OpenAPI document.
    pub api_doc: fn() -> utoipa::openapi::OpenApi,
    /// The defaults of its own settings (`section.key`, value), under the operator's
    /// configuration like every other default; it reads them with [`Process::section`].
    pub settings: &'static [(&'static str, &'static str)],
    /// Stands the module up in this process: provides its interfaces in [`Process::apis`] and
    /// returns what the process serves and runs for it.
    pub host: for<'a> fn(&'a mut Process) -> BoxFuture<'a, Result<Hosted, HostError>>,
    /// Where the module runs elsewhere: provides its interfaces through clients of its service,
    /// and returns the broadcasts every process that uses it must hear (say, deletions that
    /// revoke tokens).
    #[cfg(feature = "split")]
    pub remote: fn(&mut Process) -> Result<Vec<Subscription>, HostError>,
}

impl Module {
    /// The module's name.
    pub fn name(&self) -> &'static str {
        self.declaration.name
    }
}

/// What a hosted module gives its process.
#[derive(Default)]
pub struct Hosted {
    /// Its public routes.
    pub routes: Option<Mount>,
    /// The internal endpoint other processes' clients call (served apart from public routes).
    pub internal: Option<Mount>,
    /// Its domain-event handlers, each with the delivery it needs.
    pub subscriptions: Vec<Subscription>,
    /// Its outbox, which the process relays.
    pub outbox: Option<Outbox>,
    /// Work it runs for as long as the process does (a mail worker, a scheduler).
    pub background: Vec<BoxFuture<'static, ()>>,
    /// Its metrics, for the process's `/metrics`.
    pub collectors: Vec<Box<dyn prometheus::core::Collector>>,
}

/// Wraps a closure as a [`Mount`].
pub fn mount(f: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static) -> Mount {
    Arc::new(f)
}

/// What the process gives each module it hosts (or reaches), in registry order: a module finds
/// in [`Process::apis`] the interfaces of the modules listed before it.
pub struct Process {
    /// The layered configuration, from which each module reads its own section.
    config: Arc<config::Config>,
    db: Option<Db>,
    /// The interfaces provided so far, by trait.
    pub apis: Apis,
    /// Accounts whose tokens this process refuses (deleted), shared by its modules.
    pub deleted: Arc<DeletedAccounts>,
    /// Announcements of changes to the process's read caches.
    pub changes: Arc<Changes>,
    /// The read caches' metrics.
    pub cache_metrics: CacheMetrics,
}

impl Process {
    /// A process reading `config`, with `db` when it hosts any module.
    pub fn new(config: Arc<config::Config>, db: Option<Db>, deleted: Arc<DeletedAccounts>) -> Self {
        Self {
            config,
            db,
            apis: Apis::default(),
            deleted,
            changes: Arc::default(),
            cache_metrics: CacheMetrics::default(),
        }
    }

    /// The configuration section `key`, as the module's own settings type.
    pub fn section<T: DeserializeOwned>(&self, key: &str) -> Result<T, HostError> {
        self.config
            .get::<T>(key)
            .map_err(|e| format!("invalid configuration: {key}: {e}").into())
    }

    /// The process's database (every process hosting a module has one).
    pub fn db(&self) -> Result<Db, HostError> {
        self.db
            .clone()
            .ok_or_else(|| "a module is hosted without a database".into())
    }

    /// The base URLs of `module`'s instances (`upstreams.<module>`); for its internal endpoint,
    /// `upstreams.<module>_internal` when that is set.
    pub fn instances(&self, module: &str, internal: bool) -> Result<Vec<String>, HostError> {
        let read = |key: String| -> Result<Vec<String>, HostError> {
            match self.config.get::<config::Value>(&key) {
                Ok(value) => crate::platform::settings::list(value)
                    .map_err(|e| format!("invalid configuration: {key}: {e}").into()),
                Err(config::ConfigError::NotFound(_)) => Ok(Vec::new()),
                Err(e) => Err(format!("invalid configuration: {key}: {e}").into()),
            }
        };
        let internal_urls = if internal {
            read(format!("upstreams.{module}_internal"))?
        } else {
            Vec::new()
        };
        match internal_urls.is_empty() {
            false => Ok(internal_urls),
            true => read(format!("upstreams.{module}")),
        }
    }

    /// A client of `module`'s service (its internal endpoint when `internal`), with the
    /// process's service credential, timeouts, retries, breaker and trace propagation.
    #[cfg(feature = "split")]
    pub fn client(
        &self,
        module: &'static str,
        internal: bool,
    ) -> Result<Arc<modkit::Remote>, HostError> {
        let service: crate::platform::remote::ServiceSettings = self.section("service")?;
        let instances = self.instances(module, internal)?;
        Ok(crate::platform::remote::client(
            module, &instances, &service,
        )?)
    }
}
