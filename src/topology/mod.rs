//! Composition roots: the only code that knows which implementation stands behind each trait
//! (in-process call or remote client) and so which topology a binary runs.

pub mod monolith;
#[cfg(feature = "split")]
pub mod split;

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::dev::Server;
use async_trait::async_trait;
use tokio::sync::Notify;

use crate::{
    gateway::{Metrics, Readiness},
    modules::{
        events::EventsService,
        users::{SigningKeys, UsersApi, UsersService},
    },
    platform::{
        auth::{DeletedAccounts, RefuseDeletedAccounts, TokenVerifier},
        config::Settings,
        db::{Db, ModuleMigrations, spawn_blocking_in_span},
    },
};

/// Opens the process's database and applies the migrations of the modules it hosts.
pub async fn connect(
    settings: &Settings,
    migrations: &[&'static ModuleMigrations],
) -> Result<Db, String> {
    let database = settings.database.clone();
    let migrations = migrations.to_vec();
    spawn_blocking_in_span(move || Db::connect(&database, &migrations))
        .await
        .map_err(|e| e.to_string())?
}

/// The users module with its signing key (loaded, or generated on first start).
pub async fn users_service(
    settings: &Settings,
    db: Db,
    outbox_wakeup: Arc<Notify>,
    deleted: Arc<DeletedAccounts>,
) -> Result<Arc<UsersService>, String> {
    let auth = settings.auth.clone();
    let service = spawn_blocking_in_span(move || {
        let retired: Vec<std::path::PathBuf> =
            crate::platform::config::list(&auth.retired_signing_key_paths)
                .into_iter()
                .map(Into::into)
                .collect();
        let keys = Arc::new(SigningKeys::load(&auth.signing_key_path, &retired)?);
        UsersService::new(db, keys, auth, outbox_wakeup, deleted)
    })
    .await
    .map_err(|e| e.to_string())??;
    service
        .recall_deleted_accounts()
        .await
        .map_err(|e| format!("cannot load deleted accounts: {e}"))?;
    Ok(Arc::new(service))
}

/// The events module, remembering the deletions it learnt of before this start.
pub async fn events_service(
    db: Db,
    users: Arc<dyn UsersApi>,
    deleted: Arc<DeletedAccounts>,
) -> Result<Arc<EventsService>, String> {
    let service = EventsService::new(db, users, deleted);
    service
        .recall_deleted_accounts()
        .await
        .map_err(|e| format!("cannot load deleted accounts: {e}"))?;
    Ok(Arc::new(service))
}

/// The process's token verifier: `keys` (in process or a JWKS cache), refusing deleted accounts.
pub fn token_verifier(
    keys: Arc<dyn TokenVerifier>,
    deleted: &Arc<DeletedAccounts>,
) -> Arc<dyn TokenVerifier> {
    Arc::new(RefuseDeletedAccounts::new(keys, deleted.clone()))
}

/// The set of deleted accounts one process shares among the modules it hosts.
pub fn deleted_accounts(settings: &Settings) -> Arc<DeletedAccounts> {
    Arc::new(DeletedAccounts::new(Duration::from_secs(
        settings.auth.access_ttl_secs,
    )))
}

/// Ready when the database (if the process has one) answers.
pub struct DatabaseReadiness(pub Option<Db>);

#[async_trait]
impl Readiness for DatabaseReadiness {
    async fn check(&self) -> Result<(), String> {
        match &self.0 {
            Some(db) if !db.ping().await => Err("database unreachable".into()),
            _ => Ok(()),
        }
    }

    fn report(&self, metrics: &Metrics) {
        if let Some(db) = &self.0 {
            let (open, idle, max) = db.pool_state();
            for (state, value) in [("open", open), ("idle", idle), ("max", max)] {
                metrics
                    .gauges
                    .with_label_values(&["db_pool", state])
                    .set(i64::from(value));
            }
        }
    }
}

/// A running process: its public server, bound before it starts so tests can use port 0, and
/// any further servers (a split gateway's internal listener).
pub struct Application {
    port: u16,
    servers: Vec<Server>,
    /// Background work (outbox relay, event consumer) that ends with the servers.
    tasks: Vec<tokio::task::AbortHandle>,
}

/// Stops every server and background task of an [`Application`].
#[derive(Clone)]
pub struct AppHandle {
    servers: Vec<actix_web::dev::ServerHandle>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl AppHandle {
    pub async fn stop(&self, graceful: bool) {
        self.tasks.iter().for_each(tokio::task::AbortHandle::abort);
        for handle in &self.servers {
            handle.stop(graceful).await;
        }
    }

    /// Orders everything to stop without waiting for it (for `Drop` implementations).
    pub fn stop_now(&self) {
        self.tasks.iter().for_each(tokio::task::AbortHandle::abort);
        for handle in &self.servers {
            // The command is sent when `stop` is called; the future only awaits completion.
            drop(handle.stop(false));
        }
    }
}

impl Application {
    pub fn new(listener: &TcpListener, server: Server) -> std::io::Result<Self> {
        Ok(Self {
            port: listener.local_addr()?.port(),
            servers: vec![server],
            tasks: Vec::new(),
        })
    }

    /// Ties a background task's life to this application.
    pub fn with_task(mut self, task: &tokio::task::JoinHandle<()>) -> Self {
        self.tasks.push(task.abort_handle());
        self
    }

    /// Adds a server that lives and stops with this application.
    pub fn with(mut self, server: Server) -> Self {
        self.servers.push(server);
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> AppHandle {
        AppHandle {
            servers: self.servers.iter().map(Server::handle).collect(),
            tasks: self.tasks.clone(),
        }
    }

    /// Serves until SIGINT/SIGTERM (or the handle stops it), draining open requests; then ends
    /// the background tasks.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let results = futures_util::future::join_all(self.servers).await;
        self.tasks.iter().for_each(tokio::task::AbortHandle::abort);
        results
            .into_iter()
            .collect::<std::io::Result<Vec<()>>>()
            .map(drop)
    }
}
