//! One database layer for both backends: a diesel `MultiConnection` over SQLite and PostgreSQL,
//! an r2d2 pool that picks the backend from the URL scheme, per-module embedded migrations, and
//! the only way modules touch a connection: [`Db::run`] and [`Db::write`], on the blocking pool.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use diesel::RunQueryDsl;
use diesel::{
    connection::{AnsiTransactionManager, SimpleConnection, TransactionManager},
    prelude::*,
    r2d2::{self, ManageConnection},
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use tracing::Span;

/// A connection to whichever backend `database.url` names.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(diesel::SqliteConnection),
    Postgres(diesel::PgConnection),
}

/// The `database` section of the configuration.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: DatabaseUrl,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
    /// A file holding the PostgreSQL password (a Compose or Kubernetes secret), so the URL in
    /// the configuration carries none.
    #[serde(deserialize_with = "super::settings::optional")]
    pub password_file: Option<String>,
}

impl DatabaseSettings {
    /// `url`, with the password from `password_file` when one is named.
    fn effective_url(&self) -> Result<DatabaseUrl, DbSetupError> {
        let (Some(file), DatabaseUrl::Postgres(url)) = (&self.password_file, &self.url) else {
            return Ok(self.url.clone());
        };
        let invalid = |why: String| DbSetupError::PasswordFile {
            path: file.clone(),
            why,
        };
        let password = std::fs::read_to_string(file).map_err(|e| invalid(e.to_string()))?;
        let password = password.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(invalid("the file is empty".into()));
        }
        with_password(url, password)
            .map(DatabaseUrl::Postgres)
            .map_err(|why| invalid(why.into()))
    }
}

/// `postgres://user@host/db` with `password` added to the user, percent-encoded.
fn with_password(url: &str, password: &str) -> Result<String, &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or("database.url has no scheme")?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user, host) = authority
        .rsplit_once('@')
        .ok_or("database.url must name the user (postgres://user@host/db)")?;
    if user.contains(':') {
        return Err("database.url already holds a password");
    }
    let encoded =
        percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC);
    Ok(format!("{scheme}://{user}:{encoded}@{host}{tail}"))
}

/// A parsed `database.url`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// The backend and address a `database.url` names.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| "expected a sqlite:// or postgres:// URL".to_owned())?;
        if path.is_empty() || path.contains(":memory:") {
            // Every pooled connection would see its own empty in-memory database.
            return Err("needs a file path (in-memory SQLite is not shared across a pool)".into());
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        Self::parse(&url)
    }
}

/// Why a database call failed, before any module gives it a meaning.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("database task failed: {0}")]
    Task(String),
}

impl DbError {
    /// Whether the database is unreachable (503) rather than the call being a bug (500).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Pool(_))
    }
}

/// r2d2 manager choosing the backend by scheme, so a typo never silently creates a SQLite file
/// named `postgres:...` (which `MultiConnection::establish` would do by trying each backend).
#[derive(Debug)]
pub struct DbConnectionManager {
    url: DatabaseUrl,
}

impl DbConnectionManager {
    fn open(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => open_sqlite(path).map(DbConnection::Sqlite),
            DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url)
                .map(DbConnection::Postgres)
                .map_err(r2d2::Error::ConnectionError),
        }
    }
}

/// A pooled connection and when it last did work.
pub struct PooledConnection {
    conn: DbConnection,
    used_at: Instant,
    /// Set when a call on it failed: it is checked before its next use.
    suspect: bool,
}

/// A connection used within this long is taken as alive; one idle longer (the server may have
/// closed it, or restarted) is checked with a query first. Checking on every checkout would
/// double the queries of every request.
const TRUSTED_WHILE_BUSY: Duration = Duration::from_secs(5);

impl ManageConnection for DbConnectionManager {
    type Connection = PooledConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<PooledConnection, r2d2::Error> {
        Ok(PooledConnection {
            conn: self.open()?,
            used_at: Instant::now(),
            suspect: false,
        })
    }

