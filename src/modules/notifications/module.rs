//! The notifications module's declaration: what it serves, consumes and offers, and how a
//! process stands it up here (with its mail worker) or reaches it elsewhere.

use std::{path::PathBuf, sync::Arc, time::Duration};

use actix_web::web;
use futures_util::FutureExt;
use tokio::sync::Notify;

use super::{
    MIGRATIONS, MailSettings, NotificationsApi, NotificationsService, handlers,
    mail::{MailMetrics, MailWorker, Mailer},
    service::DomainEvents,
};
use crate::modules::{
    events::{EVENT_CANCELLED, EVENT_CHANGED, EventsApi, SEAT_OBTAINED},
    hosting::{HostError, Hosted, Module, Process, mount},
    users::{USER_DELETED, UsersApi},
};
use modkit::{Declaration, events::Subscription};

/// The notifications module.
pub static MODULE: Module = Module {
    declaration: Declaration {
        name: "notifications",
        routes: &[
            "/api/users/me/notifications",
            "/api/users/me/notification-settings",
            "/api/notifications",
        ],
        publishes: &[],
        consumes: &[SEAT_OBTAINED, EVENT_CANCELLED, EVENT_CHANGED, USER_DELETED],
        default_url: "http://127.0.0.1:9092",
    },
    migrations: &MIGRATIONS,
    api_doc: || <handlers::ApiDoc as utoipa::OpenApi>::openapi(),
    settings: &[
        ("smtp.url", ""),
        ("smtp.from", "rsvp <noreply@localhost>"),
        ("smtp.password_file", ""),
        ("smtp.ca_file", ""),
        ("notifications.mail_dir", "data/mail"),
        ("notifications.poll_interval_ms", "1000"),
        ("notifications.reminder_interval_ms", "60000"),
        ("notifications.give_up_after_hours", "72"),
        ("notifications.keep_days", "30"),
        ("notifications.prune_interval_ms", "3600000"),
    ],
    host: |process| host(process).boxed(),
    #[cfg(feature = "split")]
    remote,
};

/// Here: the service, its mail worker, and its domain-event handler (a work queue: one
/// instance tells each person once).
async fn host(process: &mut Process) -> Result<Hosted, HostError> {
    let smtp: MailSettings = process.section("smtp")?;
    let mail_dir: PathBuf = process.section::<String>("notifications.mail_dir")?.into();
    let poll = Duration::from_millis(
        process
            .section::<u64>("notifications.poll_interval_ms")?
            .max(10),
    );
    let public_url: String = process.section("server.public_url")?;
    let reminder_interval = Duration::from_millis(
        process
            .section::<u64>("notifications.reminder_interval_ms")?
            .max(10),
    );
    let hours = process.section::<u32>("notifications.give_up_after_hours")?;
    let give_up_after = chrono::Duration::hours(i64::from(hours.max(1)));
    let keep = chrono::Duration::days(i64::from(
        process.section::<u32>("notifications.keep_days")?.max(1),
    ));
    let prune_every = Duration::from_millis(
        process
            .section::<u64>("notifications.prune_interval_ms")?
            .max(10),
    );
    let events = process.apis.get::<dyn EventsApi>()?;
    let mailer = Arc::new(Mailer::new(&smtp, mail_dir)?);
    tracing::info!(to = %mailer.describe(), "mail");
    let wakeup = Arc::new(Notify::new());
    let service = Arc::new(NotificationsService::new(
        process.db()?,
        process.apis.get::<dyn UsersApi>()?,
        public_url,
        wakeup.clone(),
        mailer.clone(),
    ));
    process
        .apis
        .provide::<dyn NotificationsApi>(service.clone());
    let metrics = MailMetrics::default();
    let worker = MailWorker {
        db: process.db()?,
        mailer,
        wakeup,
        metrics: metrics.clone(),
        poll,
        give_up_after,
        keep,
        prune_every,
    };
    let (public, internal, reminders) = (service.clone(), service.clone(), service.clone());
    Ok(Hosted {
        routes: Some(mount(move |cfg| {
            cfg.app_data(web::Data::from(public.clone()))
                .configure(handlers::configure);
        })),
        internal: Some(mount(move |cfg| {
            super::serve_notifications_api(cfg, internal.clone());
        })),
        subscriptions: vec![Subscription::work_queue(Arc::new(DomainEvents(service)))],
        outbox: None,
        background: vec![
            Box::pin(worker.run()),
            Box::pin(remind(reminders, events, reminder_interval)),
        ],
        collectors: metrics.collectors(),
    })
}

/// Reminds, every `interval`, the people with a seat at an event starting within a day.
async fn remind(
    service: Arc<NotificationsService>,
    events: Arc<dyn EventsApi>,
    interval: Duration,
) {
    loop {
        match service.send_reminders(events.as_ref()).await {
            Ok(0) => {}
            Ok(reminded) => tracing::info!(reminded, "reminders sent"),
            Err(err) => tracing::warn!(error = %err, "reminders postponed"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Elsewhere: the password-reset mail through its internal endpoint.
#[cfg(feature = "split")]
fn remote(process: &mut Process) -> Result<Vec<Subscription>, HostError> {
    let api = super::NotificationsApiRemote::new(process.client("notifications", true)?);
    process.apis.provide::<dyn NotificationsApi>(Arc::new(api));
    Ok(Vec::new())
}
