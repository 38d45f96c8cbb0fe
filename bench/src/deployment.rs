//! Starting and measuring one topology: real release binaries on loopback (or each on a host of
//! its own, `--network netns`), fresh databases, readiness on `/readyz`, CPU time and peak RSS
//! of every process read from `/proc`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::network::{Hosts, Placement, Shape};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    Monolith,
    Split,
    /// Split with two events-service instances behind the gateway.
    SplitTwoEvents,
}

impl Topology {
    pub fn label(self) -> &'static str {
        match self {
            Topology::Monolith => "monolith",
            Topology::Split => "split",
            Topology::SplitTwoEvents => "split, 2 events",
        }
    }
}

pub struct Deployment {
    pub topology: Topology,
    pub gateway: String,
    /// An events service addressed directly, bypassing the gateway (split topologies).
    pub events_direct: Option<String>,
    processes: Vec<Process>,
    bins: PathBuf,
    postgres_databases: Vec<String>,
    postgres_url: String,
    /// Where each process runs, with `--network netns`.
    placement: Option<Placement>,
}

struct Process {
    name: String,
    /// Its host with `--network netns` (the process's name otherwise unused).
    host: &'static str,
    port: u16,
    env: Vec<(String, String)>,
    binary: &'static str,
    child: Option<Child>,
}

/// CPU seconds and peak resident memory of one process over a measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    pub process: String,
    pub cpu_seconds: f64,
    pub peak_rss_mb: f64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// With `--network netns`: the hosts to run on and how their links behave.
pub struct OnHosts<'a> {
    pub hosts: &'a mut Hosts,
    pub shape: Shape,
}

