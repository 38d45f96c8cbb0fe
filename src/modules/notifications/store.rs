//! The notifications module's diesel queries. Only this module's tables are named here.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::{
    EmailSettings, Kind, Notification, NotificationsError,
    schema::{
        mail_queue, notification_settings, notifications, notifications_forgotten_users,
        notifications_inbox, unsubscribe_tokens,
    },
};
use crate::platform::{
    db::{AccountLock, DbConnection, is_unique_violation},
    pagination::{Cursor, PageRequest},
};

/// A `notifications` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = notifications)]
pub struct NotificationRow {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub event_id: Option<String>,
    pub dedupe_key: String,
    pub created_at: NaiveDateTime,
    pub read_at: Option<NaiveDateTime>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = NotificationsError;

    fn try_from(row: NotificationRow) -> Result<Self, NotificationsError> {
        let corrupt = |why: String| NotificationsError::CorruptRow {
            table: "notifications",
            why: format!("{}: {why}", row.id),
        };
        Ok(Notification {
            id: row.id.parse().map_err(|e| corrupt(format!("id: {e}")))?,
            kind: Kind::parse(&row.kind).ok_or_else(|| corrupt(format!("kind {:?}", row.kind)))?,
            event_id: row
                .event_id
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| corrupt(format!("event_id: {e}")))?,
            title: row.title,
            body: row.body,
            created_at: row.created_at.and_utc(),
            read_at: row.read_at.map(|at| at.and_utc()),
        })
    }
}

/// The position of a row in its person's list (newest first).
pub fn cursor_of(row: &NotificationRow) -> Cursor {
    Cursor {
        at: row.created_at.and_utc(),
        id: row.id.parse().unwrap_or_default(),
    }
}

