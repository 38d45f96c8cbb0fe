//! The split build's composition root. Configuration says which modules a process hosts
//! (`topology.local_modules`) and whether it is the public entry (`topology.proxy`); [`build`]
//! stands each module of the registry up here or reaches it through its clients
//! ([`super::compose`]), relays domain events through the broker ([`relay_domain_events`]) and
//! proxies what is hosted elsewhere ([`gateway_proxy`]). That gives the pure gateway, each
//! module's service and any mixed process (say gateway + users here, the rest remote) from the
//! same code, which names no module.

use std::{sync::Arc, time::Duration};

use actix_web::web;
use async_trait::async_trait;
use secrecy::ExposeSecret;

use super::{
    Application, Composed, DatabaseReadiness, StartError, bind, compose, http_shell,
    metrics_listener, serve,
};
use crate::{
    config::{Role, Settings},
    gateway::{
        Metrics, Readiness,
        edge_cache::EdgeCache,
        proxy::{Proxy, ProxyWorker, Upstream},
    },
    modules::MODULES,
    platform::nats,
};
use modkit::events::{Delivery, EventPublisher};

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

/// Domain events of this process's modules through NATS JetStream: each outbox relayed to the
/// broker, each work-queue handler on its module's durable consumer (the module's instances
/// share it), each broadcast handler on an ordered consumer of its own. Returns the background
/// tasks it started.
async fn relay_domain_events(
    settings: &Settings,
    composed: &Composed,
) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
    let relays = settings.outbox.relay_enabled && composed.outboxes().next().is_some();
    let subscriptions = composed
        .hosted
        .iter()
        .flat_map(|(name, hosted)| hosted.subscriptions.iter().map(move |s| (Some(*name), s)))
        .chain(composed.remote_broadcasts.iter().map(|s| (None, s)));
    let subscriptions: Vec<_> = subscriptions.collect();
    if subscriptions.is_empty() && !relays {
        return Ok(Vec::new());
    }
    let mut tasks = Vec::new();
    let mut queues = std::collections::HashSet::new();
    for (module, subscription) in subscriptions {
        let consumer = match (subscription.delivery, module) {
            (Delivery::WorkQueue, Some(module)) => {
                // One durable consumer per module: a second work queue would take half its events.
                if !queues.insert(module) {
                    return Err(StartError::Module {
                        module,
                        source: "more than one work-queue handler (one handler may take any \
                                 number of topics)"
                            .into(),
                    });
                }
                format!("{}-{module}", settings.nats.consumer)
            }
            _ => String::new(),
        };
        // A connection each: a slow handler's backlog never delays another's messages.
        tasks.push(modkit::nats::spawn_subscription(
            modkit::nats::connect(&settings.nats).await?,
            settings.nats.clone(),
            consumer,
            subscription.clone(),
        ));
    }
    if relays {
        let js = modkit::nats::connect(&settings.nats).await?;
        let publisher: Arc<dyn EventPublisher> =
            Arc::new(modkit::nats::NatsPublisher::new(js, &settings.nats));
        let poll = Duration::from_millis(settings.outbox.poll_interval_ms);
        for outbox in composed.outboxes() {
            tasks.push(outbox.relay(publisher.clone(), poll).spawn());
        }
    }
    Ok(tasks)
}

/// The gateway role: proxy the public routes of the modules hosted elsewhere, with health
/// checks on their instances.
fn gateway_proxy(
    settings: &Settings,
    composed: &Composed,
    edge: Option<Arc<EdgeCache>>,
) -> Result<Arc<Proxy>, StartError> {
    let upstreams = &settings.upstreams;
    let mut remote = Vec::new();
    for module in MODULES
        .iter()
        .filter(|m| !settings.topology.hosts(m.name()))
    {
        let instances = composed
            .process
            .instances(module.name(), false)
            .map_err(|source| StartError::Module {
                module: module.name(),
                source,
            })?;
        remote.push(Upstream::new(
            module.name(),
            instances,
            upstreams.max_in_flight,
        ));
    }
    let proxy = Arc::new(Proxy::new(
        settings.gateway.routes.clone(),
        remote,
        Duration::from_millis(settings.service.call_timeout_ms.max(10_000)),
        Duration::from_millis(upstreams.queue_timeout_ms),
        composed.process.changes.clone(),
        edge,
    )?);
    proxy.spawn_health_checks(Duration::from_millis(upstreams.health_interval_ms));
    Ok(proxy)
}

/// Builds and binds one process of the split topology, composed from its roles.
pub async fn build(settings: Settings) -> Result<Application, StartError> {
    let topology = &settings.topology;
    let is_gateway = topology.proxy;
    let mut composed = compose(&settings, |name| topology.hosts(name)).await?;
    let internal = composed.internal_routes();
    if (!internal.is_empty() || !is_gateway)
        && settings.service.credential.expose_secret().is_empty()
    {
        return Err(StartError::MissingCredential);
    }
    let verifier = composed.token_verifier()?;
    let mut tasks = relay_domain_events(&settings, &composed).await?;
    let db = composed.process.db().ok();
    // Any other instance may cache what this one's modules change (names, events); a gateway
    // keeps answers that other processes' changes make stale.
    let edge = (is_gateway && settings.cache.enabled).then(|| {
        let series = composed.process.cache_metrics.series("gateway_answers");
        let edge = Arc::new(EdgeCache::new(&settings.cache, series));
        composed.process.changes.listen(edge.clone());
        edge
    });
    if db.is_some() || edge.is_some() {
        tasks
            .extend(nats::fan_out_changes(&settings.nats, composed.process.changes.clone()).await?);
    }
    let proxy = is_gateway
        .then(|| gateway_proxy(&settings, &composed, edge))
        .transpose()?;

    let readiness = Arc::new(SplitReadiness {
        database: DatabaseReadiness(db),
        proxy: proxy.clone(),
    });
    let mut shell = http_shell(&settings, readiness, &mut composed)?;
    if !is_gateway {
        shell.behind_a_gateway();
    }
    tasks.extend(composed.spawn_background());
    let metrics = metrics_listener(&settings, &mut shell)?;
    let credential = web::Data::new(settings.service.credential());
    // Internal endpoints never share the public entry's listener: a gateway hosting a module
    // serves them on `service.internal_bind` only, a service on its own listener.
    let serve_internal = !is_gateway;
    let listener = bind(&settings.server.bind.to_string())?;
    let public = {
        let (routes, internal, proxy, credential) = (
            composed.public_routes(),
            internal.clone(),
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
                    // Called on each worker thread: each gets its own client and pool.
                    cfg.app_data(ProxyWorker::new(proxy.clone()));
                }
                for mount in &routes {
                    mount(cfg);
                }
                if serve_internal {
                    for mount in &internal {
                        mount(cfg);
                    }
                }
            },
        )?
    };
    let mut app = Application::new(&listener, public)?;
    if let Some(metrics) = metrics {
        app = app.with(metrics);
    }
    if let (true, false, Some(address)) = (
        is_gateway,
        internal.is_empty(),
        settings.service.internal_bind.as_deref(),
    ) {
        let listener = bind(address)?;
        app = app.with(serve(
            &settings.server,
            &listener,
            shell,
            Some(2),
            move |cfg| {
                cfg.app_data(credential.clone());
                for mount in &internal {
                    mount(cfg);
                }
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
