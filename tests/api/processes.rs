//! The split and mixed topologies as real processes: `rsvp-gateway` and one `rsvp-<module>`
//! binary per module of the registry, each with its own database, on free loopback ports, with a NATS
//! stream of their own so parallel tests never see each other's domain events. The monolith
//! too, as the `rsvp` binary, for what only a process of its own shows (its exported traces).

use std::{collections::HashMap, process::Stdio, time::Duration};

use tokio::process::{Child, Command};
use uuid::Uuid;

use rsvp::modules::MODULES;

use crate::helpers::{TestDatabase, Topology, free_port, test_settings};

pub struct Processes {
    topology: Topology,
    ports: HashMap<&'static str, u16>,
    nats_id: String,
    children: HashMap<&'static str, Child>,
    /// Where each process's output goes.
    logs: tempfile::TempDir,
    /// Each process's environment, so one can be restarted alone.
    envs: HashMap<&'static str, Vec<(String, String)>>,
}

fn env_key(key: &str) -> String {
    format!("RSVP__{}", key.replace('.', "__").to_uppercase())
}

impl Processes {
    pub async fn start(
        topology: Topology,
        databases: &[TestDatabase],
        overrides: &[(&str, &str)],
    ) -> Self {
        let ports: HashMap<&'static str, u16> = ["gateway", "internal"]
            .into_iter()
            .chain(MODULES.iter().map(|m| m.name()))
            .map(|p| (p, free_port()))
            .collect();
        let nats_id = Uuid::new_v4().simple().to_string();
        let common = |db: &TestDatabase| -> Vec<(String, String)> {
            let mut env: Vec<(String, String)> = test_settings(db).into_iter().collect();
            env.extend(
                [
                    ("service.credential", "test-service-secret".to_owned()),
                    ("nats.stream", format!("T_{nats_id}")),
                    ("nats.subject_prefix", format!("t_{nats_id}")),
                    ("upstreams.health_interval_ms", "200".to_owned()),
                    ("log.format", "json".to_owned()),
                    (
                        "log.level",
                        if std::env::var("TEST_LOG").is_ok() {
                            "info"
                        } else {
                            "warn"
                        }
                        .to_owned(),
                    ),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
            env
        };
        let with_overrides = |mut env: Vec<(String, String)>, gateway: bool| {
            for (k, v) in overrides {
                if k.starts_with("gateway.") == gateway || !k.starts_with("gateway.") {
                    env.push((k.to_string(), v.to_string()));
                }
            }
            env
        };
        let mut envs = HashMap::new();
        if topology == Topology::Monolith {
            let mut monolith = common(&databases[0]);
            monolith.push((
                "server.bind".into(),
                format!("127.0.0.1:{}", ports["gateway"]),
            ));
            envs.insert("gateway", with_overrides(monolith, true));
        } else {
            Self::split_envs(
                topology,
                databases,
                &mut envs,
                &ports,
                common,
                with_overrides,
            );
        }
        let mut processes = Self {
            topology,
            ports,
            nats_id,
            children: HashMap::new(),
            logs: tempfile::tempdir().unwrap(),
            envs,
        };
        for name in processes.names() {
            processes.spawn(name);
        }
        processes.wait_ready("gateway").await;
        processes
    }

    /// Each split process's environment: its database, its port, where its upstreams are.
    fn split_envs(
        topology: Topology,
        databases: &[TestDatabase],
        envs: &mut HashMap<&'static str, Vec<(String, String)>>,
        ports: &HashMap<&'static str, u16>,
        common: impl Fn(&TestDatabase) -> Vec<(String, String)>,
        with_overrides: impl Fn(Vec<(String, String)>, bool) -> Vec<(String, String)>,
    ) {
        let url = |name: &str| format!("http://127.0.0.1:{}", ports[name]);
        let bind = |name: &str| {
            (
                "server.bind".to_owned(),
                format!("127.0.0.1:{}", ports[name]),
            )
        };
        let in_gateway = match topology {
            Topology::Mixed(module) => Some(module),
            _ => None,
        };
        // Where every process reaches each module: its own service, or the gateway hosting it
        // (whose internal endpoint listens apart).
        let mut upstreams = Vec::new();
        for module in MODULES.iter().map(|m| m.name()) {
            if in_gateway == Some(module) {
                upstreams.push((format!("upstreams.{module}"), url("gateway")));
                upstreams.push((format!("upstreams.{module}_internal"), url("internal")));
            } else {
                upstreams.push((format!("upstreams.{module}"), url(module)));
            }
        }
        let database =
            |module: &str| &databases[MODULES.iter().position(|m| m.name() == module).unwrap()];
        let mut gateway = common(database(in_gateway.unwrap_or("users")));
        gateway.push(bind("gateway"));
        gateway.extend(upstreams.iter().cloned());
        if let Some(module) = in_gateway {
            gateway.push(("topology.local_modules".into(), module.into()));
            gateway.push((
                "service.internal_bind".into(),
                format!("127.0.0.1:{}", ports["internal"]),
            ));
        }
        envs.insert("gateway", with_overrides(gateway, true));
        for module in MODULES.iter().map(|m| m.name()) {
            if in_gateway == Some(module) {
                continue;
            }
            let mut env = common(database(module));
            env.push(bind(module));
            env.extend(upstreams.iter().cloned());
            envs.insert(module, with_overrides(env, false));
        }
    }

    fn names(&self) -> Vec<&'static str> {
        let hosted_by_gateway = match self.topology {
            Topology::Monolith => return vec!["gateway"],
            Topology::Split => None,
            Topology::Mixed(module) => Some(module),
        };
        MODULES
            .iter()
            .map(|m| m.name())
            .filter(|m| Some(*m) != hosted_by_gateway)
            .chain(["gateway"])
            .collect()
    }

    /// The binary of process `name`: `rsvp-<module>` beside the gateway's.
    fn binary(&self, name: &str) -> std::path::PathBuf {
        let gateway = std::path::Path::new(env!("CARGO_BIN_EXE_rsvp-gateway"));
        match name {
            _ if self.topology == Topology::Monolith => env!("CARGO_BIN_EXE_rsvp").into(),
            "gateway" => gateway.to_owned(),
            module => gateway.with_file_name(format!("rsvp-{module}")),
        }
    }

    pub fn gateway_address(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports["gateway"])
    }

