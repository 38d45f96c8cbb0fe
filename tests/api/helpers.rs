//! The test harness: a real server on a free port with a fresh database, and a client that
//! speaks the public API. `backend_tests!` runs each test on SQLite and on PostgreSQL.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::{Method, Response, StatusCode};
use rsvp::{
    config::Settings,
    platform::telemetry,
    topology::{AppHandle, monolith},
};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn postgres_admin_url() -> String {
    std::env::var("RSVP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Whether a PostgreSQL server answers (asked once per test process).
pub fn postgres_reachable() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        PgConnection::establish(&format!("{}/postgres", postgres_admin_url())).is_ok()
    })
}

/// Whether the PostgreSQL half of a test can run; says so when it can not (and fails when
/// `RSVP_REQUIRE_POSTGRES=1`). Tests that need PostgreSQL as a whole are registered as needing
/// it instead ([`crate::harness::Need::Postgres`]).
pub fn postgres_available() -> bool {
    postgres_reachable()
        || missing_server(
            "PostgreSQL suite",
            &postgres_admin_url(),
            "set RSVP_TEST_POSTGRES_URL",
            "RSVP_REQUIRE_POSTGRES",
        )
}

/// The Redis that tests of the shared rate limit use, when it answers.
pub fn redis_url() -> Option<String> {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let url = std::env::var("RSVP_TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    let available = *AVAILABLE.get_or_init(|| {
        redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
            .is_ok()
    });
    (available
        || missing_server(
            "Redis test",
            &url,
            "set RSVP_TEST_REDIS_URL",
            "RSVP_REQUIRE_REDIS",
        ))
    .then_some(url)
}

/// A test whose server is missing is skipped, loudly, unless `required_by` is `1` (as in CI),
/// where it fails instead. Always `false`: the server is not there.
fn missing_server(suite: &str, server: &str, hint: &str, required_by: &str) -> bool {
    if std::env::var(required_by).is_ok_and(|v| v == "1") {
        panic!("{suite}: required ({required_by}=1) but {server} is unreachable");
    }
    // Written straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED: {suite} (no server at {server}; {hint})\n").as_bytes(),
    );
    false
}

/// A port no other test process will hand out while this one runs.
///
/// Asking the OS for port 0 and passing the number on races: until the child binds it, the port
/// is free, and the kernel may give it to any outgoing connection (a database client, say) as
/// its source port. So ports come from below the ephemeral range (see
/// `/proc/sys/net/ipv4/ip_local_port_range`), and a lock file held until this test process exits
/// keeps parallel test processes from picking the same one.
pub fn free_port() -> u16 {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("rsvp-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    loop {
        let port = fastrand::u16(20_000..32_000);
        let Ok(lock) = std::fs::File::create(dir.join(port.to_string())) else {
            continue;
        };
        if lock.try_lock().is_ok() && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().unwrap().push(lock);
            return port;
        }
    }
}

/// A database that lives as long as the test.
pub struct TestDatabase {
    pub url: String,
    postgres_name: Option<String>,
    _dir: tempfile::TempDir,
    pub dir: std::path::PathBuf,
}

impl TestDatabase {
    pub fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}", path.join("rsvp.db").display()),
                postgres_name: None,
                _dir: dir,
                dir: path,
            },
            Backend::Postgres => {
                let name = format!("rsvp_test_{}", Uuid::new_v4().simple());
                let mut conn =
                    PgConnection::establish(&format!("{}/postgres", postgres_admin_url()))
                        .expect("postgres");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .expect("create database");
                Self {
                    url: format!("{}/{name}", postgres_admin_url()),
                    postgres_name: Some(name),
                    _dir: dir,
                    dir: path,
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.postgres_name
            && let Ok(mut conn) =
                PgConnection::establish(&format!("{}/postgres", postgres_admin_url()))
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn);
        }
    }
}

