//! The users module's diesel queries. Only this module's tables are named here.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::{
    User, UsersError,
    schema::{password_resets, refresh_tokens, users, users_deleted},
};
use crate::platform::{
    auth::Role,
    db::DbConnection,
    pagination::{Cursor, PageRequest},
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl UserRow {
    /// The id, or an error naming the row: a stored id that is no UUID is never read as nil.
    pub fn id(&self) -> Result<Uuid, UsersError> {
        self.id
            .parse()
            .map_err(|_| self.corrupt("id is not a UUID"))
    }

    /// The role, or an error naming the row: an unknown role is never guessed.
    pub fn role(&self) -> Result<Role, UsersError> {
        Role::parse(&self.role).ok_or_else(|| self.corrupt("unknown role"))
    }

    fn corrupt(&self, why: &str) -> UsersError {
        UsersError::Internal(format!("corrupt users row {:?}: {why}", self.id))
    }
}

/// Position in the user list: creation time, ties broken by id.
pub fn cursor(user: &User) -> Cursor {
    Cursor {
        at: user.created_at,
        id: user.id,
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshTokenRow {
    pub token_hash: String,
    pub user_id: String,
    pub family_id: String,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

pub fn insert_user(conn: &mut DbConnection, row: &UserRow) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

pub fn find_user(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id.to_string())
        .select(UserRow::as_select())
        .first(conn)
        .optional()
}

/// Takes the account's row lock until the transaction ends; `false` when there is no such
/// account. Every write to an account's refresh tokens takes it first, so issuing a token,
/// rotating one, revoking them and deleting the account happen one after the other: a revocation
/// always sees a successor issued at the same instant, and a token is never issued to an account
/// deleted meanwhile. (An update that changes nothing still locks the row on PostgreSQL; SQLite's
/// write transactions are serialised anyway.)
pub fn lock_user(conn: &mut DbConnection, id: Uuid) -> QueryResult<bool> {
    let touched = diesel::update(users::table.find(id.to_string()))
        .set(users::updated_at.eq(users::updated_at))
        .execute(conn)?;
    Ok(touched > 0)
}

/// [`lock_user`], only while the account's password hash is still `hash`: `false` once the
/// account is gone or its password changed since `hash` was checked.
pub fn lock_user_with_hash(conn: &mut DbConnection, id: Uuid, hash: &str) -> QueryResult<bool> {
    let touched = diesel::update(
        users::table
            .find(id.to_string())
            .filter(users::password_hash.eq(hash)),
    )
    .set(users::updated_at.eq(users::updated_at))
    .execute(conn)?;
    Ok(touched > 0)
}

pub fn find_user_by_email(conn: &mut DbConnection, email: &str) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::email.eq(email))
        .select(UserRow::as_select())
        .first(conn)
        .optional()
}

/// `(id, name)` of the users among `ids` that exist.
pub fn find_names(conn: &mut DbConnection, ids: &[Uuid]) -> QueryResult<Vec<(String, String)>> {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::name))
        .load(conn)
}

pub fn find_contacts(
    conn: &mut DbConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<(String, String, String)>> {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::email, users::name))
        .load(conn)
}

pub fn update_profile(
    conn: &mut DbConnection,
    id: Uuid,
    name: Option<String>,
    password_hash: Option<String>,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    let target = users::table.find(id.to_string());
    let now = now.naive_utc();
    match (name, password_hash) {
        (Some(n), Some(h)) => diesel::update(target)
            .set((
                users::name.eq(n),
                users::password_hash.eq(h),
                users::updated_at.eq(now),
            ))
            .execute(conn),
        (Some(n), None) => diesel::update(target)
            .set((users::name.eq(n), users::updated_at.eq(now)))
            .execute(conn),
        (None, Some(h)) => diesel::update(target)
            .set((users::password_hash.eq(h), users::updated_at.eq(now)))
            .execute(conn),
        (None, None) => Ok(1),
    }
}

/// Replaces a password hash by an equivalent one of the current kind, unless the password
/// changed meanwhile.
pub fn upgrade_password_hash(
    conn: &mut DbConnection,
    id: &str,
    former: &str,
    upgraded: &str,
) -> QueryResult<usize> {
    diesel::update(
        users::table
            .find(id)
            .filter(users::password_hash.eq(former)),
    )
    .set(users::password_hash.eq(upgraded))
    .execute(conn)
}

