//! The split build's composition root. One function assembles every process of the split
//! topology; configuration says which modules this process hosts (`topology.local_modules`) and
//! whether it is the public entry (`topology.proxy`). A module hosted here is called in process;
//! a module hosted elsewhere is reached through its HTTP client and, for a gateway, its routes
//! are proxied. That gives the pure gateway, the users service, the events service and any mixed
//! topology (say gateway + users here, events remote) from the same code.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{HttpServer, web};
use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    Application, DatabaseReadiness, connect, deleted_accounts, events_service, token_verifier,
    users_service,
};
use crate::{
    gateway::{
        Gateway, Metrics, Readiness, Routes,
        proxy::{Proxy, Upstream},
    },
    modules::{
        events::{self, UserDeletedHandler},
        users::{self, OutboxRelay, UsersApi, UsersClient},
    },
    platform::{
        auth::{KeySetVerifier, TokenVerifier},
        config::{Settings, list},
        db::ModuleMigrations,
        jwks::JwksVerifier,
        messaging::{EventPublisher, InProcessBus},
        nats::{self, NatsPublisher},
        service_auth::ServiceCredential,
        service_client::ServiceClient,
    },
};

/// Default settings of each split binary, applied under the operator's configuration.
pub const GATEWAY_DEFAULTS: &[(&str, &str)] =
    &[("topology.local_modules", ""), ("topology.proxy", "true")];
pub const USERS_DEFAULTS: &[(&str, &str)] = &[
    ("topology.local_modules", "users"),
    ("server.bind", "127.0.0.1:9091"),
    ("database.url", "sqlite://data/users.db"),
    ("gateway.auth_rate_per_minute", "0"),
];
pub const EVENTS_DEFAULTS: &[(&str, &str)] = &[
    ("topology.local_modules", "events"),
    ("server.bind", "127.0.0.1:9000"),
    ("database.url", "sqlite://data/events.db"),
    ("gateway.auth_rate_per_minute", "0"),
];

