//! The notifications module's rules: what each domain event tells whom, in the app and by mail
//! (as each person's settings say), once per cause and person; the in-app list and settings;
//! one-click unsubscribe; the password-reset mail other modules ask for.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    EmailSettings, Kind, Notification, NotificationPage, NotificationsApi, NotificationsApiError,
    NotificationsError, PasswordResetMail,
    mail::Mailer,
    store::{self, MailRow, NotificationRow},
};
use crate::{
    modules::{
        events::{
            EVENT_CANCELLED, EVENT_CHANGED, EventCancelled, EventChanged, EventSummary, EventsApi,
            SEAT_OBTAINED, SeatObtained,
        },
        users::{Contact, USER_DELETED, UserDeleted, UsersApi},
    },
    platform::{
        db::{Db, DbError},
        html::escape,
        now,
        outbox::Inbox,
        pagination::{PageRequest, into_page},
        problem::Problem,
        secret,
        zone::Zone,
    },
};
use modkit::events::{DeliveryError, DomainEvent, EventHandler};

/// The ids of the domain events this module handled.
const INBOX: Inbox = Inbox("notifications_inbox");

/// People reminded per round trip (a `contacts` call, a lookup of who was reminded).
const REMINDED_AT_ONCE: usize = 500;

/// The in-process implementation of the notifications module.
pub struct NotificationsService {
    db: Db,
    users: Arc<dyn UsersApi>,
    /// The base of links in mail (`server.public_url`).
    public_url: String,
    /// Wakes the mail worker once a mail was queued.
    mail_wakeup: Arc<Notify>,
    /// Where mail goes: a forgotten person's mail files are deleted with their rows.
    mailer: Arc<Mailer>,
}

/// What one person is told: the notification's text, and the mail's.
struct Message {
    title: String,
    body: String,
    event_id: Option<Uuid>,
}

impl NotificationsService {
    /// The module on `db`, asking `users` where to write to people.
    pub fn new(
        db: Db,
        users: Arc<dyn UsersApi>,
        public_url: String,
        mail_wakeup: Arc<Notify>,
        mailer: Arc<Mailer>,
    ) -> Self {
        Self {
            db,
            users,
            public_url: public_url.trim_end_matches('/').to_owned(),
            mail_wakeup,
            mailer,
        }
    }

    /// A page of `user`'s notifications, newest first, with the unread count.
    pub async fn list(
        &self,
        user: Uuid,
        page: PageRequest,
    ) -> Result<NotificationPage, NotificationsError> {
        let (rows, unread) = self
            .db
            .run(move |conn| {
                Ok::<_, NotificationsError>((
                    store::page_of(conn, user, page)?,
                    store::unread_count(conn, user)?,
                ))
            })
            .await?;
        let page = into_page(rows, page, store::cursor_of, Notification::try_from);
        Ok(NotificationPage {
            items: page.items.into_iter().collect::<Result<_, _>>()?,
            next_cursor: page.next_cursor,
            unread,
        })
    }

    /// Marks `user`'s notification `id` read (or unread again).
    pub async fn mark(
        &self,
        user: Uuid,
        id: Uuid,
        read: bool,
    ) -> Result<Notification, NotificationsError> {
        let row = self
            .db
            .write(move |conn| {
                store::set_read(conn, user, id, read.then(now)).map_err(NotificationsError::from)
            })
            .await?;
        row.ok_or(NotificationsError::NotFound)?.try_into()
    }

    /// `user`'s mail settings.
    pub async fn settings(&self, user: Uuid) -> Result<EmailSettings, NotificationsError> {
        Ok(self
            .db
            .run(move |conn| store::settings_of(conn, user).map_err(DbError::from))
            .await?)
    }

    /// Replaces `user`'s mail settings.
    pub async fn save_settings(
        &self,
        user: Uuid,
        settings: EmailSettings,
    ) -> Result<EmailSettings, NotificationsError> {
        self.db
            .write(move |conn| {
                // An account deleted meanwhile (its token still valid for an instant) keeps
                // nothing here.
                if store::forgotten(conn, user)? {
                    return Err(NotificationsError::from(Problem::unauthorized(
                        "the account of this token no longer exists",
                    )));
                }
                store::save_settings(conn, user, settings, now())?;
                Ok(())
            })
            .await?;
        Ok(settings)
    }