/// Deletes the account and its refresh tokens, leaving a record of the deletion; `0` when there
/// was no such account. The caller holds the account's lock ([`lock_user`]), taken before it
/// timed the deletion.
pub fn delete_user(conn: &mut DbConnection, id: Uuid, at: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::user_id.eq(id.to_string())))
        .execute(conn)?;
    let deleted = diesel::delete(users::table.find(id.to_string())).execute(conn)?;
    if deleted > 0 {
        diesel::insert_into(users_deleted::table)
            .values((
                users_deleted::user_id.eq(id.to_string()),
                users_deleted::deleted_at.eq(at.naive_utc()),
            ))
            .execute(conn)?;
    }
    Ok(deleted)
}

/// Accounts deleted at or after `since`, with the time of their deletion.
pub fn deleted_since(
    conn: &mut DbConnection,
    since: DateTime<Utc>,
) -> QueryResult<Vec<(String, NaiveDateTime)>> {
    users_deleted::table
        .filter(users_deleted::deleted_at.ge(since.naive_utc()))
        .select((users_deleted::user_id, users_deleted::deleted_at))
        .load(conn)
}

pub fn set_role(conn: &mut DbConnection, email: &str, role: Role) -> QueryResult<usize> {
    diesel::update(users::table.filter(users::email.eq(email)))
        .set(users::role.eq(role.as_str()))
        .execute(conn)
}

/// A page of users ordered by creation, optionally only the one with `email`.
pub fn list_users(
    conn: &mut DbConnection,
    email: Option<&str>,
    page: PageRequest,
) -> QueryResult<Vec<UserRow>> {
    let mut query = users::table
        .select(UserRow::as_select())
        .order((users::created_at.asc(), users::id.asc()))
        .limit(page.limit + 1)
        .into_boxed();
    if let Some(email) = email {
        query = query.filter(users::email.eq(email.to_owned()));
    }
    if let Some(after) = page.after {
        let at = after.at.naive_utc();
        query = query.filter(
            users::created_at.gt(at).or(users::created_at
                .eq(at)
                .and(users::id.gt(after.id.to_string()))),
        );
    }
    query.load(conn)
}

pub fn insert_refresh_token(conn: &mut DbConnection, row: &RefreshTokenRow) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

pub fn find_refresh_token(
    conn: &mut DbConnection,
    token_hash: &str,
) -> QueryResult<Option<RefreshTokenRow>> {
    refresh_tokens::table
        .find(token_hash)
        .select(RefreshTokenRow::as_select())
        .first(conn)
        .optional()
}

/// Marks a live token used; 0 rows means someone used or revoked it first.
pub fn consume_refresh_token(
    conn: &mut DbConnection,
    token_hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .find(token_hash)
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(now.naive_utc()))
    .execute(conn)
}

pub fn revoke_family(
    conn: &mut DbConnection,
    family_id: &str,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family_id))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now.naive_utc()))
    .execute(conn)
}

pub fn revoke_all_of_user(
    conn: &mut DbConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::user_id.eq(user_id.to_string()))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now.naive_utc()))
    .execute(conn)
}

/// Stores a password-reset token (its hash) for `user`, valid until `expires_at`.
pub fn insert_password_reset(
    conn: &mut DbConnection,
    token_hash: &str,
    user: Uuid,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(password_resets::table)
        .values((
            password_resets::token_hash.eq(token_hash),
            password_resets::user_id.eq(user.to_string()),
            password_resets::expires_at.eq(expires_at.naive_utc()),
            password_resets::created_at.eq(now.naive_utc()),
        ))
        .execute(conn)
        .map(drop)
}

/// The account a live (unused, unexpired) reset token belongs to.
pub fn live_password_reset(
    conn: &mut DbConnection,
    token_hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<Option<String>> {
    password_resets::table
        .find(token_hash)
        .filter(password_resets::used_at.is_null())
        .filter(password_resets::expires_at.gt(now.naive_utc()))
        .select(password_resets::user_id)
        .first(conn)
        .optional()
}

/// Spends the reset token `token_hash` if it is still live; the rows changed (1 or 0).
pub fn spend_password_reset(
    conn: &mut DbConnection,
    token_hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        password_resets::table
            .find(token_hash)
            .filter(password_resets::used_at.is_null())
            .filter(password_resets::expires_at.gt(now.naive_utc())),
    )
    .set(password_resets::used_at.eq(Some(now.naive_utc())))
    .execute(conn)
}

/// Spends every live reset token of `user` (the one used, and any other sent before it).
pub fn spend_password_resets(
    conn: &mut DbConnection,
    user: &str,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        password_resets::table
            .filter(password_resets::user_id.eq(user))
            .filter(password_resets::used_at.is_null()),
    )
    .set(password_resets::used_at.eq(Some(now.naive_utc())))
    .execute(conn)
}

/// Sets `user`'s password hash.
pub fn set_password_hash(
    conn: &mut DbConnection,
    user: Uuid,
    hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(users::table.find(user.to_string()))
        .set((
            users::password_hash.eq(hash),
            users::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)
}
