//! The split build's composition root. Configuration says which modules a process hosts
//! (`topology.local_modules`) and whether it is the public entry (`topology.proxy`); [`build`]
//! composes one function per role from that: [`host_users`] or [`remote_users`],
//! [`host_events`], [`relay_domain_events`] and [`gateway_proxy`]. That gives the pure gateway,
//! the users service, the events service and any mixed process (say gateway + users here,
//! events remote) from the same code.

use std::{sync::Arc, time::Duration};

use actix_web::web;
use async_trait::async_trait;
use secrecy::ExposeSecret;

use super::{
    Application, DatabaseReadiness, ReadCaching, StartError, bind, connect, deleted_accounts,
    events_service, http_shell, metrics_listener, serve, token_verifier, users_service,
};
use crate::{
    config::{Module, Role, Settings},
    gateway::{
        Metrics, Readiness,
        proxy::{Proxy, Upstream},
    },
    modules::{
        events::{self, EventsService, UserDeletedHandler},
        users::{self, RememberDeletions, UsersApi, UsersApiRemote, UsersService},
    },
    platform::{
        auth::{DeletedAccounts, KeySetVerifier, TokenVerifier},
        db::{Db, ModuleMigrations},
        jwks::JwksVerifier,
        nats::{self, NatsPublisher},
        remote,
    },
};
use modkit::events::{EventPublisher, InProcessBus, Subscription};