    /// Switches off the kind of mail `token` was sent with; the same link twice is fine.
    pub async fn unsubscribe(&self, token: String) -> Result<Kind, NotificationsError> {
        self.db
            .write(move |conn| {
                let (user, kind) = store::unsubscribed_by(conn, &token)?
                    .ok_or(NotificationsError::UnknownUnsubscribe)?;
                let kind = Kind::parse(&kind).ok_or(NotificationsError::CorruptRow {
                    table: "unsubscribe_tokens",
                    why: format!("kind {kind:?}"),
                })?;
                let user: Uuid = user.parse().map_err(|e| NotificationsError::CorruptRow {
                    table: "unsubscribe_tokens",
                    why: format!("user_id: {e}"),
                })?;
                if store::forgotten(conn, user)? {
                    return Err(NotificationsError::UnknownUnsubscribe);
                }
                let settings = store::settings_of(conn, user)?.without(kind);
                store::save_settings(conn, user, settings, now())?;
                Ok(kind)
            })
            .await
    }

    /// Tells `recipients` what `message` says, in the app and by mail of `kind`, once per domain
    /// event `cause` and person. Asks the users module where to write first: while it can not
    /// answer, the domain event is delivered again later.
    async fn notify(
        &self,
        cause: &DomainEvent,
        kind: Kind,
        recipients: &[Uuid],
        message: impl Fn(&Contact) -> Message + Send + 'static,
    ) -> Result<(), DeliveryError> {
        let contacts = self
            .users
            .contacts(recipients)
            .await
            .map_err(DeliveryError::because)?;
        let (cause_id, topic) = (cause.id, cause.topic.clone());
        let public_url = self.public_url.clone();
        let queued = self
            .db
            .write(move |conn| {
                let at = now();
                if !INBOX.first_time(conn, cause_id, &topic, at)? {
                    return Ok::<_, NotificationsError>(false);
                }
                let mut queued = false;
                // Accounts deleted meanwhile have no contact: nobody to tell.
                for contact in &contacts {
                    let key = format!("{cause_id}:{}", contact.id);
                    queued |= tell(conn, &public_url, kind, contact, &message(contact), key)?;
                }
                Ok(queued)
            })
            .await
            .map_err(DeliveryError::because)?;
        if queued {
            self.mail_wakeup.notify_one();
        }
        Ok(())
    }

    /// Reminds everyone with a seat at an event starting within a day: once per person and
    /// start (an event moved later reminds again), whichever instance runs it, however often.
    pub async fn send_reminders(
        &self,
        events: &dyn EventsApi,
    ) -> Result<usize, NotificationsError> {
        let at = now();
        let upcoming = events
            .seats_starting_between(at, at + chrono::Duration::hours(24))
            .await
            .map_err(|e| Problem::unavailable(e.to_string(), 5))?;
        let mut reminded = 0;
        for seats in upcoming {
            // A few hundred people a time (a call and a query stay small), and one event that
            // fails is retried at the next look without holding back the others.
            for people in seats.users.chunks(REMINDED_AT_ONCE) {
                match self.remind(&seats.event, people).await {
                    Ok(n) => reminded += n,
                    Err(err) => {
                        tracing::warn!(event_id = %seats.event.id, error = %err, "reminders of an event postponed")
                    }
                }
            }
        }
        Ok(reminded)
    }

    /// Reminds those of `people` not yet reminded of `event` at its current start.
    async fn remind(
        &self,
        event: &EventSummary,
        people: &[Uuid],
    ) -> Result<usize, NotificationsError> {
        let (id, starts) = (event.id, event.starts_at.timestamp());
        let key = move |user: Uuid| format!("reminder:{id}:{starts}:{user}");
        let keys: Vec<String> = people.iter().map(|u| key(*u)).collect();
        let done = self
            .db
            .run(move |conn| store::existing_keys(conn, &keys).map_err(DbError::from))
            .await?;
        let due: Vec<Uuid> = people
            .iter()
            .copied()
            .filter(|u| !done.contains(&key(*u)))
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let contacts = self
            .users
            .contacts(&due)
            .await
            .map_err(|e| Problem::unavailable(e.to_string(), 5))?;
        let said = Message {
            title: format!("Coming up: {}", event.title),
            body: format!(
                "A reminder: \"{}\" is {}.",
                event.title,
                when_and_where(event)
            ),
            event_id: Some(event.id),
        };
        let public_url = self.public_url.clone();
        let queued = self
            .db
            .write(move |conn| {
                let mut queued = false;
                for contact in &contacts {
                    queued |= tell(
                        conn,
                        &public_url,
                        Kind::Reminders,
                        contact,
                        &said,
                        key(contact.id),
                    )?;
                }
                Ok::<_, NotificationsError>(queued)
            })
            .await?;
        if queued {
            self.mail_wakeup.notify_one();
        }
        Ok(due.len())
    }

