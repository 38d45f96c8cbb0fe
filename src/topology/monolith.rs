//! The monolith: gateway, users and events in one process on one database. Cross-module calls
//! are plain method calls and domain events go through an in-process bus.

use std::{sync::Arc, time::Duration};

use actix_web::web;
use modkit::events::InProcessBus;

use super::{
    Application, DatabaseReadiness, ReadCaching, StartError, bind, connect, deleted_accounts,
    events_service, http_shell, metrics_listener, serve, token_verifier, users_service,
};
use crate::{
    config::Settings,
    modules::{
        events::{self, UserDeletedHandler},
        users::{self, UsersApi},
    },
    platform::auth::KeySetVerifier,
};

/// Builds and binds the monolith; call [`Application::run_until_stopped`] to serve.
pub async fn build(settings: Settings) -> Result<Application, StartError> {
    let db = connect(&settings, &[&users::MIGRATIONS, &events::MIGRATIONS]).await?;
    let deleted = deleted_accounts(&settings);
    let reads = ReadCaching::default();
    let users = users_service(
        &settings,
        db.clone(),
        deleted.clone(),
        reads.changes.clone(),
    )
    .await?;
    let verifier = token_verifier(
        Arc::new(KeySetVerifier::new(
            &settings.auth.issuer,
            &users.keys().jwks(),
        )?),
        &deleted,
    );
    let users_api: Arc<dyn UsersApi> = users.clone();
    let events = events_service(&settings, db.clone(), users_api.clone(), deleted, &reads).await?;

    let relay = settings.outbox.relay_enabled.then(|| {
        let bus = InProcessBus::default().subscribe(Arc::new(UserDeletedHandler(events.clone())));
        let poll = Duration::from_millis(settings.outbox.poll_interval_ms);
        users.outbox_relay(Arc::new(bus), poll).spawn()
    });

    let mut shell = http_shell(&settings, Arc::new(DatabaseReadiness(Some(db))), &reads)?;
    let metrics = metrics_listener(&settings, &mut shell)?;
    let listener = bind(&settings.server.bind.to_string())?;
    let server = serve(&settings.server, &listener, shell, None, move |cfg| {
        cfg.app_data(web::Data::from(users.clone()))
            .app_data(web::Data::from(events.clone()))
            .app_data(web::Data::from(verifier.clone()))
            .configure(users::configure)
            .configure(events::configure);
    })?;
    let mut app = Application::new(&listener, server)?;
    if let Some(metrics) = metrics {
        app = app.with(metrics);
    }
    if let Some(relay) = &relay {
        app = app.with_task(relay);
    }
    tracing::info!(port = app.port(), topology = "monolith", "listening");
    Ok(app)
}

/// Why `make-admin` could not promote an account.
#[derive(Debug, thiserror::Error)]
pub enum MakeAdminError {
    #[error("no account with email {0}")]
    NoSuchAccount(String),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Users(users::UsersError),
}

/// Gives an existing account the admin role.
pub async fn make_admin(settings: Settings, email: &str) -> Result<(), MakeAdminError> {
    let db = connect(&settings, &[&users::MIGRATIONS]).await?;
    let changes = ReadCaching::default().changes;
    let users = users_service(&settings, db, deleted_accounts(&settings), changes).await?;
    users.promote_to_admin(email).await.map_err(|e| match e {
        users::UsersError::NotFound => MakeAdminError::NoSuchAccount(email.to_owned()),
        other => MakeAdminError::Users(other),
    })
}