/// Builds and binds one process of the split topology.
pub async fn build(settings: Settings) -> Result<Application, String> {
    let hosts_users = settings.hosts("users");
    let hosts_events = settings.hosts("events");
    let is_gateway = settings.topology.proxy;
    if (hosts_users || !is_gateway) && settings.service.credential.is_empty() {
        return Err("service.credential: required in the split topology (a shared secret for internal calls)".into());
    }

    let mut migrations: Vec<&'static ModuleMigrations> = Vec::new();
    if hosts_users {
        migrations.push(&users::MIGRATIONS);
    }
    if hosts_events {
        migrations.push(&events::MIGRATIONS);
    }
    let db = if migrations.is_empty() {
        None
    } else {
        Some(connect(&settings, &migrations).await?)
    };
    let client = |module: &'static str, urls: &str| -> Result<Arc<ServiceClient>, String> {
        Ok(Arc::new(ServiceClient::new(
            module,
            list(urls),
            &settings.service,
        )?))
    };

    // The users module: here, or behind its client and its published keys.
    let outbox_wakeup = Arc::new(Notify::new());
    let deleted = deleted_accounts(&settings);
    let (users_local, users_api, verifier): (_, Arc<dyn UsersApi>, Arc<dyn TokenVerifier>) =
        if hosts_users {
            let service = users_service(
                &settings,
                db.clone().expect("users has a database"),
                outbox_wakeup.clone(),
                deleted.clone(),
            )
            .await?;
            let verifier = KeySetVerifier::new(&settings.auth.issuer, &service.keys().jwks())
                .map_err(|e| e.to_string())?;
            (Some(service.clone()), service, Arc::new(verifier))
        } else {
            // Profiles come from the internal API; the signing keys from the public JWKS.
            let internal = if settings.upstreams.users_internal.is_empty() {
                &settings.upstreams.users
            } else {
                &settings.upstreams.users_internal
            };
            let verifier = JwksVerifier::new(
                settings.auth.issuer.clone(),
                client("users", &settings.upstreams.users)?,
            );
            (
                None,
                Arc::new(UsersClient::new(client("users", internal)?)),
                Arc::new(verifier),
            )
        };

    let verifier = token_verifier(verifier, &deleted);
    let events_local = match hosts_events {
        true => Some(
            events_service(
                db.clone().expect("events has a database"),
                users_api.clone(),
                deleted,
            )
            .await?,
        ),
        false => None,
    };

    // Domain events: in process when both modules are here, through NATS JetStream otherwise.
    if let Some(events) = &events_local
        && !hosts_users
    {
        let js = nats::connect(&settings.nats).await?;
        nats::spawn_consumer(
            js,
            settings.nats.clone(),
            Arc::new(UserDeletedHandler(events.clone())),
        );
    }
    if let Some(users) = &users_local
        && settings.outbox.relay_enabled
    {
        let publisher: Arc<dyn EventPublisher> = match &events_local {
            Some(events) => Arc::new(
                InProcessBus::default().subscribe(Arc::new(UserDeletedHandler(events.clone()))),
            ),
            None => Arc::new(NatsPublisher::new(
                nats::connect(&settings.nats).await?,
                &settings.nats,
            )),
        };
        let poll = Duration::from_millis(settings.outbox.poll_interval_ms);
        OutboxRelay::new(users.db().clone(), publisher, outbox_wakeup, poll).spawn();
    }

    // The gateway role: proxy the public routes of the modules hosted elsewhere.
    let proxy = if is_gateway {
        let mut upstreams = Vec::new();
        if !hosts_users {
            upstreams.push(Upstream::new(
                "users",
                list(&settings.upstreams.users),
                settings.upstreams.max_in_flight,
            ));
        }
        if !hosts_events {
            upstreams.push(Upstream::new(
                "events",
                list(&settings.upstreams.events),
                settings.upstreams.max_in_flight,
            ));
        }
        let routes = Routes::parse(&settings.gateway.routes)?;
        let proxy = Arc::new(Proxy::new(
            routes,
            upstreams,
            Duration::from_millis(settings.service.call_timeout_ms.max(10_000)),
        )?);
        proxy.spawn_health_checks(Duration::from_millis(settings.upstreams.health_interval_ms));
        Some(proxy)
    } else {
        None
    };

    let readiness = Arc::new(SplitReadiness {
        database: DatabaseReadiness(db),
        proxy: proxy.clone(),
    });
    let gateway = Gateway::new(&settings, readiness);
    let listener = TcpListener::bind(&settings.server.bind)
        .map_err(|e| format!("cannot bind {}: {e}", settings.server.bind))?;
    // Internal endpoints never share the public entry's listener: a gateway hosting the users
    // module serves them on `service.internal_bind` only.
    let internal_listener = match (
        is_gateway && hosts_users,
        settings.service.internal_bind.as_str(),
    ) {
        (true, "") => None,
        (true, bind) => {
            Some(TcpListener::bind(bind).map_err(|e| format!("cannot bind {bind}: {e}"))?)
        }
        (false, _) => None,
    };
    let serve_internal = hosts_users && !is_gateway;
    let credential = web::Data::new(ServiceCredential(settings.service.credential.clone()));

    let internal_server = match (internal_listener, &users_local) {
        (Some(internal), Some(users)) => {
            let (users, credential, gateway) = (users.clone(), credential.clone(), gateway.clone());
            let server = HttpServer::new(move || {
                let (users, credential) = (users.clone(), credential.clone());
                gateway.clone().app(move |cfg| {
                    cfg.app_data(web::Data::from(users))
                        .app_data(credential)
                        .configure(users::internal::configure);
                })
            })
            .workers(2)
            .client_request_timeout(settings.server.header_timeout())
            .listen(internal)
            .map_err(|e| e.to_string())?
            .run();
            Some(server)
        }
        _ => None,
    };

    let mut server = HttpServer::new(move || {
        let (users_local, events_local, users_api, verifier, proxy, credential) = (
            users_local.clone(),
            events_local.clone(),
            users_api.clone(),
            verifier.clone(),
            proxy.clone(),
            credential.clone(),
        );
        gateway.clone().app(move |cfg| {
            cfg.app_data(web::Data::from(verifier))
                .app_data(web::Data::from(users_api))
                .app_data(credential);
            if let Some(proxy) = proxy {
                cfg.app_data(web::Data::from(proxy));
            }
            if let Some(users) = users_local {
                cfg.app_data(web::Data::from(users))
                    .configure(users::configure);
                if serve_internal {
                    cfg.configure(users::internal::configure);
                }
            }
            if let Some(events) = events_local {
                cfg.app_data(web::Data::from(events))
                    .configure(events::configure);
            }
        })
    });
    server = server.client_request_timeout(settings.server.header_timeout());
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    server = server
        .listen(listener.try_clone().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mut app = Application::new(&listener, server.run()).map_err(|e| e.to_string())?;
    if let Some(internal) = internal_server {
        app = app.with(internal);
    }
    tracing::info!(port = app.port(), modules = %settings.topology.local_modules, gateway = is_gateway, topology = "split", "listening");
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

/// The `main` of every split binary: its defaults, then the operator's configuration.
pub fn main(defaults: &[(&str, &str)]) -> std::process::ExitCode {
    let settings = match Settings::load_for(defaults) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("rsvp: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rsvp: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        crate::platform::telemetry::init(&settings.log);
        let result = match build(settings).await {
            Ok(app) => app.run_until_stopped().await.map_err(|e| e.to_string()),
            Err(err) => Err(err),
        };
        match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %err, "rsvp stopped");
                eprintln!("rsvp: {err}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