/// The `main` of every split binary: its role's defaults under the operator's configuration.
pub fn main(role: Role) -> std::process::ExitCode {
    let settings = match super::settings_or_exit(|| Settings::load(role)) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(async move { super::run(build(settings).await).await }),
        Err(err) => {
            eprintln!("rsvp: cannot start the runtime: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The users module as this process sees it: hosted here, or reached over HTTP.
struct UsersSide {
    /// Present when the module is hosted here.
    local: Option<Arc<UsersService>>,
    api: Arc<dyn UsersApi>,
    keys: Arc<dyn TokenVerifier>,
}

/// The users role: the module in process, its own keys verifying tokens.
async fn host_users(
    settings: &Settings,
    db: Db,
    deleted: Arc<DeletedAccounts>,
    reads: &ReadCaching,
) -> Result<UsersSide, StartError> {
    let service = users_service(settings, db, deleted, reads.changes.clone()).await?;
    let keys = KeySetVerifier::new(&settings.auth.issuer, &service.keys().jwks())?;
    Ok(UsersSide {
        local: Some(service.clone()),
        api: service,
        keys: Arc::new(keys),
    })
}

/// The users module elsewhere: profiles from its internal API, keys from its public JWKS.
fn remote_users(settings: &Settings) -> Result<UsersSide, StartError> {
    let upstreams = &settings.upstreams;
    let internal = if upstreams.users_internal.is_empty() {
        &upstreams.users
    } else {
        &upstreams.users_internal
    };
    let client = |urls: &[String]| remote::client("users", urls, &settings.service);
    Ok(UsersSide {
        local: None,
        api: Arc::new(UsersApiRemote::new(client(internal)?)),
        keys: Arc::new(JwksVerifier::new(
            settings.auth.issuer.clone(),
            client(&upstreams.users)?,
        )),
    })
}

/// The events role: the module in process, asking `users` for names.
async fn host_events(
    settings: &Settings,
    db: Db,
    users: &UsersSide,
    deleted: Arc<DeletedAccounts>,
    reads: &ReadCaching,
) -> Result<Arc<EventsService>, StartError> {
    events_service(settings, db, users.api.clone(), deleted, reads).await
}

/// Domain events between the modules: in process when both are here, through NATS JetStream
/// when one is. Returns the background tasks it started.
async fn relay_domain_events(
    settings: &Settings,
    users: Option<&Arc<UsersService>>,
    events: Option<&Arc<EventsService>>,
    deleted: &Arc<DeletedAccounts>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
    let consumer = |events: &Arc<EventsService>| Arc::new(UserDeletedHandler(events.clone()));
    let mut tasks = Vec::new();
    // Every instance verifies tokens, so every instance learns every deletion: a broadcast,
    // replayed from one token lifetime back at start. (The cascade below runs once.)
    if users.is_some() != events.is_some() {
        let js = nats::connect(&settings.nats).await?;
        let remember = Subscription::broadcast(
            Arc::new(RememberDeletions(deleted.clone())),
            deleted.remembered_for(),
        );
        tasks.push(nats::spawn_subscription(
            js,
            settings.nats.clone(),
            remember,
        ));
    }
    if let (Some(events), None) = (events, users) {
        let js = nats::connect(&settings.nats).await?;
        let cascade = Subscription::work_queue(consumer(events));
        tasks.push(nats::spawn_subscription(js, settings.nats.clone(), cascade));
    }
    if let Some(users) = users
        && settings.outbox.relay_enabled
    {
        let publisher: Arc<dyn EventPublisher> = match events {
            Some(events) => Arc::new(InProcessBus::default().subscribe(consumer(events))),
            None => Arc::new(NatsPublisher::new(
                nats::connect(&settings.nats).await?,
                &settings.nats,
            )),
        };
        let poll = Duration::from_millis(settings.outbox.poll_interval_ms);
        tasks.push(users.outbox_relay(publisher, poll).spawn());
    }
    Ok(tasks)
}

/// The gateway role: proxy the public routes of the modules hosted elsewhere, with health
/// checks on their instances.
fn gateway_proxy(settings: &Settings) -> Result<Arc<Proxy>, StartError> {
    let topology = &settings.topology;
    let upstreams = &settings.upstreams;
    let remote = [
        (Module::Users, "users", &upstreams.users),
        (Module::Events, "events", &upstreams.events),
    ]
    .into_iter()
    .filter(|(module, ..)| !topology.hosts(*module))
    .map(|(_, name, urls)| Upstream::new(name, urls.clone(), upstreams.max_in_flight))
    .collect();
    let proxy = Arc::new(Proxy::new(
        settings.gateway.routes.clone(),
        remote,
        Duration::from_millis(settings.service.call_timeout_ms.max(10_000)),
        Duration::from_millis(upstreams.queue_timeout_ms),
    )?);
    proxy.spawn_health_checks(Duration::from_millis(upstreams.health_interval_ms));
    Ok(proxy)
}

/// Builds and binds one process of the split topology, composed from its roles.
pub async fn build(settings: Settings) -> Result<Application, StartError> {
    let topology = &settings.topology;
    let (hosts_users, hosts_events) = (
        topology.hosts(Module::Users),
        topology.hosts(Module::Events),
    );
    let is_gateway = topology.proxy;
    if (hosts_users || !is_gateway) && settings.service.credential.expose_secret().is_empty() {
        return Err(StartError::MissingCredential);
    }
    let migrations: Vec<&'static ModuleMigrations> = [
        (hosts_users, &users::MIGRATIONS),
        (hosts_events, &events::MIGRATIONS),
    ]
    .into_iter()
    .filter_map(|(hosted, set)| hosted.then_some(set))
    .collect();
    let db = match migrations.is_empty() {
        true => None,
        false => Some(connect(&settings, &migrations).await?),
    };

    let deleted = deleted_accounts(&settings);
    let reads = ReadCaching::default();
    let users = match &db {
        Some(db) if hosts_users => {
            host_users(&settings, db.clone(), deleted.clone(), &reads).await?
        }
        _ => remote_users(&settings)?,
    };
    let events = match &db {
        Some(db) if hosts_events => {
            Some(host_events(&settings, db.clone(), &users, deleted.clone(), &reads).await?)
        }
        _ => None,
    };
    let mut tasks =
        relay_domain_events(&settings, users.local.as_ref(), events.as_ref(), &deleted).await?;
    // Any other instance may cache what this one's modules change (names, events).
    if db.is_some() {
        tasks.extend(nats::fan_out_changes(&settings.nats, reads.changes.clone()).await?);
    }
    let proxy = is_gateway.then(|| gateway_proxy(&settings)).transpose()?;

    let readiness = Arc::new(SplitReadiness {
        database: DatabaseReadiness(db),
        proxy: proxy.clone(),
    });
    let mut shell = http_shell(&settings, readiness, &reads)?;
    let metrics = metrics_listener(&settings, &mut shell)?;
    let credential = web::Data::new(settings.service.credential());
    let verifier = token_verifier(users.keys.clone(), &deleted);
    // Internal endpoints never share the public entry's listener: a gateway hosting the users
    // module serves them on `service.internal_bind` only, a users service on its own listener.
    let serve_internal = hosts_users && !is_gateway;
    let listener = bind(&settings.server.bind.to_string())?;
    let public = {
        let (users_local, events, proxy, credential) = (
            users.local.clone(),
            events.clone(),
            proxy.clone(),
            credential.clone(),
        );
        serve(
            &settings.server,
            &listener,
            shell.clone(),
            None,
            move |cfg| {
                cfg.app_data(web::Data::from(verifier.clone()))
                    .app_data(credential.clone());
                if let Some(proxy) = &proxy {
                    cfg.app_data(web::Data::from(proxy.clone()));
                }
                if let Some(users) = &users_local {
                    cfg.app_data(web::Data::from(users.clone()))
                        .configure(users::configure);
                    if serve_internal {
                        users::serve_users_api(cfg, users.clone());
                    }
                }
                if let Some(events) = &events {
                    cfg.app_data(web::Data::from(events.clone()))
                        .configure(events::configure);
                }
            },
        )?
    };
    let mut app = Application::new(&listener, public)?;
    if let Some(metrics) = metrics {
        app = app.with(metrics);
    }
    if let (true, Some(users), Some(address)) = (
        is_gateway,
        users.local.clone(),
        settings.service.internal_bind.as_deref(),
    ) {
        let internal = bind(address)?;
        app = app.with(serve(
            &settings.server,
            &internal,
            shell,
            Some(2),
            move |cfg| {
                cfg.app_data(credential.clone());
                users::serve_users_api(cfg, users.clone());
            },
        )?);
    }
    for task in &tasks {
        app = app.with_task(task);
    }
    tracing::info!(port = app.port(), modules = ?topology.local_modules, gateway = is_gateway, topology = "split", "listening");
    Ok(app)
}

struct SplitReadiness {
    database: DatabaseReadiness,
    proxy: Option<Arc<Proxy>>,
}

#[async_trait]
impl Readiness for SplitReadiness {
    async fn check(&self) -> Result<(), String> {
        self.database.check().await?;
        self.proxy.as_ref().map_or(Ok(()), |p| p.readiness())
    }

    fn report(&self, metrics: &Metrics) {
        self.database.report(metrics);
        if let Some(proxy) = &self.proxy {
            proxy.report(metrics);
        }
    }
}