    /// The address a process listens on (a module's: the gateway's when the gateway hosts it).
    pub fn address(&self, name: &str) -> String {
        let name = match self.topology {
            Topology::Mixed(module) if module == name => "gateway",
            _ => name,
        };
        format!("http://127.0.0.1:{}", self.ports[name])
    }

    pub fn spawn(&mut self, name: &'static str) {
        let binary = self.binary(name);
        self.launch(name, &binary);
    }

    /// Starts a second instance of a service on a new port, returning its address.
    pub fn spawn_extra(&mut self, name: &'static str, as_name: &'static str) -> String {
        let port = free_port();
        let mut env = self.envs[name].clone();
        env.push(("server.bind".into(), format!("127.0.0.1:{port}")));
        self.envs.insert(as_name, env);
        self.ports.insert(as_name, port);
        let binary = self.binary(name);
        self.launch(as_name, &binary);
        self.address(as_name)
    }

    /// A second events instance beside the first, and the gateway restarted to balance over both
    /// (as the Compose file runs them).
    pub async fn balance_two_events_instances(&mut self) {
        let second = self.spawn_extra("events", "events2");
        self.wait_ready("events2").await;
        let both = format!("{},{second}", self.address("events"));
        self.set("gateway", "upstreams.events", &both);
        self.kill("gateway").await;
        self.spawn("gateway");
        self.wait_ready("gateway").await;
    }