    fn is_valid(&self, pooled: &mut PooledConnection) -> Result<(), r2d2::Error> {
        if !pooled.suspect && pooled.used_at.elapsed() < TRUSTED_WHILE_BUSY {
            return Ok(());
        }
        pooled
            .conn
            .batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)?;
        pooled.suspect = false;
        Ok(())
    }

    fn has_broken(&self, pooled: &mut PooledConnection) -> bool {
        <DbConnection as Connection>::TransactionManager::is_broken_transaction_manager(
            &mut pooled.conn,
        )
    }
}

diesel::define_sql_function! {
    /// `uuid_rowid(id)`: [`uuid_rowid_of`] for a UUID written as text, in SQL (SQLite reads no
    /// hexadecimal itself): how a query reaches the row of a table keyed by it, such as a
    /// full-text index's, from the UUID it holds.
    fn uuid_rowid(id: diesel::sql_types::Text) -> diesel::sql_types::BigInt;
}

/// The number a SQLite table whose rows stand for UUIDs keys each by: the UUID's random low 63
/// bits (two sharing one is as likely as two sharing a UUID).
pub fn uuid_rowid_of(id: uuid::Uuid) -> i64 {
    (id.as_u128() as u64 & (i64::MAX as u64)) as i64
}

/// How long a SQLite writer queues behind another before giving up with "database is locked".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a SQLite file in WAL mode (readers run beside the one writer) with a busy timeout, so
/// writers queue instead of failing.
fn open_sqlite(path: &std::path::Path) -> Result<diesel::SqliteConnection, r2d2::Error> {
    let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())
        .map_err(r2d2::Error::ConnectionError)?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        SQLITE_BUSY_TIMEOUT.as_millis()
    ))
    .map_err(r2d2::Error::QueryError)?;
    uuid_rowid_utils::register_impl(&mut conn, |id: String| {
        uuid::Uuid::parse_str(&id).map_or(-1, uuid_rowid_of)
    })
    .map_err(r2d2::Error::QueryError)?;
    // Switching a new file to WAL upgrades a read lock to a write lock. When two connections
    // (two instances starting on one file) do it at once, SQLite answers "locked" at once
    // instead of calling the busy handler, since waiting could deadlock; so retry here.
    let deadline = std::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match conn.batch_execute("PRAGMA journal_mode = WAL") {
            Ok(()) => return Ok(conn),
            Err(err) if is_locked(&err) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(err) => return Err(r2d2::Error::QueryError(err)),
        }
    }
}

fn is_locked(err: &diesel::result::Error) -> bool {
    matches!(err, diesel::result::Error::DatabaseError(_, info)
        if info.message().contains("database is locked"))
}

/// Key of the PostgreSQL advisory lock that serialises migrations across processes.
const MIGRATION_LOCK: i64 = 0x7273_7670; // "rsvp"

