//! The monolith: the gateway and every module in one process on one database. Cross-module
//! calls are plain method calls and domain events go from each outbox through an in-process bus.

use std::{sync::Arc, time::Duration};

use actix_web::web;
use modkit::events::InProcessBus;

use super::{
    Application, DatabaseReadiness, StartError, bind, compose, http_shell, metrics_listener, serve,
};
use crate::config::Settings;

/// Builds and binds the monolith; call [`Application::run_until_stopped`] to serve.
pub async fn build(settings: Settings) -> Result<Application, StartError> {
    let mut composed = compose(&settings, |_| true).await?;
    let verifier = composed.token_verifier()?;

    // One instance: a work queue and a broadcast are the same delivery here.
    let bus = composed
        .hosted
        .iter()
        .flat_map(|(_, hosted)| &hosted.subscriptions)
        .fold(InProcessBus::default(), |bus, s| {
            bus.subscribe(s.handler.clone())
        });
    let bus = Arc::new(bus);
    let poll = Duration::from_millis(settings.outbox.poll_interval_ms);
    let relays: Vec<_> = match settings.outbox.relay_enabled {
        true => composed
            .outboxes()
            .map(|outbox| outbox.relay(bus.clone(), poll).spawn())
            .collect(),
        false => Vec::new(),
    };

    let readiness = Arc::new(DatabaseReadiness(composed.process.db().ok()));
    let mut shell = http_shell(&settings, readiness, &mut composed)?;
    let background = composed.spawn_background();
    let metrics = metrics_listener(&settings, &mut shell)?;
    let listener = bind(&settings.server.bind.to_string())?;
    let routes = composed.public_routes();
    let server = serve(&settings.server, &listener, shell, None, move |cfg| {
        cfg.app_data(web::Data::from(verifier.clone()));
        for mount in &routes {
            mount(cfg);
        }
    })?;
    let mut app = Application::new(&listener, server)?;
    if let Some(metrics) = metrics {
        app = app.with(metrics);
    }
    for task in relays.iter().chain(&background) {
        app = app.with_task(task);
    }
    tracing::info!(port = app.port(), topology = "monolith", "listening");
    Ok(app)
}
