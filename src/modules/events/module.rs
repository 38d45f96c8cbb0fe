//! The events module's declaration: what it serves, publishes and consumes, and how a process
//! stands it up here or reaches it elsewhere.

use std::sync::Arc;

use actix_web::web;
use futures_util::FutureExt;

use super::{
    EVENT_CANCELLED, EVENT_CHANGED, EventsApi, EventsService, MIGRATIONS, SEAT_OBTAINED,
    UserDeletedHandler, handlers,
};
use crate::{
    modules::{
        hosting::{HostError, Hosted, Module, Process, mount},
        users::{USER_DELETED, UsersApi},
    },
    platform::read_cache::CacheSettings,
};
use modkit::{Declaration, events::Subscription};

/// The events module.
pub static MODULE: Module = Module {
    declaration: Declaration {
        name: "events",
        routes: &[
            "/api/events",
            "/api/users/me/registrations",
            "/api/users/me/calendar-feed",
            "/api/calendar",
            "/events",
        ],
        publishes: &[SEAT_OBTAINED, EVENT_CANCELLED, EVENT_CHANGED],
        consumes: &[USER_DELETED],
        default_url: "http://127.0.0.1:9000",
    },
    migrations: &MIGRATIONS,
    api_doc: || <handlers::ApiDoc as utoipa::OpenApi>::openapi(),
    settings: &[],
    host: |process| host(process).boxed(),
    #[cfg(feature = "split")]
    remote,
};

/// The service, asking the users module for names, remembering the deletions it learnt of
/// before this start; the deletion cascade runs once per deletion (a work queue).
async fn host(process: &mut Process) -> Result<Hosted, HostError> {
    let cache: CacheSettings = process.section("cache")?;
    let service = EventsService::new(
        process.db()?,
        process.apis.get::<dyn UsersApi>()?,
        process.deleted.clone(),
        process.changes.clone(),
        &cache,
        &process.cache_metrics,
        process.section("server.public_url")?,
    );
    service.recall_deleted_accounts().await?;
    let service = Arc::new(service);
    process.apis.provide::<dyn EventsApi>(service.clone());
    let (public, internal) = (service.clone(), service.clone());
    Ok(Hosted {
        routes: Some(mount(move |cfg| {
            cfg.app_data(web::Data::from(public.clone()))
                .configure(handlers::configure);
        })),
        internal: Some(mount(move |cfg| {
            super::serve_events_api(cfg, internal.clone());
        })),
        subscriptions: vec![Subscription::work_queue(Arc::new(UserDeletedHandler(
            service.clone(),
        )))],
        outbox: Some(service.outbox().clone()),
        background: vec![Box::pin(keep_indexing(service.clone()))],
        ..Hosted::default()
    })
}

/// Indexes for search the events that have no search text yet — from before search existed
/// (at start, in the background: a large database is served meanwhile, its old events found as
/// they are indexed), or written by an older version during a rolling upgrade (every minute).
async fn keep_indexing(service: Arc<EventsService>) {
    loop {
        match service.index_unindexed().await {
            Ok(0) => {}
            Ok(indexed) => tracing::info!(indexed, "events indexed for search"),
            Err(err) => {
                tracing::warn!(error = %err, "events not indexed for search yet; will retry")
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
}

/// Elsewhere: the seats of upcoming events through its internal endpoint.
#[cfg(feature = "split")]
fn remote(process: &mut Process) -> Result<Vec<Subscription>, HostError> {
    let api = super::EventsApiRemote::new(process.client("events", true)?);
    process.apis.provide::<dyn EventsApi>(Arc::new(api));
    Ok(Vec::new())
}