/// Why the database could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("cannot create {path}: {source}")]
    CreateFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Open(#[source] r2d2::Error),
    #[error("migration lock: {0}")]
    MigrationLock(#[source] diesel::result::Error),
    #[error("migrations of module {module} failed: {source}")]
    Migrations {
        module: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("migration transaction: {0}")]
    Transaction(#[from] DbError),
    #[error("cannot build the connection pool: {0}")]
    Pool(#[source] r2d2::PoolError),
    #[error("database.password_file {path}: {why}")]
    PasswordFile { path: String, why: String },
}

/// Each module's migrations for both backends, embedded in the binary.
pub struct ModuleMigrations {
    pub module: &'static str,
    /// The tables the module's migrations create: the module is ready only while all exist.
    pub tables: &'static [&'static str],
    pub sqlite: fn() -> EmbeddedMigrations,
    pub postgres: fn() -> EmbeddedMigrations,
}

/// The connection pool, cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<DbConnectionManager>,
    backend: &'static str,
    /// One statement reading nothing from every table of the modules this database serves.
    schema_probe: String,
}

impl Db {
    /// Connects (creating the SQLite file and its folder when needed) and applies `migrations`.
    pub fn connect(
        settings: &DatabaseSettings,
        migrations: &[&ModuleMigrations],
    ) -> Result<Self, DbSetupError> {
        let url = settings.effective_url()?;
        let backend = match &url {
            DatabaseUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| DbSetupError::CreateFolder {
                        path: dir.to_owned(),
                        source,
                    })?;
                }
                "sqlite"
            }
            DatabaseUrl::Postgres(_) => "postgres",
        };
        let manager = DbConnectionManager { url };
        // Migrate on one plain connection first, so a failure is reported before serving.
        let mut conn = manager.open().map_err(DbSetupError::Open)?;
        // Instances starting together (replicas, a second events service) must not both apply
        // the same migration: one transaction holds the write lock (SQLite) or an advisory lock
        // (PostgreSQL) while it checks and applies, the others wait and then find nothing to do.
        write_transaction(&mut conn, |conn| {
            if let DbConnection::Postgres(c) = conn {
                diesel::sql_query(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                    .execute(c)
                    .map_err(DbSetupError::MigrationLock)?;
            }
            for set in migrations {
                let applied = match conn {
                    DbConnection::Sqlite(c) => {
                        c.run_pending_migrations((set.sqlite)()).map(|v| v.len())
                    }
                    DbConnection::Postgres(c) => {
                        c.run_pending_migrations((set.postgres)()).map(|v| v.len())
                    }
                }
                .map_err(|source| DbSetupError::Migrations {
                    module: set.module,
                    source,
                })?;
                if applied > 0 {
                    tracing::info!(module = set.module, applied, backend, "applied migrations");
                }
            }
            Ok::<_, DbSetupError>(())
        })?;
        drop(conn);
        let pool = r2d2::Pool::builder()
            .max_size(settings.max_connections)
            // Connections open on demand: a standing idle one would be re-established on a
            // background thread after each take, which a short-lived process (`make-admin`)
            // could exit in the middle of.
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(settings.connect_timeout_secs))
            .build(manager)
            .map_err(DbSetupError::Pool)?;
        let schema_probe = migrations
            .iter()
            .flat_map(|set| set.tables)
            .map(|table| format!("SELECT 1 FROM {table} WHERE 1 = 0"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        Ok(Self {
            pool,
            backend,
            schema_probe,
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Connections open and idle, for the metrics endpoint.
    pub fn pool_state(&self) -> (u32, u32, u32) {
        let state = self.pool.state();
        (
            state.connections,
            state.idle_connections,
            self.pool.max_size(),
        )
    }

    /// Runs `f` with a pooled connection on the blocking pool, inside the caller's span.
    /// `pool.get()` blocks too, so it happens there as well.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        spawn_blocking_in_span(move || {
            let mut pooled = pool.get().map_err(|e| E::from(DbError::Pool(e)))?;
            let result = f(&mut pooled.conn);
            pooled.used_at = Instant::now();
            pooled.suspect = result.is_err();
            result
        })
        .await
        .map_err(E::from)?
    }

    /// Like [`Db::run`], inside a write transaction: `BEGIN IMMEDIATE` on SQLite, so that
    /// concurrent writers wait on the busy timeout instead of failing on a lock upgrade.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.run(move |conn| write_transaction(conn, f)).await
    }

    /// Like [`Db::write`], then `on_commit` with the committed value, on the same blocking
    /// thread: what must follow a commit still happens when the request that started it is
    /// dropped meanwhile (its client went away), since the transaction commits regardless.
    pub async fn write_then<T, E, F, G>(&self, f: F, on_commit: G) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        G: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.run(move |conn| {
            let value = write_transaction(conn, f)?;
            on_commit(&value);
            Ok(value)
        })
        .await
    }

    /// Whether the database answers with every table of its modules in place, for `/readyz`.
    pub async fn ping(&self) -> bool {
        let probe = match self.schema_probe.is_empty() {
            true => "SELECT 1".to_owned(),
            false => self.schema_probe.clone(),
        };
        self.run(move |conn| conn.batch_execute(&probe).map_err(DbError::from))
            .await
            .is_ok()
    }
}

/// `f` inside a write transaction on a connection already taken (see [`Db::write`]).
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<DbError>,
{
    let begun = match conn {
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        DbConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c),
    };
    begun.map_err(|e| E::from(DbError::Query(e)))?;
    match f(conn) {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)
                .map_err(|e| E::from(DbError::Query(e)))?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) =
                <DbConnection as Connection>::TransactionManager::rollback_transaction(conn)
            {
                tracing::error!(error = %rollback, "rollback failed");
            }
            Err(err)
        }
    }
}

/// `spawn_blocking` that keeps the tracing span (and so the request id) on the blocking thread.
pub async fn spawn_blocking_in_span<T, F>(f: F) -> Result<T, DbError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| DbError::Task(e.to_string()))
}