/// Which deployment the suite runs against: `RSVP_TEST_TOPOLOGY` = `monolith` (default),
/// `split` (the gateway and one binary per module) or `mixed:<module>` (a gateway hosting that
/// module, every other one a service of its own; `mixed` alone is `mixed:users`). The last two
/// need `--features split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Monolith,
    Split,
    /// The module the gateway hosts.
    Mixed(&'static str),
}

pub fn topology() -> Topology {
    let chosen = std::env::var("RSVP_TEST_TOPOLOGY").unwrap_or_default();
    match chosen.as_str() {
        "split" => Topology::Split,
        "mixed" => Topology::Mixed("users"),
        "monolith" | "" => Topology::Monolith,
        other => match other.strip_prefix("mixed:").and_then(rsvp::modules::module) {
            Some(module) => Topology::Mixed(module.name()),
            None => {
                panic!("RSVP_TEST_TOPOLOGY={other}: expected monolith, split or mixed:<module>")
            }
        },
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The database of the users module (the only one in the monolith), then the events one.
    databases: Vec<TestDatabase>,
    /// The test's own settings: those it started with, then those of each restart.
    overrides: Vec<(String, String)>,
    deployment: Deployment,
}

enum Deployment {
    Monolith(AppHandle),
    #[cfg(feature = "split")]
    Processes(crate::processes::Processes),
}

/// What [`TestApp::raw`] received.
#[derive(Debug)]
pub struct RawAnswer {
    /// The status of the first response, 0 when none came.
    pub status: u16,
    pub text: String,
    /// Whether the server closed the connection (rather than the wait running out).
    pub closed: bool,
    pub after: Duration,
}

/// One registered and logged-in account.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Starts the deployment with test settings plus `overrides` (configuration keys).
    pub async fn spawn_with(backend: Backend, overrides: &[(&str, &str)]) -> Self {
        let databases = Self::databases(backend);
        let (address, deployment) = start(topology(), &databases, overrides).await;
        Self::new(address, deployment, databases, overrides)
    }

    /// Like [`TestApp::spawn_with`], but the monolith too runs as a process of its own (the
    /// `rsvp` binary), for what only a process shows: its exported spans, say.
    #[cfg(feature = "split")]
    pub async fn spawn_processes(backend: Backend, overrides: &[(&str, &str)]) -> Self {
        let databases = Self::databases(backend);
        let processes = crate::processes::Processes::start(topology(), &databases, overrides).await;
        let address = processes.gateway_address();
        Self::new(
            address,
            Deployment::Processes(processes),
            databases,
            overrides,
        )
    }

    /// One database for the monolith, one per module (in registry order) otherwise.
    fn databases(backend: Backend) -> Vec<TestDatabase> {
        let count = if topology() == Topology::Monolith {
            1
        } else {
            rsvp::modules::MODULES.len()
        };
        (0..count).map(|_| TestDatabase::create(backend)).collect()
    }

    /// Where each process writes mail when no SMTP server is configured.
    pub fn mail_dirs(&self) -> Vec<std::path::PathBuf> {
        self.databases
            .iter()
            .map(|db| db.dir.join("mail"))
            .collect()
    }

    /// The database holding `module`'s tables.
    pub fn database_url_of(&self, module: &str) -> &str {
        let index = rsvp::modules::MODULES
            .iter()
            .position(|m| m.name() == module)
            .expect("a registered module");
        &self.databases[index.min(self.databases.len() - 1)].url
    }

    fn new(
        address: String,
        deployment: Deployment,
        databases: Vec<TestDatabase>,
        overrides: &[(&str, &str)],
    ) -> Self {
        Self {
            address,
            // Idle connections are dropped before the server's 5 s keep-alive closes them:
            // otherwise a request may go out on a connection the server is closing that instant
            // (a reset, which a POST can not be retried after).
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_idle_timeout(Duration::from_secs(3))
                .build()
                .unwrap(),
            databases,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            deployment,
        }
    }

    /// Stops everything at once, as a crash would, and starts it again on the same databases,
    /// with `overrides` on top of the settings it ran with.
    pub async fn restart(&mut self, overrides: &[(&str, &str)]) {
        self.overrides.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        match &mut self.deployment {
            Deployment::Monolith(_) => {
                self.stop().await;
                let all: Vec<(&str, &str)> = self
                    .overrides
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let (address, deployment) = start(topology(), &self.databases, &all).await;
                self.address = address;
                self.deployment = deployment;
            }
            #[cfg(feature = "split")]
            Deployment::Processes(processes) => processes.restart_all(overrides).await,
        }
    }

    pub async fn stop(&mut self) {
        match &mut self.deployment {
            Deployment::Monolith(handle) => handle.stop(false).await,
            #[cfg(feature = "split")]
            Deployment::Processes(processes) => processes.kill_all().await,
        }
    }

    /// The address of process `name` of a multi-process deployment.
    #[cfg(feature = "split")]
    pub fn address_of(&self, name: &str) -> String {
        match &self.deployment {
            Deployment::Processes(processes) => processes.address(name),
            Deployment::Monolith(_) => panic!("not a multi-process deployment"),
        }
    }

    #[cfg(feature = "split")]
    pub fn processes(&mut self) -> &mut crate::processes::Processes {
        match &mut self.deployment {
            Deployment::Processes(processes) => processes,
            Deployment::Monolith(_) => panic!("not a multi-process deployment"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The users module's database (the only one in the monolith).
    pub fn users_database_url(&self) -> &str {
        self.database_url_of("users")
    }

    /// The events module's database (the only one in the monolith).
    pub fn events_database_url(&self) -> &str {
        self.database_url_of("events")
    }

    /// Sends `request` as it is, bytes on the wire (HTTP clients would tidy a path up before
    /// sending it), and returns what came back until the server closed or `wait` passed.
    pub async fn raw(&self, request: &[u8], wait: Duration) -> RawAnswer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.address.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        let closed = loop {
            let left = wait.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
                Err(_) => break false,
            }
        };
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        RawAnswer {
            status,
            text,
            closed,
            after: started.elapsed(),
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// [`TestApp::post`] with owned arguments, for futures built in a loop and awaited together.
    pub async fn post_owned(&self, path: String, token: Option<String>, body: Value) -> Response {
        self.request(Method::POST, &path, token.as_deref(), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::DELETE, path, token, None).await
    }

    pub async fn register(&self, email: &str, password: &str, name: &str) -> Response {
        self.post(
            "/api/auth/register",
            None,
            json!({"email": email, "password": password, "name": name}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// A new account, logged in.
    pub async fn user(&self) -> TestUser {
        self.user_named(&format!(
            "User {}",
            &Uuid::new_v4().simple().to_string()[..6]
        ))
        .await
    }

    pub async fn user_named(&self, name: &str) -> TestUser {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let password = "correct horse battery".to_owned();
        let created = json_of(
            self.register(&email, &password, name).await,
            StatusCode::CREATED,
        )
        .await;
        let tokens = json_of(self.login(&email, &password).await, StatusCode::OK).await;
        TestUser {
            id: created["id"].as_str().unwrap().to_owned(),
            email,
            password,
            access_token: tokens["access_token"].as_str().unwrap().to_owned(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A new account promoted with the real `rsvp make-admin` command, logged in again so its
    /// token carries the role.
    pub async fn admin(&self) -> TestUser {
        let mut user = self.user_named("Admin").await;
        let db = &self.databases[0];
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rsvp"))
            .args(["make-admin", &user.email])
            .env("RSVP__DATABASE__URL", &db.url)
            .env("RSVP__AUTH__BCRYPT_COST", "4")
            .env(
                "RSVP__AUTH__SIGNING_KEY_PATH",
                db.dir.join("signing_key.pem"),
            )
            .env("RSVP__LOG__LEVEL", "warn")
            .output()
            .await
            .expect("rsvp make-admin runs");
        assert!(
            output.status.success(),
            "make-admin failed ({}): stderr: {} stdout: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        let tokens = json_of(
            self.login(&user.email, &user.password).await,
            StatusCode::OK,
        )
        .await;
        user.access_token = tokens["access_token"].as_str().unwrap().to_owned();
        user
    }

    /// Creates an event starting in a day; `extra` overrides fields.
    pub async fn event(&self, organizer: &TestUser, capacity: i64, extra: Value) -> Value {
        let mut body = event_body(capacity);
        merge(&mut body, extra);
        json_of(
            self.post("/api/events", Some(&organizer.access_token), body)
                .await,
            StatusCode::CREATED,
        )
        .await
    }

    /// A new event by `organizer` with `capacity` seats, starting in a day; its id.
    pub async fn event_id(&self, organizer: &TestUser, capacity: i64) -> String {
        let event = self.event(organizer, capacity, json!({})).await;
        event["id"].as_str().unwrap().to_owned()
    }

    /// An event's `(seats_taken, waitlist_length)`.
    pub async fn seat_counts(&self, event: &str) -> (i64, i64) {
        let path = format!("/api/events/{event}");
        let event = json_of(self.get(&path, None).await, StatusCode::OK).await;
        let count = |field: &str| event[field].as_i64().expect("a count");
        (count("seats_taken"), count("waitlist_length"))
    }

    /// Sends a request as `user` (or anonymously) and asserts a problem with `status`.
    pub async fn expect_problem(
        &self,
        method: Method,
        path: &str,
        user: Option<&TestUser>,
        body: Value,
        status: StatusCode,
    ) -> Value {
        let token = user.map(|u| u.access_token.as_str());
        problem(self.request(method, path, token, Some(body)).await, status).await
    }

    /// Follows `next_cursor` from `path` to the end, returning every item.
    pub async fn walk(&self, path: &str, token: Option<&str>) -> Vec<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}{separator}cursor={c}"),
                None => path.to_owned(),
            };
            let page = json_of(self.get(&url, token).await, StatusCode::OK).await;
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
            assert!(items.len() < 100_000, "pagination does not end");
        }
    }

    /// How many registrations `users` hold in `events`, as the events' organiser sees them.
    pub async fn registrations_of(
        &self,
        organiser: &TestUser,
        events: &[String],
        users: &std::collections::HashSet<String>,
    ) -> usize {
        let mut found = 0;
        for event in events {
            let path = format!("/api/events/{event}/registrations?limit=100");
            found += self
                .walk(&path, Some(&organiser.access_token))
                .await
                .iter()
                .filter(|a| users.contains(a["user"]["id"].as_str().unwrap_or_default()))
                .count();
        }
        found
    }

    /// Polls `check` until it holds: for effects that arrive through domain events.
    /// Checks until `check` holds: at once in one process, within a few seconds when a change
    /// crosses processes. For caches: spawn with `cache.ttl_ms` of a minute, so what this sees
    /// is invalidation, not an entry aging out.
    pub async fn invalidated<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let bound = match topology() {
            Topology::Monolith => Duration::ZERO,
            _ => Duration::from_secs(3),
        };
        let start = Instant::now();
        while !check().await {
            assert!(
                start.elapsed() <= bound,
                "{what}: not seen after {:?}",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the servers and their background work before the databases go away, so nothing
        // keeps waiting on a vanished database while the runtime shuts down.
        #[allow(irrefutable_let_patterns)] // only one variant without the split feature
        if let Deployment::Monolith(handle) = &self.deployment {
            handle.stop_now();
        }
    }
}

/// The settings every test deployment shares, before a test's own overrides.
/// The settings of a process of the test on `db` (for tests that start a module in process).
pub fn settings_for(db: &TestDatabase) -> Settings {
    let overrides = test_settings(db);
    let overrides: Vec<(&str, &str)> = overrides
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Settings::with_overrides(&overrides).expect("test settings")
}

pub fn test_settings(db: &TestDatabase) -> Vec<(String, String)> {
    [
        ("server.workers", "2".to_owned()),
        ("database.url", db.url.clone()),
        ("auth.bcrypt_cost", "4".to_owned()),
        (
            "auth.signing_key_path",
            db.dir.join("signing_key.pem").display().to_string(),
        ),
        ("gateway.auth_rate_per_minute", "0".to_owned()),
        ("auth.password_attempts_per_minute", "0".to_owned()),
        ("outbox.poll_interval_ms", "200".to_owned()),
        // Mail of a test stays in its own directory (when no SMTP server is given).
        (
            "notifications.mail_dir",
            db.dir.join("mail").display().to_string(),
        ),
        ("notifications.poll_interval_ms", "100".to_owned()),
        // Reminders only where a test asks for them (events of tests start within a day).
        ("notifications.reminder_interval_ms", "600000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn start(
    topology: Topology,
    databases: &[TestDatabase],
    overrides: &[(&str, &str)],
) -> (String, Deployment) {
    if std::env::var("TEST_LOG").is_ok() {
        let settings =
            Settings::with_overrides(&[("log.format", "pretty"), ("log.level", "debug")]).unwrap();
        telemetry::init(&settings.log, &settings.telemetry).unwrap();
    }
    match topology {
        Topology::Monolith => {
            let mut settings = test_settings(&databases[0]);
            settings.push(("server.bind".into(), "127.0.0.1:0".into()));
            settings.extend(
                overrides
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
            let settings: Vec<(&str, &str)> = settings
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let app = monolith::build(Settings::with_overrides(&settings).expect("test settings"))
                .await
                .expect("app starts");
            let address = format!("http://127.0.0.1:{}", app.port());
            let handle = app.handle();
            tokio::spawn(app.run_until_stopped());
            (address, Deployment::Monolith(handle))
        }
        #[cfg(feature = "split")]
        _ => {
            let processes =
                crate::processes::Processes::start(topology, databases, overrides).await;
            (
                processes.gateway_address(),
                Deployment::Processes(processes),
            )
        }
        #[cfg(not(feature = "split"))]
        _ => panic!("RSVP_TEST_TOPOLOGY={topology:?} needs `--features split`"),
    }
}

pub fn event_body(capacity: i64) -> Value {
    let starts = chrono::Utc::now() + chrono::Duration::days(1);
    json!({
        "title": "Rust meetup",
        "description": "Talks and pizza",
        "location": "Berlin",
        "category": "Tech",
        "starts_at": starts.to_rfc3339(),
        "ends_at": (starts + chrono::Duration::hours(2)).to_rfc3339(),
        "capacity": capacity,
    })
}

pub fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        for (k, v) in extra {
            target.insert(k, v);
        }
    }
}

/// Asserts the status and returns the JSON body.
pub async fn json_of(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts an RFC 9457 problem with `status` and returns it.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = json_of(response, status).await;
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "body: {body}"
    );
    assert_eq!(body["status"], status.as_u16(), "body: {body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:rsvp:problem:")),
        "body: {body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "body: {body}"
    );
    body
}

/// The field names of a validation problem.
pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The one number `sql` (a `SELECT count(*) AS n ...` or any `AS n` bigint) answers on the
/// database at `url`: for invariants checked on the database itself, beside the API.
pub fn sql_number(url: &str, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Number {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let query = diesel::sql_query(sql);
    let rows: Vec<Number> = match url.strip_prefix("sqlite://") {
        Some(path) => query.load(&mut diesel::SqliteConnection::establish(path).expect("sqlite")),
        None => query.load(&mut PgConnection::establish(url).expect("postgres")),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.first().map_or(0, |row| row.n)
}

/// Runs `sql` (a statement without results) on the database at `url`.
pub fn sql_execute(url: &str, sql: &str) {
    let query = diesel::sql_query(sql);
    match url.strip_prefix("sqlite://") {
        Some(path) => {
            query.execute(&mut diesel::SqliteConnection::establish(path).expect("sqlite"))
        }
        None => query.execute(&mut PgConnection::establish(url).expect("postgres")),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