    /// Forgets a deleted account: its notifications, settings, tokens and mail.
    async fn forget(&self, cause: &DomainEvent, user: Uuid) -> Result<(), DeliveryError> {
        let (cause_id, topic) = (cause.id, cause.topic.clone());
        let mails = self
            .db
            .write(move |conn| {
                if !INBOX.first_time(conn, cause_id, &topic, now())? {
                    return Ok::<_, NotificationsError>(Vec::new());
                }
                Ok(store::forget(conn, user, now())?)
            })
            .await
            .map_err(DeliveryError::because)?;
        self.mailer.discard(&mails).await;
        Ok(())
    }
}

/// Tells `contact` what `said` says, in the app and (as their settings say) by mail, once per
/// `key`; `true` when a mail was queued.
fn tell(
    conn: &mut crate::platform::db::DbConnection,
    public_url: &str,
    kind: Kind,
    contact: &Contact,
    said: &Message,
    key: String,
) -> diesel::QueryResult<bool> {
    if store::forgotten(conn, contact.id)? {
        return Ok(false);
    }
    let added = store::insert_notification(
        conn,
        &NotificationRow {
            id: Uuid::now_v7().to_string(),
            user_id: contact.id.to_string(),
            kind: kind.as_str().to_owned(),
            title: said.title.clone(),
            body: said.body.clone(),
            event_id: said.event_id.map(|id| id.to_string()),
            dedupe_key: key.clone(),
            created_at: now().naive_utc(),
            read_at: None,
        },
    )?;
    if !added || !store::settings_of(conn, contact.id)?.wants(kind) {
        return Ok(false);
    }
    let token = store::unsubscribe_token(conn, contact.id, kind, secret::new_secret)?;
    let unsubscribe = format!("{public_url}/api/notifications/unsubscribe?token={token}");
    let link = said
        .event_id
        .map(|id| format!("{public_url}/#/events/{id}"));
    let mail = mail_row(
        key,
        kind,
        contact,
        &said.title,
        &said.body,
        link.as_deref(),
        Some(&unsubscribe),
    );
    store::queue_mail(conn, &mail)
}

/// A queued mail to `contact`: `body` as plain text and HTML, with `link` to follow.
fn mail_row(
    dedupe_key: String,
    kind: Kind,
    contact: &Contact,
    subject: &str,
    body: &str,
    link: Option<&str>,
    unsubscribe: Option<&str>,
) -> MailRow {
    let at = now().naive_utc();
    let id = Uuid::now_v7();
    let greeting = format!("Hello {},", contact.name);
    let mut text = format!("{greeting}\n\n{body}\n");
    let mut html = format!(
        "<!doctype html><html><body><p>{}</p><p>{}</p>",
        escape(&greeting),
        escape(body).replace('\n', "<br>")
    );
    if let Some(link) = link {
        text.push_str(&format!("\n{link}\n"));
        html.push_str(&format!("<p><a href=\"{0}\">{0}</a></p>", escape(link)));
    }
    if let Some(unsubscribe) = unsubscribe {
        text.push_str(&format!(
            "\nTo stop mail like this: {unsubscribe}\n(or change your settings in rsvp)\n"
        ));
        html.push_str(&format!(
            "<p style=\"color:#555;font-size:small\">To stop mail like this, \
             <a href=\"{}\">unsubscribe</a> or change your settings in rsvp.</p>",
            escape(unsubscribe)
        ));
    }
    html.push_str("</body></html>");
    MailRow {
        message_id: format!("<{id}@rsvp>"),
        id: id.to_string(),
        dedupe_key,
        user_id: Some(contact.id.to_string()),
        kind: kind.as_str().to_owned(),
        recipient: format!("{} <{}>", quote_name(&contact.name), contact.email),
        subject: subject.to_owned(),
        text_body: text,
        html_body: html,
        unsubscribe_url: unsubscribe.map(str::to_owned),
        attempts: 0,
        next_attempt_at: at,
        claimed_until: None,
        sent_at: None,
        last_error: None,
        created_at: at,
        given_up_at: None,
    }
}