/// Whether a diesel error is a unique-constraint violation (a duplicate).
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// A module's PostgreSQL advisory locks per account, which order its writes for an account
/// against that account's deletion: a write [`shares`](Self::share) the account's lock until it
/// commits and the deletion [`takes`](Self::take) it, so the deletion waits for the writes in
/// flight and sees their rows, and a write that starts later sees the deletion's record. (SQLite
/// runs one write transaction at a time, which gives the same order: both are no-ops there.)
pub struct AccountLock {
    /// The module's lock class, the first key of PostgreSQL's two-key lock space (apart from the
    /// migration lock's one-key space, and from other modules' classes).
    pub class: i32,
}

impl AccountLock {
    /// Shares `account`'s lock until the transaction ends.
    pub fn share(&self, conn: &mut DbConnection, account: uuid::Uuid) -> diesel::QueryResult<()> {
        self.lock(conn, account, "pg_advisory_xact_lock_shared")
    }

    /// Takes `account`'s lock alone until the transaction ends.
    pub fn take(&self, conn: &mut DbConnection, account: uuid::Uuid) -> diesel::QueryResult<()> {
        self.lock(conn, account, "pg_advisory_xact_lock")
    }

    fn lock(
        &self,
        conn: &mut DbConnection,
        account: uuid::Uuid,
        how: &str,
    ) -> diesel::QueryResult<()> {
        if let DbConnection::Postgres(pg) = conn {
            diesel::sql_query(format!("SELECT {how}($1, $2)"))
                .bind::<diesel::sql_types::Integer, _>(self.class)
                .bind::<diesel::sql_types::Integer, _>(Self::key(account))
                .execute(pg)?;
        }
        Ok(())
    }

    /// An account's key: its id folded to 32 bits. Two accounts sharing one only wait on each
    /// other now and then.
    fn key(account: uuid::Uuid) -> i32 {
        let bits = account.as_u128();
        (0..4).fold(0u32, |key, i| key ^ (bits >> (32 * i)) as u32) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_their_backend() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/rsvp.db"),
            Ok(DatabaseUrl::Sqlite("data/rsvp.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db"),
            Ok(DatabaseUrl::Sqlite("/tmp/x.db".into()))
        );
        assert!(matches!(
            DatabaseUrl::parse("postgresql://postgres@localhost/rsvp"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
    }

    #[test]
    fn a_password_file_completes_the_url() {
        assert_eq!(
            with_password("postgres://rsvp@db:5432/users?sslmode=prefer", "p@ss/w:rd"),
            Ok("postgres://rsvp:p%40ss%2Fw%3Ard@db:5432/users?sslmode=prefer".into())
        );
        assert!(with_password("postgres://db/users", "x").is_err());
        assert!(with_password("postgres://rsvp:old@db/users", "x").is_err());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let settings = |url: &str, file: Option<&std::path::Path>| DatabaseSettings {
            url: DatabaseUrl::parse(url).unwrap(),
            max_connections: 1,
            connect_timeout_secs: 1,
            password_file: file.map(|f| f.display().to_string()),
        };
        assert_eq!(
            settings("postgres://rsvp@db/users", Some(&file))
                .effective_url()
                .unwrap(),
            DatabaseUrl::Postgres("postgres://rsvp:s3cret@db/users".into())
        );
        let missing = dir.path().join("missing");
        assert!(
            settings("postgres://rsvp@db/users", Some(&missing))
                .effective_url()
                .is_err()
        );
        assert_eq!(
            settings("postgres://rsvp@db/users", None)
                .effective_url()
                .unwrap(),
            DatabaseUrl::Postgres("postgres://rsvp@db/users".into())
        );
    }

    /// Replicas starting on one new file race to switch it to WAL; none may fail.
    #[test]
    fn connections_opening_a_new_file_together_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..50 {
            let path = dir.path().join(format!("race-{round}.db"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let barrier = barrier.clone();
                    let manager = DbConnectionManager {
                        url: DatabaseUrl::Sqlite(path.clone()),
                    };
                    std::thread::spawn(move || {
                        barrier.wait();
                        manager.open().map(drop).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap().unwrap();
            }
        }
    }
}
