//! Composition roots: the only code that knows which implementation stands behind each trait
//! (in-process call or remote client) and so which topology a binary runs. The pieces every
//! topology assembles live here, one function each; `monolith` and `split` compose them.

pub mod monolith;
#[cfg(feature = "split")]
pub mod split;

use std::{net::TcpListener, process::ExitCode, sync::Arc, time::Duration};

use actix_web::{HttpServer, dev::Server, web};
use async_trait::async_trait;

use crate::{
    config::{ConfigError, ServerSettings, Settings},
    gateway::{HttpShell, Metrics, RateLimitError, Readiness},
    modules::{
        MODULES,
        hosting::{HostError, Hosted, Module, Mount, Process},
    },
    platform::{
        auth::{DeletedAccounts, RefuseDeletedAccounts, RememberVerifiedTokens, TokenVerifier},
        db::{Db, DbError, DbSetupError, ModuleMigrations, spawn_blocking_in_span},
        outbox::Outbox,
        telemetry,
    },
};
use modkit::events::Subscription;

/// Why a process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error("database: {0}")]
    Blocking(#[from] DbError),
    #[error("{module} module: {source}")]
    Module {
        module: &'static str,
        source: HostError,
    },
    #[error(transparent)]
    MissingApi(#[from] modkit::MissingApi),
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
    #[error("cannot bind {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(
        "service.credential: required in the split topology (a shared secret for internal calls)"
    )]
    MissingCredential,
    #[cfg(feature = "split")]
    #[error(transparent)]
    Broker(#[from] modkit::nats::BrokerError),
    #[cfg(feature = "split")]
    #[error(transparent)]
    Client(#[from] modkit::SetupError),
    #[cfg(feature = "split")]
    #[error("the gateway's HTTP client: {0}")]
    Proxy(#[from] reqwest::Error),
}

/// Runs a process to its end and says how it ended: the one `main` of every binary. A process
/// that could not start is reported on stderr (its logging may not be up) and exits 1.
pub async fn run(app: Result<Application, StartError>) -> ExitCode {
    let result = match app {
        Ok(app) => app.run_until_stopped().await.map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    telemetry::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "rsvp stopped");
            eprintln!("rsvp: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the settings and starts logging, or says why the configuration is unusable (exit 2).
pub fn settings_or_exit(
    load: impl FnOnce() -> Result<Settings, ConfigError>,
) -> Result<Settings, ExitCode> {
    match load() {
        Ok(settings) => match telemetry::init(&settings.log, &settings.telemetry) {
            Ok(()) => Ok(settings),
            Err(err) => {
                eprintln!("rsvp: {err}");
                Err(ExitCode::from(2))
            }
        },
        Err(err) => {
            eprintln!("rsvp: {err}");
            Err(ExitCode::from(2))
        }
    }
}

/// Asks the process listening on `bind` (this container's own, for a `HEALTHCHECK`) for `path`
/// and says whether it answered `200`. Plain HTTP over a socket: the monolith build has no HTTP
/// client, and a probe needs none.
pub fn probe(bind: std::net::SocketAddr, path: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let ip = match bind.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    let target = std::net::SocketAddr::new(ip, bind.port());
    let timeout = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| format!("{target}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{target}: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("{target}: {e}"))?;
    match &head[9..12] {
        b"200" => Ok(()),
        status => Err(format!(
            "{target}{path} answered {}",
            String::from_utf8_lossy(status)
        )),
    }
}

/// Opens the process's database and applies the migrations of the modules it hosts.
pub async fn connect(
    settings: &Settings,
    migrations: &[&'static ModuleMigrations],
) -> Result<Db, StartError> {
    let database = settings.database.clone();
    let migrations = migrations.to_vec();
    Ok(spawn_blocking_in_span(move || Db::connect(&database, &migrations)).await??)
}

/// A process hosting `hosted` (a database with their tables when there is any), before any
/// module is stood up: what [`compose`] starts from, and what tools that need one module's
/// service (`make-admin`, tests) start from.
pub async fn process(
    settings: &Settings,
    hosted: &[&'static Module],
) -> Result<Process, StartError> {
    let migrations: Vec<_> = hosted.iter().map(|m| m.migrations).collect();
    let db = match migrations.is_empty() {
        true => None,
        false => Some(connect(settings, &migrations).await?),
    };
    Ok(Process::new(
        settings.raw.0.clone(),
        db,
        deleted_accounts(settings),
    ))
}

/// A process's modules, stood up from the registry in its order: those `hosts` names here, the
/// others through their clients.
pub struct Composed {
    pub process: Process,
    /// The modules stood up here, by name.
    pub hosted: Vec<(&'static str, Hosted)>,
    /// Broadcasts this process must hear about modules hosted elsewhere.
    pub remote_broadcasts: Vec<Subscription>,
}

impl Composed {
    /// The process's token verifier: the keys the users' side provided, remembering what it
    /// verified, refusing deleted accounts.
    pub fn token_verifier(&self) -> Result<Arc<dyn TokenVerifier>, StartError> {
        let keys = self.process.apis.get::<dyn TokenVerifier>()?;
        let remembered = Arc::new(RememberVerifiedTokens::new(keys, VERIFIED_TOKENS));
        Ok(Arc::new(RefuseDeletedAccounts::new(
            remembered,
            self.process.deleted.clone(),
        )))
    }

    /// Starts the hosted modules' background work.
    pub fn spawn_background(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        self.hosted
            .iter_mut()
            .flat_map(|(_, hosted)| std::mem::take(&mut hosted.background))
            .map(tokio::spawn)
            .collect()
    }

    /// The metrics of the process's modules and read caches, for its `/metrics`.
    pub fn take_collectors(&mut self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let mut collectors = self.process.cache_metrics.collectors();
        for (_, hosted) in &mut self.hosted {
            collectors.append(&mut hosted.collectors);
        }
        collectors
    }

    /// Mounts every hosted module's public routes.
    pub fn public_routes(&self) -> Vec<Mount> {
        self.hosted
            .iter()
            .filter_map(|(_, hosted)| hosted.routes.clone())
            .collect()
    }

    /// Every hosted module's internal endpoint.
    pub fn internal_routes(&self) -> Vec<Mount> {
        self.hosted
            .iter()
            .filter_map(|(_, hosted)| hosted.internal.clone())
            .collect()
    }

    /// The hosted modules' outboxes.
    pub fn outboxes(&self) -> impl Iterator<Item = &Outbox> {
        self.hosted.iter().filter_map(|(_, h)| h.outbox.as_ref())
    }
}

/// Stands up every module of the registry: hosted here when `hosts` says so, reached through
/// its clients otherwise (split build only).
pub async fn compose(
    settings: &Settings,
    hosts: impl Fn(&str) -> bool,
) -> Result<Composed, StartError> {
    let hosted_modules: Vec<&'static Module> = MODULES
        .iter()
        .copied()
        .filter(|m| hosts(m.name()))
        .collect();
    let mut process = process(settings, &hosted_modules).await?;
    let mut hosted = Vec::new();
    #[cfg_attr(not(feature = "split"), allow(unused_mut))]
    let mut remote_broadcasts = Vec::new();
    for module in MODULES {
        let name = module.name();
        let failed = |source| StartError::Module {
            module: name,
            source,
        };
        if hosts(name) {
            hosted.push((name, (module.host)(&mut process).await.map_err(failed)?));
        } else {
            #[cfg(feature = "split")]
            remote_broadcasts.extend((module.remote)(&mut process).map_err(failed)?);
            #[cfg(not(feature = "split"))]
            return Err(failed("not hosted, and this build has no clients".into()));
        }
    }
    Ok(Composed {
        process,
        hosted,
        remote_broadcasts,
    })
}

/// Verified access tokens a process remembers (a few hundred bytes each).
const VERIFIED_TOKENS: u64 = 10_000;

/// The set of deleted accounts one process shares among the modules it hosts.
pub fn deleted_accounts(settings: &Settings) -> Arc<DeletedAccounts> {
    Arc::new(DeletedAccounts::new(Duration::from_secs(
        settings.auth.access_ttl_secs,
    )))
}

/// The HTTP shell of a process: request ids, limits, metrics and the operations endpoints.
pub fn http_shell(
    settings: &Settings,
    readiness: Arc<dyn Readiness>,
    composed: &mut Composed,
) -> Result<HttpShell, StartError> {
    let shell = HttpShell::new(&settings.gateway, settings.server.body_timeout(), readiness)?;
    shell.register_metrics(composed.take_collectors());
    Ok(shell)
}

/// Serves `/metrics` on `server.metrics_bind` when one is set (then not on the public listener).
/// Call before the shell serves anything.
pub fn metrics_listener(
    settings: &Settings,
    shell: &mut HttpShell,
) -> Result<Option<Server>, StartError> {
    let Some(address) = &settings.server.metrics_bind else {
        return Ok(None);
    };
    let listener = bind(address)?;
    shell
        .metrics_server(listener)
        .map(Some)
        .map_err(|source| StartError::Bind {
            address: address.clone(),
            source,
        })
}

/// Binds `address` now (so a test can ask for port 0 and learn the port).
pub fn bind(address: &str) -> Result<TcpListener, StartError> {
    listen(address).map_err(|source| StartError::Bind {
        address: address.to_owned(),
        source,
    })
}

/// How long an idle connection is kept open for its next request. Far longer than the idle
/// timeout of any pool that reuses connections to us (the gateway's and services' clients keep
/// theirs 4 s): with actix-web's default of 5 s, a busy client could take a pooled connection
/// the instant the server closed it, and its request was reset — a POST then fails, since it may
/// not be retried. 75 s is what nginx keeps.
const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// Connections the kernel queues for a listener before the server accepts them. The standard
/// library's `TcpListener::bind` queues 128: a burst of more clients at once (a busy minute on
/// two cores) overflowed it, and those connections were reset. actix-web's own default is 1 024.
const LISTEN_BACKLOG: i32 = 1024;

fn listen(address: &str) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut last_error = None;
    for addr in std::net::ToSocketAddrs::to_socket_addrs(address)? {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // As the standard library does: a restarted process may bind while old connections of
        // its predecessor linger in TIME_WAIT.
        socket.set_reuse_address(true)?;
        match socket.bind(&addr.into()) {
            Ok(()) => {
                socket.listen(LISTEN_BACKLOG)?;
                return Ok(socket.into());
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    }))
}

/// Serves `mount`'s routes in `shell` on `listener`, with the server settings' timeouts and
/// workers (`workers` overrides them, for small side listeners).
pub fn serve<F>(
    server_settings: &ServerSettings,
    listener: &TcpListener,
    shell: HttpShell,
    workers: Option<usize>,
    mount: F,
) -> Result<Server, StartError>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let mut server = HttpServer::new(move || shell.clone().app(mount.clone()))
        .client_request_timeout(server_settings.header_timeout())
        .keep_alive(KEEP_ALIVE);
    match workers {
        Some(n) => server = server.workers(n),
        None if server_settings.workers > 0 => server = server.workers(server_settings.workers),
        None => {}
    }
    let address = listener
        .local_addr()
        .map_or_else(|_| "the listener".to_owned(), |a| a.to_string());
    let bind_error = |source| StartError::Bind {
        address: address.clone(),
        source,
    };
    let listener = listener.try_clone().map_err(bind_error)?;
    Ok(server.listen(listener).map_err(bind_error)?.run())
}

/// Ready when the database (if the process has one) answers.
pub struct DatabaseReadiness(pub Option<Db>);

#[async_trait]
impl Readiness for DatabaseReadiness {
    async fn check(&self) -> Result<(), String> {
        match &self.0 {
            Some(db) if !db.ping().await => {
                Err("database unreachable, or a table of its modules missing".into())
            }
            _ => Ok(()),
        }
    }

    fn report(&self, metrics: &Metrics) {
        if let Some(db) = &self.0 {
            let (open, idle, max) = db.pool_state();
            for (state, value) in [("open", open), ("idle", idle), ("max", max)] {
                metrics
                    .pool_connections
                    .with_label_values(&[state])
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
    /// Stops the servers (draining open requests when `graceful`) and the background tasks.
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
    /// The application of `server`, bound to `listener`.
    pub fn new(listener: &TcpListener, server: Server) -> Result<Self, StartError> {
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                address: "the public listener".to_owned(),
                source,
            })?
            .port();
        Ok(Self {
            port,
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

    /// The public port (the one bound, when the settings asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that can stop it from elsewhere.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's queue of a listener holds a burst of connections (`ss` shows its size as
    /// the listening socket's Send-Q); it held 128 with `TcpListener::bind`.
    #[test]
    fn listeners_queue_a_burst_of_connections() {
        let listener = bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let Ok(out) = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
        else {
            eprintln!("SKIPPED: `ss` (iproute2) is not installed");
            return;
        };
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let queue: Vec<&str> = line.split_whitespace().take(3).collect();
        assert_eq!(queue, ["LISTEN", "0", "1024"], "{line}");
    }
}