    /// Starts `binary` as process `name`. Its output goes to the terminal with `TEST_LOG`, and
    /// otherwise to a file whose end is shown if the process dies unexpectedly.
    fn launch(&mut self, name: &'static str, binary: &std::path::Path) {
        let output = || -> Stdio {
            if std::env::var("TEST_LOG").is_ok() {
                return Stdio::inherit();
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path(name))
                .expect("process log file");
            file.into()
        };
        let child = Command::new(binary)
            .envs(self.envs[name].iter().map(|(k, v)| (env_key(k), v)))
            .stdout(output())
            .stderr(output())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.children.insert(name, child);
    }

    fn log_path(&self, name: &str) -> std::path::PathBuf {
        self.logs.path().join(format!("{name}.log"))
    }

    /// Everything `name` printed so far (nothing under `TEST_LOG`, which prints to the terminal).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// The last lines `name` printed, to explain a failure.
    fn log_tail(&self, name: &str) -> String {
        let log = self.log(name);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// One setting a process was started with.
    pub fn setting(&self, name: &str, key: &str) -> Option<String> {
        self.envs[name]
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Replaces (or adds) one setting of a process, for its next start.
    pub fn set(&mut self, name: &'static str, key: &str, value: &str) {
        let env = self.envs.get_mut(name).unwrap();
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.to_owned()));
    }

    pub async fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.children.remove(name) {
            let _ = child.kill().await;
        }
    }

    pub async fn kill_all(&mut self) {
        for name in self.children.keys().copied().collect::<Vec<_>>() {
            self.kill(name).await;
        }
    }

    /// Waits until `name` answers `/readyz` with 200.
    pub async fn wait_ready(&mut self, name: &str) {
        let url = format!("{}/readyz", self.address(name));
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            let exited = self
                .children
                .iter_mut()
                .find_map(|(process, child)| Some((*process, child.try_wait().ok()??)));
            if let Some((process, status)) = exited {
                panic!(
                    "{process} exited with {status}; its last lines:\n{}",
                    self.log_tail(process)
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} not ready after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Restarts every process on the same ports and databases.
    pub async fn restart_all(&mut self, overrides: &[(&str, &str)]) {
        self.kill_all().await;
        for name in self.names() {
            for (k, v) in overrides {
                self.set(name, k, v);
            }
            self.spawn(name);
        }
        self.wait_ready("gateway").await;
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // A failing test says what its processes warned of: a flake seen once in CI can then be
        // explained from its output alone.
        if std::thread::panicking() {
            for name in self.names() {
                let log = self.log(name);
                let warnings: Vec<&str> = log
                    .lines()
                    .filter(|l| ["WARN", "ERROR", "panicked"].iter().any(|w| l.contains(w)))
                    .collect();
                if !warnings.is_empty() {
                    let last = &warnings[warnings.len().saturating_sub(15)..];
                    eprintln!("--- {name} warned:\n{}", last.join("\n"));
                }
            }
        }
        // The stream is this test's alone: remove it so the broker does not accumulate them.
        let stream = format!("T_{}", self.nats_id);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = tokio::time::timeout(
                    Duration::from_secs(2),
                    async_nats::connect("nats://127.0.0.1:4222"),
                )
                .await
                .ok()?
                .ok()?;
                let _ = async_nats::jetstream::new(client)
                    .delete_stream(&stream)
                    .await;
                Some(())
            })
        })
        .join();
    }
}

/// A NATS JetStream server of one test's own, so that test can stop the broker and start it
/// again (same port, same storage) while the shared one keeps serving the other tests.
pub struct PrivateBroker {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        let mut broker = Self {
            port: free_port(),
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        broker.restart().await;
        broker
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.stop().await;
        let binary = std::env::var("RSVP_TEST_NATS_SERVER").unwrap_or("nats-server".into());
        let child = Command::new(&binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (set RSVP_TEST_NATS_SERVER to its path): {e}")
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
