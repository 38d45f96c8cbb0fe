//! The users module's declaration: what it serves, publishes and needs, and how a process
//! stands it up here or reaches it elsewhere.

use std::sync::Arc;

use actix_web::web;
use futures_util::FutureExt;

use super::{
    AuthSettings, MIGRATIONS, RememberDeletions, SigningKeys, USER_DELETED, UsersApi, UsersService,
    handlers,
};
use crate::{
    modules::hosting::{HostError, Hosted, Module, Process, mount},
    platform::{
        auth::{KeySetVerifier, TokenVerifier},
        db::spawn_blocking_in_span,
        read_cache::CacheSettings,
    },
};
use modkit::{Declaration, events::Subscription};

/// The users module.
pub static MODULE: Module = Module {
    declaration: Declaration {
        name: "users",
        routes: &["/api/auth", "/api/users", "/.well-known"],
        publishes: &[USER_DELETED],
        consumes: &[],
        default_url: "http://127.0.0.1:9091",
    },
    migrations: &MIGRATIONS,
    api_doc: || <handlers::ApiDoc as utoipa::OpenApi>::openapi(),
    // `auth` is every process's (tokens are verified everywhere): its defaults are the config's.
    settings: &[],
    host: |process| host(process).boxed(),
    #[cfg(feature = "split")]
    remote,
};

/// Every process that verifies tokens learns every deletion, hosting the module or not: a
/// broadcast, replayed from one token lifetime back at start.
fn deletions(process: &Process) -> Subscription {
    Subscription::broadcast(
        Arc::new(RememberDeletions(process.deleted.clone())),
        process.deleted.remembered_for(),
    )
}

/// The service with its signing key (loaded, or generated on first start), remembering the
/// deletions of the last token lifetime. (Also for tools and tests that need the service itself.)
pub async fn service(process: &Process) -> Result<Arc<UsersService>, HostError> {
    let auth: AuthSettings = process.section("auth")?;
    let (db, deleted, changes, apis) = (
        process.db()?,
        process.deleted.clone(),
        process.changes.clone(),
        process.apis.clone(),
    );
    let public_url: String = process.section("server.public_url")?;
    let cache: CacheSettings = process.section("cache")?;
    let metrics = process.cache_metrics.clone();
    let service = spawn_blocking_in_span(move || -> Result<_, HostError> {
        let retired: Vec<std::path::PathBuf> = auth
            .retired_signing_key_paths
            .iter()
            .map(Into::into)
            .collect();
        let keys = Arc::new(SigningKeys::load(&auth.signing_key_path, &retired)?);
        Ok(UsersService::new(
            db,
            keys,
            auth,
            deleted,
            changes,
            (&cache, &metrics),
            apis,
            public_url,
        )?)
    })
    .await??;
    service.recall_deleted_accounts().await?;
    Ok(Arc::new(service))
}

/// Here: the service; its own keys verify tokens.
async fn host(process: &mut Process) -> Result<Hosted, HostError> {
    let service = service(process).await?;
    let issuer = process.section::<AuthSettings>("auth")?.issuer;
    let keys = KeySetVerifier::new(&issuer, &service.keys().jwks())?;
    process.apis.provide::<dyn UsersApi>(service.clone());
    process.apis.provide::<dyn TokenVerifier>(Arc::new(keys));
    let (public, internal) = (service.clone(), service.clone());
    Ok(Hosted {
        routes: Some(mount(move |cfg| {
            cfg.app_data(web::Data::from(public.clone()))
                .configure(handlers::configure);
        })),
        internal: Some(mount(move |cfg| {
            super::serve_users_api(cfg, internal.clone());
        })),
        subscriptions: vec![deletions(process)],
        outbox: Some(service.outbox().clone()),
        ..Hosted::default()
    })
}

/// Elsewhere: profiles from its internal endpoint, keys from its public JWKS.
#[cfg(feature = "split")]
fn remote(process: &mut Process) -> Result<Vec<Subscription>, HostError> {
    let auth: AuthSettings = process.section("auth")?;
    let api = super::UsersApiRemote::new(process.client("users", true)?);
    let keys =
        crate::platform::jwks::JwksVerifier::new(auth.issuer, process.client("users", false)?);
    process.apis.provide::<dyn UsersApi>(Arc::new(api));
    process.apis.provide::<dyn TokenVerifier>(Arc::new(keys));
    Ok(vec![deletions(process)])
}