impl Deployment {
    /// Starts `topology` on fresh databases in `dir`; returns it with the time it took to be ready.
    pub async fn start(
        topology: Topology,
        backend: Backend,
        bins: &Path,
        dir: &Path,
        postgres_url: &str,
        bcrypt_cost: u32,
        network: Option<OnHosts<'_>>,
    ) -> Result<(Self, Duration), String> {
        let placement = network.as_ref().map(|n| n.hosts.placement());
        // Loopback, or the process's host address (its delay proxy) with `--network netns`.
        let url = |host: &str, port: u16| match &placement {
            Some(p) => format!("http://{}:{port}", p.address(host)),
            None => format!("http://127.0.0.1:{port}"),
        };
        let mut postgres_databases = Vec::new();
        let mut database = |name: &str| -> Result<String, String> {
            match backend {
                Backend::Sqlite => Ok(format!(
                    "sqlite://{}",
                    dir.join(format!("{name}.db")).display()
                )),
                Backend::Postgres => {
                    let db = format!("rsvp_bench_{name}_{}", std::process::id());
                    let mut conn = PgConnection::establish(&format!("{postgres_url}/postgres"))
                        .map_err(|e| format!("postgres: {e}"))?;
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                        .execute(&mut conn)
                        .map_err(|e| e.to_string())?;
                    diesel::sql_query(format!("CREATE DATABASE {db}"))
                        .execute(&mut conn)
                        .map_err(|e| e.to_string())?;
                    postgres_databases.push(db.clone());
                    Ok(format!("{postgres_url}/{db}"))
                }
            }
        };
        let stream = format!("BENCH_{}", std::process::id());
        let common = |port: u16| -> Vec<(String, String)> {
            [
                ("RSVP__SERVER__BIND", format!("127.0.0.1:{port}")),
                ("RSVP__AUTH__BCRYPT_COST", bcrypt_cost.to_string()),
                (
                    "RSVP__AUTH__SIGNING_KEY_PATH",
                    dir.join("signing_key.pem").display().to_string(),
                ),
                ("RSVP__GATEWAY__AUTH_RATE_PER_MINUTE", "0".into()),
                ("RSVP__AUTH__PASSWORD_ATTEMPTS_PER_MINUTE", "0".into()),
                ("RSVP__LOG__LEVEL", "warn".into()),
                ("RSVP__LOG__FORMAT", "json".into()),
                ("RSVP__DATABASE__MAX_CONNECTIONS", "16".into()),
                ("RSVP__SERVICE__CREDENTIAL", "bench-service-secret".into()),
                ("RSVP__NATS__STREAM", stream.clone()),
                ("RSVP__NATS__SUBJECT_PREFIX", stream.to_lowercase()),
                ("RSVP__UPSTREAMS__HEALTH_INTERVAL_MS", "500".into()),
                // Mail (notifications of promotions) as files of this run, not in the checkout.
                (
                    "RSVP__NOTIFICATIONS__MAIL_DIR",
                    dir.join("mail").display().to_string(),
                ),
                (
                    "RSVP__NATS__URL",
                    match &placement {
                        Some(p) => format!("nats://{}:4222", p.address("data")),
                        None => "nats://127.0.0.1:4222".into(),
                    },
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
        };
        let process = |name: &str,
                       host: &'static str,
                       binary: &'static str,
                       port: u16,
                       extra: Vec<(&str, String)>| {
            let mut env = common(port);
            env.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
            Process {
                name: name.to_owned(),
                host,
                port,
                env,
                binary,
                child: None,
            }
        };
        let gateway_port = free_port();
        let mut processes = Vec::new();
        let mut events_direct = None;
        match topology {
            Topology::Monolith => {
                processes.push(process(
                    "monolith",
                    "monolith",
                    "rsvp",
                    gateway_port,
                    vec![("RSVP__DATABASE__URL", database("monolith")?)],
                ));
            }
            Topology::Split | Topology::SplitTwoEvents => {
                let users_port = free_port();
                let users = url("users", users_port);
                // The notifications module rides in the users process (and host): the comparison
                // is about the request path, which it is not on.
                processes.push(process(
                    "users",
                    "users",
                    "rsvp-users",
                    users_port,
                    vec![
                        ("RSVP__DATABASE__URL", database("users")?),
                        (
                            "RSVP__TOPOLOGY__LOCAL_MODULES",
                            "users,notifications".into(),
                        ),
                    ],
                ));
                let events_db = database("events")?;
                let instances = if topology == Topology::Split { 1 } else { 2 };
                let mut events_urls = Vec::new();
                for i in 0..instances {
                    let port = free_port();
                    events_urls.push(url("events", port));
                    let name = if instances == 1 {
                        "events".to_owned()
                    } else {
                        format!("events-{}", i + 1)
                    };
                    processes.push(process(
                        &name,
                        "events",
                        "rsvp-events",
                        port,
                        vec![
                            ("RSVP__DATABASE__URL", events_db.clone()),
                            ("RSVP__UPSTREAMS__USERS", users.clone()),
                            ("RSVP__UPSTREAMS__NOTIFICATIONS", users.clone()),
                        ],
                    ));
                }
                events_direct = Some(events_urls[0].clone());
                // The notifications module (in the users process) asks events for reminders.
                processes[0]
                    .env
                    .push(("RSVP__UPSTREAMS__EVENTS".into(), events_urls.join(",")));
                processes.push(process(
                    "gateway",
                    "gateway",
                    "rsvp-gateway",
                    gateway_port,
                    vec![
                        ("RSVP__UPSTREAMS__NOTIFICATIONS", users.clone()),
                        ("RSVP__UPSTREAMS__USERS", users),
                        ("RSVP__UPSTREAMS__EVENTS", events_urls.join(",")),
                    ],
                ));
            }
        }
        if let Some(network) = network {
            for process in &processes {
                network
                    .hosts
                    .expose(process.host, process.port, network.shape)?;
            }
        }
        let gateway_host = if topology == Topology::Monolith {
            "monolith"
        } else {
            "gateway"
        };
        let mut deployment = Self {
            topology,
            gateway: url(gateway_host, gateway_port),
            events_direct,
            processes,
            bins: bins.to_owned(),
            postgres_databases,
            postgres_url: postgres_url.to_owned(),
            placement,
        };
        let ready = deployment.spawn_all().await?;
        Ok((deployment, ready))
    }

    async fn spawn_all(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        for process in &mut self.processes {
            let program = self.bins.join(process.binary);
            let mut command = match &self.placement {
                Some(placement) => placement.command(process.host, &program),
                None => Command::new(program),
            };
            let child = command
                .envs(process.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e} (build them with `cargo build --release --features split`)", process.binary))?;
            process.child = Some(child);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = started + Duration::from_secs(60);
        loop {
            let mut all_ready = true;
            for process in &self.processes {
                let url = format!("{}/readyz", self.url_of(process));
                all_ready &= client
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            }
            if all_ready {
                return Ok(started.elapsed());
            }
            if Instant::now() > deadline {
                return Err(format!("{} not ready after 60 s", self.topology.label()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url_of(&self, process: &Process) -> String {
        match &self.placement {
            Some(p) => format!("http://{}:{}", p.address(process.host), process.port),
            None => format!("http://127.0.0.1:{}", process.port),
        }
    }

    /// Every process's base URL, by name.
    pub fn urls(&self) -> Vec<(String, String)> {
        self.processes
            .iter()
            .map(|p| (p.name.clone(), self.url_of(p)))
            .collect()
    }

    /// The database URL of the first process that has one (the monolith's).
    pub fn database_url(&self) -> Option<String> {
        self.processes.iter().find_map(|p| {
            p.env
                .iter()
                .find(|(k, _)| k == "RSVP__DATABASE__URL")
                .map(|(_, v)| v.clone())
        })
    }

    /// Restarts every process with `key=value` changed, returning the time to ready.
    pub async fn restart_with(&mut self, key: &str, value: &str) -> Result<Duration, String> {
        for process in &mut self.processes {
            if let Some(mut child) = process.child.take() {
                let _ = child.kill().await;
            }
            process.env.retain(|(k, _)| k != key);
            process.env.push((key.to_owned(), value.to_owned()));
        }
        self.spawn_all().await
    }

    /// Cumulative CPU seconds of every process so far.
    pub fn cpu_seconds(&self) -> Vec<f64> {
        self.processes
            .iter()
            .map(|p| {
                p.child
                    .as_ref()
                    .and_then(Child::id)
                    .map_or(0.0, cpu_seconds)
            })
            .collect()
    }

    /// Usage since `before` (from [`Deployment::cpu_seconds`]).
    pub fn usage_since(&self, before: &[f64]) -> Vec<ProcessUsage> {
        self.processes
            .iter()
            .zip(self.cpu_seconds())
            .zip(before)
            .map(|((p, now), before)| ProcessUsage {
                process: p.name.clone(),
                cpu_seconds: now - before,
                peak_rss_mb: p
                    .child
                    .as_ref()
                    .and_then(Child::id)
                    .map_or(0.0, peak_rss_mb),
            })
            .collect()
    }

    pub async fn stop(mut self) {
        for process in &mut self.processes {
            if let Some(mut child) = process.child.take() {
                let _ = child.kill().await;
            }
        }
        if let Ok(mut conn) = PgConnection::establish(&format!("{}/postgres", self.postgres_url)) {
            for db in self.postgres_databases.drain(..) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

/// utime + stime from `/proc/<pid>/stat`, in seconds (clock ticks are 100 Hz on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// `VmHWM` (peak resident set) from `/proc/<pid>/status`, in MiB.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