/// Runs `insert` in a savepoint of the caller's transaction: `false` when it met a unique
/// violation (the row exists), which on PostgreSQL would otherwise abort the whole transaction.
fn insert_new(
    conn: &mut DbConnection,
    insert: impl FnOnce(&mut DbConnection) -> QueryResult<usize>,
) -> QueryResult<bool> {
    match conn.transaction(insert) {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Adds `row` unless a notification with its dedupe key exists; `true` when added.
pub fn insert_notification(conn: &mut DbConnection, row: &NotificationRow) -> QueryResult<bool> {
    insert_new(conn, |conn| {
        diesel::insert_into(notifications::table)
            .values(row)
            .execute(conn)
    })
}

/// A page of `user`'s notifications, newest first (`limit + 1` rows).
pub fn page_of(
    conn: &mut DbConnection,
    user: Uuid,
    page: PageRequest,
) -> QueryResult<Vec<NotificationRow>> {
    let mut query = notifications::table
        .filter(notifications::user_id.eq(user.to_string()))
        .order((notifications::created_at.desc(), notifications::id.desc()))
        .limit(page.limit + 1)
        .select(NotificationRow::as_select())
        .into_boxed();
    if let Some(after) = page.after {
        let at = after.at.naive_utc();
        query = query.filter(
            notifications::created_at
                .lt(at)
                .or(notifications::created_at
                    .eq(at)
                    .and(notifications::id.lt(after.id.to_string()))),
        );
    }
    query.load(conn)
}

/// How many of `user`'s notifications are unread.
pub fn unread_count(conn: &mut DbConnection, user: Uuid) -> QueryResult<i64> {
    notifications::table
        .filter(notifications::user_id.eq(user.to_string()))
        .filter(notifications::read_at.is_null())
        .count()
        .get_result(conn)
}

/// Marks `user`'s notification `id` read at `at` (or unread when `None`).
pub fn set_read(
    conn: &mut DbConnection,
    user: Uuid,
    id: Uuid,
    at: Option<DateTime<Utc>>,
) -> QueryResult<Option<NotificationRow>> {
    let target = notifications::table
        .filter(notifications::id.eq(id.to_string()))
        .filter(notifications::user_id.eq(user.to_string()));
    // Reading twice keeps the first reading's time.
    let changed = match at {
        Some(at) => diesel::update(target.filter(notifications::read_at.is_null()))
            .set(notifications::read_at.eq(Some(at.naive_utc())))
            .execute(conn)?,
        None => diesel::update(target)
            .set(notifications::read_at.eq(None::<NaiveDateTime>))
            .execute(conn)?,
    };
    let _ = changed;
    notifications::table
        .filter(notifications::id.eq(id.to_string()))
        .filter(notifications::user_id.eq(user.to_string()))
        .select(NotificationRow::as_select())
        .first(conn)
        .optional()
}

/// `user`'s mail settings (every kind when never set).
pub fn settings_of(conn: &mut DbConnection, user: Uuid) -> QueryResult<EmailSettings> {
    let row: Option<(bool, bool, bool, bool)> = notification_settings::table
        .find(user.to_string())
        .select((
            notification_settings::promotion,
            notification_settings::cancellation,
            notification_settings::changes,
            notification_settings::reminders,
        ))
        .first(conn)
        .optional()?;
    Ok(
        row.map_or_else(EmailSettings::default, |(p, c, ch, r)| EmailSettings {
            promotion: p,
            cancellation: c,
            changes: ch,
            reminders: r,
        }),
    )
}

/// Stores `user`'s mail settings.
pub fn save_settings(
    conn: &mut DbConnection,
    user: Uuid,
    settings: EmailSettings,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let changes = (
        notification_settings::promotion.eq(settings.promotion),
        notification_settings::cancellation.eq(settings.cancellation),
        notification_settings::changes.eq(settings.changes),
        notification_settings::reminders.eq(settings.reminders),
        notification_settings::updated_at.eq(now.naive_utc()),
    );
    // No upsert both backends share through diesel's MultiConnection: update, else insert, and
    // a concurrent first insert (unique violation) is followed by the update it missed.
    let target = || notification_settings::table.find(user.to_string());
    if diesel::update(target()).set(changes).execute(conn)? == 1 {
        return Ok(());
    }
    let inserted = insert_new(conn, |conn| {
        diesel::insert_into(notification_settings::table)
            .values((notification_settings::user_id.eq(user.to_string()), changes))
            .execute(conn)
    })?;
    if !inserted {
        diesel::update(target()).set(changes).execute(conn)?;
    }
    Ok(())
}

/// The unsubscribe token of `user` for `kind`, made on first use.
pub fn unsubscribe_token(
    conn: &mut DbConnection,
    user: Uuid,
    kind: Kind,
    fresh: impl FnOnce() -> String,
) -> QueryResult<String> {
    let existing = unsubscribe_tokens::table
        .filter(unsubscribe_tokens::user_id.eq(user.to_string()))
        .filter(unsubscribe_tokens::kind.eq(kind.as_str()))
        .select(unsubscribe_tokens::token)
        .first::<String>(conn)
        .optional()?;
    if let Some(token) = existing {
        return Ok(token);
    }
    let token = fresh();
    let inserted = insert_new(conn, |conn| {
        diesel::insert_into(unsubscribe_tokens::table)
            .values((
                unsubscribe_tokens::token.eq(&token),
                unsubscribe_tokens::user_id.eq(user.to_string()),
                unsubscribe_tokens::kind.eq(kind.as_str()),
            ))
            .execute(conn)
    })?;
    if inserted {
        return Ok(token);
    }
    // Another instance made this person's token for this kind meanwhile: that one it is.
    unsubscribe_tokens::table
        .filter(unsubscribe_tokens::user_id.eq(user.to_string()))
        .filter(unsubscribe_tokens::kind.eq(kind.as_str()))
        .select(unsubscribe_tokens::token)
        .first(conn)
}

/// Whose mail of which kind `token` unsubscribes.
pub fn unsubscribed_by(
    conn: &mut DbConnection,
    token: &str,
) -> QueryResult<Option<(String, String)>> {
    unsubscribe_tokens::table
        .find(token)
        .select((unsubscribe_tokens::user_id, unsubscribe_tokens::kind))
        .first(conn)
        .optional()
}

/// Which of `keys` already name a notification.
pub fn existing_keys(
    conn: &mut DbConnection,
    keys: &[String],
) -> QueryResult<std::collections::HashSet<String>> {
    let found: Vec<String> = notifications::table
        .filter(notifications::dedupe_key.eq_any(keys))
        .select(notifications::dedupe_key)
        .load(conn)?;
    Ok(found.into_iter().collect())
}

/// A `mail_queue` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = mail_queue)]
pub struct MailRow {
    pub id: String,
    pub dedupe_key: String,
    pub user_id: Option<String>,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub unsubscribe_url: Option<String>,
    pub message_id: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub claimed_until: Option<NaiveDateTime>,
    pub sent_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub given_up_at: Option<NaiveDateTime>,
}

/// Queues `mail` unless one with its dedupe key is queued; `true` when queued.
pub fn queue_mail(conn: &mut DbConnection, mail: &MailRow) -> QueryResult<bool> {
    insert_new(conn, |conn| {
        diesel::insert_into(mail_queue::table)
            .values(mail)
            .execute(conn)
    })
}

/// Up to `limit` unsent mails due at `now` and claimed by nobody.
pub fn due_mail(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<MailRow>> {
    let now = now.naive_utc();
    mail_queue::table
        .filter(mail_queue::sent_at.is_null())
        .filter(mail_queue::given_up_at.is_null())
        .filter(mail_queue::next_attempt_at.le(now))
        .filter(
            mail_queue::claimed_until
                .is_null()
                .or(mail_queue::claimed_until.lt(now)),
        )
        .order((mail_queue::next_attempt_at.asc(), mail_queue::id.asc()))
        .limit(limit)
        .select(MailRow::as_select())
        .load(conn)
}

/// Claims mail `id` until `until` unless another instance claimed it meanwhile.
pub fn claim(
    conn: &mut DbConnection,
    id: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> QueryResult<bool> {
    let now = now.naive_utc();
    diesel::update(
        mail_queue::table
            .filter(mail_queue::id.eq(id))
            .filter(mail_queue::sent_at.is_null())
            .filter(mail_queue::given_up_at.is_null())
            .filter(
                mail_queue::claimed_until
                    .is_null()
                    .or(mail_queue::claimed_until.lt(now)),
            ),
    )
    .set(mail_queue::claimed_until.eq(Some(until.naive_utc())))
    .execute(conn)
    .map(|n| n == 1)
}

/// Marks mail `id` sent. A password-reset mail's text goes with it: its link is a credential,
/// which the users module keeps only as a hash and this queue must not keep at all.
pub fn mark_sent(conn: &mut DbConnection, id: &str, at: DateTime<Utc>) -> QueryResult<usize> {
    diesel::update(
        mail_queue::table
            .find(id)
            .filter(mail_queue::kind.eq(Kind::PasswordReset.as_str())),
    )
    .set((mail_queue::text_body.eq(""), mail_queue::html_body.eq("")))
    .execute(conn)?;
    diesel::update(mail_queue::table.find(id))
        .set((
            mail_queue::sent_at.eq(Some(at.naive_utc())),
            mail_queue::claimed_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)
}

/// Records a failed attempt at mail `id`; the next is due at `next`.
pub fn mark_failed(
    conn: &mut DbConnection,
    id: &str,
    why: &str,
    next: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(mail_queue::table.find(id))
        .set((
            mail_queue::attempts.eq(mail_queue::attempts + 1),
            mail_queue::last_error.eq(Some(why)),
            mail_queue::next_attempt_at.eq(next.naive_utc()),
            mail_queue::claimed_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)
}

/// Gives mail `id` up: the server refused it for good or it could not be sent in time.
pub fn give_up(
    conn: &mut DbConnection,
    id: &str,
    why: &str,
    at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(mail_queue::table.find(id))
        .set((
            mail_queue::attempts.eq(mail_queue::attempts + 1),
            mail_queue::last_error.eq(Some(why)),
            mail_queue::given_up_at.eq(Some(at.naive_utc())),
            mail_queue::claimed_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)
}

/// How many mails wait to be sent.
pub fn queue_depth(conn: &mut DbConnection) -> QueryResult<i64> {
    mail_queue::table
        .filter(mail_queue::sent_at.is_null())
        .filter(mail_queue::given_up_at.is_null())
        .count()
        .get_result(conn)
}

/// Deletes mail sent or given up, and records of handled domain events, from before `before`;
/// the ids of the mails that went.
pub fn prune(conn: &mut DbConnection, before: DateTime<Utc>) -> QueryResult<Vec<String>> {
    let before = before.naive_utc();
    let old = mail_queue::table.filter(
        mail_queue::sent_at
            .lt(before)
            .or(mail_queue::given_up_at.lt(before)),
    );
    let ids: Vec<String> = old.select(mail_queue::id).load(conn)?;
    diesel::delete(mail_queue::table.filter(mail_queue::id.eq_any(&ids))).execute(conn)?;
    diesel::delete(notifications_inbox::table.filter(notifications_inbox::handled_at.lt(before)))
        .execute(conn)?;
    Ok(ids)
}

/// The account locks of this module's writes (see [`AccountLock`]).
const ACCOUNT_LOCK: AccountLock = AccountLock { class: 0x7273_7602 };

/// Whether `user`'s account was deleted, so nothing may be written about them. Holds the
/// account's lock (shared) until the caller's transaction ends, so [`forget`] waits for what
/// the caller writes and removes it too.
pub fn forgotten(conn: &mut DbConnection, user: Uuid) -> QueryResult<bool> {
    ACCOUNT_LOCK.share(conn, user)?;
    notifications_forgotten_users::table
        .find(user.to_string())
        .count()
        .get_result::<i64>(conn)
        .map(|n| n > 0)
}

/// Forgets `user` for good: their notifications, settings, unsubscribe tokens and mail go, and
/// nothing about them is written from now on (see [`forgotten`]). The ids of their mails.
pub fn forget(conn: &mut DbConnection, user: Uuid, at: DateTime<Utc>) -> QueryResult<Vec<String>> {
    ACCOUNT_LOCK.take(conn, user)?;
    let id = user.to_string();
    insert_new(conn, |conn| {
        diesel::insert_into(notifications_forgotten_users::table)
            .values((
                notifications_forgotten_users::user_id.eq(&id),
                notifications_forgotten_users::forgotten_at.eq(at.naive_utc()),
            ))
            .execute(conn)
    })?;
    diesel::delete(notifications::table.filter(notifications::user_id.eq(&id))).execute(conn)?;
    diesel::delete(notification_settings::table.find(&id)).execute(conn)?;
    diesel::delete(unsubscribe_tokens::table.filter(unsubscribe_tokens::user_id.eq(&id)))
        .execute(conn)?;
    // Sent mail too: it holds their address and what they were told.
    let mails = mail_queue::table.filter(mail_queue::user_id.eq(&id));
    let ids: Vec<String> = mails.select(mail_queue::id).load(conn)?;
    diesel::delete(mails).execute(conn)?;
    Ok(ids)
}
