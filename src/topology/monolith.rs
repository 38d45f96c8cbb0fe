//! The monolith: gateway, users and events in one process on one database. Cross-module calls
//! are plain method calls and domain events go through an in-process bus.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{HttpServer, web};
use tokio::sync::Notify;

use super::{
    Application, DatabaseReadiness, connect, deleted_accounts, events_service, token_verifier,
    users_service,
};
use crate::{
    gateway::Gateway,
    modules::{
        events::{self, UserDeletedHandler},
        users::{self, OutboxRelay, UsersApi},
    },
    platform::{auth::KeySetVerifier, config::Settings, messaging::InProcessBus},
};

/// Builds and binds the monolith; call [`Application::run_until_stopped`] to serve.
pub async fn build(settings: Settings) -> Result<Application, String> {
    let db = connect(&settings, &[&users::MIGRATIONS, &events::MIGRATIONS]).await?;
    let outbox_wakeup = Arc::new(Notify::new());
    let deleted = deleted_accounts(&settings);
    let users = users_service(
        &settings,
        db.clone(),
        outbox_wakeup.clone(),
        deleted.clone(),
    )
    .await?;
    let verifier = token_verifier(
        Arc::new(
            KeySetVerifier::new(&settings.auth.issuer, &users.keys().jwks())
                .map_err(|e| e.to_string())?,
        ),
        &deleted,
    );
    let users_api: Arc<dyn UsersApi> = users.clone();
    let events = events_service(db.clone(), users_api.clone(), deleted).await?;

    let relay = settings.outbox.relay_enabled.then(|| {
        let bus = InProcessBus::default().subscribe(Arc::new(UserDeletedHandler(events.clone())));
        let poll = Duration::from_millis(settings.outbox.poll_interval_ms);
        OutboxRelay::new(db.clone(), Arc::new(bus), outbox_wakeup, poll).spawn()
    });

    let gateway = Gateway::new(&settings, Arc::new(DatabaseReadiness(Some(db))));
    let listener = TcpListener::bind(&settings.server.bind)
        .map_err(|e| format!("cannot bind {}: {e}", settings.server.bind))?;
    let mut server = HttpServer::new(move || {
        let (users, users_api, events, verifier) = (
            users.clone(),
            users_api.clone(),
            events.clone(),
            verifier.clone(),
        );
        gateway.clone().app(move |cfg| {
            cfg.app_data(web::Data::from(users))
                .app_data(web::Data::from(users_api))
                .app_data(web::Data::from(events))
                .app_data(web::Data::from(verifier))
                .configure(users::configure)
                .configure(events::configure);
        })
    });
    server = server.client_request_timeout(settings.server.header_timeout());
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    let server = server
        .listen(listener.try_clone().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?
        .run();
    let mut app = Application::new(&listener, server).map_err(|e| e.to_string())?;
    if let Some(relay) = &relay {
        app = app.with_task(relay);
    }
    tracing::info!(port = app.port(), topology = "monolith", "listening");
    Ok(app)
}

/// Gives an existing account the admin role.
pub async fn make_admin(settings: Settings, email: &str) -> Result<(), String> {
    let db = connect(&settings, &[&users::MIGRATIONS]).await?;
    let users = users_service(
        &settings,
        db,
        Arc::new(Notify::new()),
        deleted_accounts(&settings),
    )
    .await?;
    users.promote_to_admin(email).await.map_err(|e| match e {
        users::UsersError::NotFound => format!("no account with email {email}"),
        other => other.to_string(),
    })
}