/// A display name as a quoted string of an address header.
fn quote_name(name: &str) -> String {
    let escaped: String = name
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

/// When and where, as a mail says it: the local time at the venue, in its zone.
fn when_and_where(event: &EventSummary) -> String {
    let zone = Zone::or_utc(&event.time_zone);
    let mut said = zone.describe_span(event.starts_at, event.ends_at);
    if let Some(location) = &event.location {
        said.push_str(&format!(", {location}"));
    }
    said
}

#[async_trait]
impl NotificationsApi for NotificationsService {
    async fn send_password_reset(
        &self,
        mail: &PasswordResetMail,
    ) -> Result<(), NotificationsApiError> {
        let contact = Contact {
            id: mail.user_id,
            email: mail.email.clone(),
            name: mail.name.clone(),
        };
        let body = format!(
            "Someone (we hope you) asked to reset your rsvp password. Choose a new one with \
             this link before {} (UTC); it works once. If it was not you, ignore this mail: \
             your password stays as it is.",
            mail.expires_at.format("%H:%M on %-d %B %Y")
        );
        // The same request twice (a retried call) is one mail.
        let key = format!("reset:{:x}", Sha256::digest(mail.link.as_bytes()));
        let row = mail_row(
            key,
            Kind::PasswordReset,
            &contact,
            "Reset your rsvp password",
            &body,
            Some(&mail.link),
            None,
        );
        // An account deleted since it asked gets no mail.
        self.db
            .write(move |conn| {
                if store::forgotten(conn, contact.id)? {
                    return Ok::<_, DbError>(false);
                }
                Ok(store::queue_mail(conn, &row)?)
            })
            .await
            .map_err(|e| NotificationsApiError::Unavailable(e.to_string()))?;
        self.mail_wakeup.notify_one();
        Ok(())
    }
}

/// The domain events the module consumes, as one work-queue handler.
pub struct DomainEvents(pub Arc<NotificationsService>);

#[async_trait]
impl EventHandler for DomainEvents {
    fn topics(&self) -> &'static [&'static str] {
        &[SEAT_OBTAINED, EVENT_CANCELLED, EVENT_CHANGED, USER_DELETED]
    }

    async fn handle(&self, event: &DomainEvent) -> Result<(), DeliveryError> {
        let service = &self.0;
        let payload = |what: &str| {
            let what = what.to_owned();
            move |e: serde_json::Error| DeliveryError::because(format!("malformed {what}: {e}"))
        };
        match event.topic.as_str() {
            SEAT_OBTAINED => {
                let seat: SeatObtained = serde_json::from_value(event.payload.clone())
                    .map_err(payload(SEAT_OBTAINED))?;
                let about = seat.event.clone();
                service
                    .notify(event, Kind::Promotion, &[seat.user_id], move |_| Message {
                        title: format!("You got a seat: {}", about.title),
                        body: format!(
                            "A seat came free and it is yours: you are now confirmed for \
                             \"{}\", {}.",
                            about.title,
                            when_and_where(&about)
                        ),
                        event_id: Some(about.id),
                    })
                    .await
            }
            EVENT_CANCELLED => {
                let cancelled: EventCancelled = serde_json::from_value(event.payload.clone())
                    .map_err(payload(EVENT_CANCELLED))?;
                let about = cancelled.event.clone();
                service
                    .notify(event, Kind::Cancellation, &cancelled.attendees, move |_| {
                        Message {
                            title: format!("Cancelled: {}", about.title),
                            body: format!(
                                "\"{}\", {}, has been cancelled by its organiser.",
                                about.title,
                                when_and_where(&about)
                            ),
                            event_id: Some(about.id),
                        }
                    })
                    .await
            }
            EVENT_CHANGED => {
                let changed: EventChanged = serde_json::from_value(event.payload.clone())
                    .map_err(payload(EVENT_CHANGED))?;
                let about = changed.event.clone();
                let what = match (changed.time_changed, changed.place_changed) {
                    (true, true) => "time and place",
                    (true, false) => "time",
                    _ => "place",
                };
                service
                    .notify(event, Kind::Changes, &changed.attendees, move |_| Message {
                        title: format!("Changed: {}", about.title),
                        body: format!(
                            "The {what} of \"{}\" changed. It is now {}.",
                            about.title,
                            when_and_where(&about)
                        ),
                        event_id: Some(about.id),
                    })
                    .await
            }
            USER_DELETED => {
                let deleted = UserDeleted::from_event(event)?;
                service.forget(event, deleted.user_id).await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_text_is_escaped_for_html_and_names_are_quoted() {
        assert_eq!(
            escape("<b>\"R&D\"</b>"),
            "&lt;b&gt;&quot;R&amp;D&quot;&lt;/b&gt;"
        );
        assert_eq!(quote_name("Ada \"the\" L\\"), "\"Ada \\\"the\\\" L\\\\\"");
        assert_eq!(quote_name("a\r\nBcc: x"), "\"aBcc: x\"");
    }
}
