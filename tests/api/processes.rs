//! The split and mixed topologies as real processes: the `rsvp-users`, `rsvp-events` and
//! `rsvp-gateway` binaries, each with its own database, on free loopback ports, with a NATS
//! stream of their own so parallel tests never see each other's domain events.

use std::{collections::HashMap, process::Stdio, time::Duration};

use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::helpers::{TestDatabase, Topology, test_settings};

pub struct Processes {
    topology: Topology,
    ports: HashMap<&'static str, u16>,
    nats_id: String,
    children: HashMap<&'static str, Child>,
    /// Each process's environment, so one can be restarted alone.
    envs: HashMap<&'static str, Vec<(String, String)>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        let ports: HashMap<&'static str, u16> = ["gateway", "users", "events", "internal"]
            .into_iter()
            .map(|p| (p, free_port()))
            .collect();
        let nats_id = Uuid::new_v4().simple().to_string();
        let url = |name: &str| format!("http://127.0.0.1:{}", ports[name]);
        let common = |db: &TestDatabase| -> Vec<(String, String)> {
            let mut env: Vec<(String, String)> = test_settings(db).into_iter().collect();
            env.extend(
                [
                    ("service.credential", "test-service-secret".to_owned()),
                    ("nats.stream", format!("T_{nats_id}")),
                    ("nats.subject_prefix", format!("t_{nats_id}")),
                    ("nats.consumer", "events".to_owned()),
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
        let mut events = common(&databases[1]);
        events.push((
            "server.bind".into(),
            format!("127.0.0.1:{}", ports["events"]),
        ));
        let mut gateway = common(&databases[0]);
        gateway.push((
            "server.bind".into(),
            format!("127.0.0.1:{}", ports["gateway"]),
        ));
        gateway.push(("upstreams.events".into(), url("events")));
        match topology {
            Topology::Split => {
                let mut users = common(&databases[0]);
                users.push((
                    "server.bind".into(),
                    format!("127.0.0.1:{}", ports["users"]),
                ));
                envs.insert("users", with_overrides(users, false));
                events.push(("upstreams.users".into(), url("users")));
                gateway.push(("upstreams.users".into(), url("users")));
            }
            Topology::Mixed => {
                gateway.push(("topology.local_modules".into(), "users".into()));
                gateway.push((
                    "service.internal_bind".into(),
                    format!("127.0.0.1:{}", ports["internal"]),
                ));
                events.push(("upstreams.users".into(), url("gateway")));
                events.push(("upstreams.users_internal".into(), url("internal")));
            }
            Topology::Monolith => unreachable!(),
        }
        envs.insert("events", with_overrides(events, false));
        envs.insert("gateway", with_overrides(gateway, true));
        let mut processes = Self {
            topology,
            ports,
            nats_id,
            children: HashMap::new(),
            envs,
        };
        for name in processes.names() {
            processes.spawn(name);
        }
        processes.wait_ready("gateway").await;
        processes
    }

    fn names(&self) -> Vec<&'static str> {
        match self.topology {
            Topology::Split => vec!["users", "events", "gateway"],
            _ => vec!["events", "gateway"],
        }
    }

    pub fn gateway_address(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports["gateway"])
    }

    /// The address a process listens on.
    pub fn address(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[name])
    }

    pub fn spawn(&mut self, name: &'static str) {
        let binary = match name {
            "users" => env!("CARGO_BIN_EXE_rsvp-users"),
            "events" => env!("CARGO_BIN_EXE_rsvp-events"),
            _ => env!("CARGO_BIN_EXE_rsvp-gateway"),
        };
        let log = std::env::var("TEST_LOG").is_ok();
        let mut command = Command::new(binary);
        command
            .envs(self.envs[name].iter().map(|(k, v)| (env_key(k), v)))
            .stdout(if log { Stdio::inherit() } else { Stdio::null() })
            .stderr(if log { Stdio::inherit() } else { Stdio::null() })
            .kill_on_drop(true);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        self.children.insert(name, child);
    }

    /// Starts a second instance of a service on a new port, returning its address.
    pub fn spawn_extra(&mut self, name: &'static str, as_name: &'static str) -> String {
        let port = free_port();
        let mut env = self.envs[name].clone();
        env.push(("server.bind".into(), format!("127.0.0.1:{port}")));
        self.envs.insert(as_name, env);
        self.ports.insert(as_name, port);
        let binary = match name {
            "users" => env!("CARGO_BIN_EXE_rsvp-users"),
            _ => env!("CARGO_BIN_EXE_rsvp-events"),
        };
        let child = Command::new(binary)
            .envs(self.envs[as_name].iter().map(|(k, v)| (env_key(k), v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.children.insert(as_name, child);
        self.address(as_name)
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
            for (process, child) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{process} exited with {status} (run with TEST_LOG=1 to see why)");
                }
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
