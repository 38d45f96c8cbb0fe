//! `--network netns`: hosts on one machine. Each process (and the load generator, and NATS) runs
//! in a Linux network namespace of its own with its own address, joined to the others by a veth
//! pair to a bridge (itself in a namespace, so nothing is added to the machine's own network).
//!
//! The delay: the kernel's `netem` is what one would use, but many kernels (this machine's among
//! them) ship without it, so each host's listening ports are fronted by a delay proxy
//! (`rsvp-bench delay-proxy`, in the host's namespace) that holds every chunk of data, in both
//! directions, for the configured delay: a round trip between two hosts pays twice the delay, as
//! it would with `netem` on each host's link. `--jitter` adds a uniform random extra per chunk
//! (order kept); `--loss p` makes a chunk wait, with probability p, an extra 200 ms — what a lost
//! segment costs TCP (Linux's minimum retransmission timeout) — since a relay can not drop
//! bytes of a stream.
//!
//! Everything created is removed when [`Hosts`] is dropped: on success, on an error and on
//! Ctrl-C (the caller turns the signal into an error), and `cleanup` removes what a killed run
//! left.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// How each host's links behave.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Shape {
    pub delay: Duration,
    pub jitter: Duration,
    pub loss: f64,
}

/// The namespaces of one run, named `rsvp-<pid>-<host>`.
pub struct Hosts {
    prefix: String,
    hosts: Vec<(String, Ipv4Addr)>,
    proxies: Vec<Child>,
    bench: PathBuf,
    /// Where each delay proxy keeps the number of round trips it relayed (`<host>-<port>`).
    counts: PathBuf,
}

/// Where each host is: enough to start a program on one and to address it.
#[derive(Clone)]
pub struct Placement {
    prefix: String,
    hosts: Vec<(String, Ipv4Addr)>,
}

impl Placement {
    pub fn address(&self, host: &str) -> Ipv4Addr {
        self.hosts
            .iter()
            .find(|(name, _)| name == host)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no host {host}"))
    }

    /// `program` to be run on `host`.
    pub fn command(&self, host: &str, program: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", &format!("{}-{host}", self.prefix)])
            .arg(program);
        command
    }
}

/// Why this machine can not run hosts in namespaces, if it can not.
pub fn preflight() -> Result<(), String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Err("--network netns needs root (network namespaces and veth pairs)".into());
    }
    for (tool, package) in [("ip", "iproute2"), ("nats-server", "nats-server")] {
        if Command::new(tool).arg("-h").output().is_err() {
            return Err(format!(
                "--network netns needs `{tool}` (apt-get install {package})"
            ));
        }
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Removes every namespace a run of rsvp-bench left (`rsvp-<pid>-*`), whatever its pid, and
/// what those runs kept in the temporary folder.
pub fn cleanup_all() -> Result<usize, String> {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("rsvp-"))
        .map(str::to_owned)
        .collect();
    for name in &names {
        kill_processes_in(name);
        let _ = ip(&["netns", "del", name]);
    }
    // The data host's PostgreSQL cluster and the relays' counters live beside them.
    for entry in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("rsvp-")
            && (name.ends_with("-postgres")
                || name.ends_with("-postgres.log")
                || name.ends_with("-round-trips"))
        {
            let _ = std::fs::remove_dir_all(entry.path());
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(names.len())
}

/// Kills what still runs in namespace `ns` (a namespace lives on while a process is in it),
/// except this process: the load generator is on a host too.
fn kill_processes_in(ns: &str) {
    let me = std::process::id().to_string();
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid != me {
                let _ = Command::new("kill")
                    .args(["-9", pid])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Hosts {
    /// Creates one namespace per host, each with `eth0` at 10.77.0.(10 + i) on a shared bridge.
    pub fn create(names: &[&str]) -> Result<Self, String> {
        let prefix = format!("rsvp-{}", std::process::id());
        let mut hosts = Self {
            prefix: prefix.clone(),
            hosts: Vec::new(),
            proxies: Vec::new(),
            bench: std::env::current_exe().map_err(|e| e.to_string())?,
            counts: std::env::temp_dir().join(format!("{prefix}-round-trips")),
        };
        std::fs::create_dir_all(&hosts.counts).map_err(|e| e.to_string())?;
        let switch = format!("{prefix}-switch");
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (i, name) in names.iter().enumerate() {
            let ns = hosts.namespace(name);
            let address = Ipv4Addr::new(10, 77, 0, 10 + i as u8);
            ip(&["netns", "add", &ns])?;
            hosts.hosts.push(((*name).to_owned(), address));
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // Created inside the host's namespace, the far end moved to the switch: nothing
            // ever appears in the machine's own namespace.
            let far = format!("h{i}");
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &far, "netns",
                &switch,
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &switch, "link", "set", &far, "master", "br0"])?;
            ip(&["-n", &switch, "link", "set", &far, "up"])?;
        }
        Ok(hosts)
    }

    fn namespace(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    pub fn placement(&self) -> Placement {
        Placement {
            prefix: self.prefix.clone(),
            hosts: self.hosts.clone(),
        }
    }

    pub fn address(&self, host: &str) -> Ipv4Addr {
        self.placement().address(host)
    }

    /// Moves the calling thread (and the threads it starts afterwards) into `host`'s namespace:
    /// the load generator becomes a host like the others.
    pub fn enter(&self, host: &str) -> Result<(), String> {
        let path = format!("/var/run/netns/{}", self.namespace(host));
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: setns with a valid namespace file descriptor and CLONE_NEWNET only changes this
        // thread's network namespace.
        let done =
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        if done == 0 {
            Ok(())
        } else {
            Err(format!("setns {path}: {}", std::io::Error::last_os_error()))
        }
    }

    /// Serves `host`'s local port on its address, through a delay proxy shaped by `shape`.
    pub fn expose(&mut self, host: &str, port: u16, shape: Shape) -> Result<(), String> {
        let listen = format!("{}:{port}", self.address(host));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace(host)])
            .arg(&self.bench)
            .args([
                "delay-proxy",
                "--listen",
                &listen,
                "--to",
                &format!("127.0.0.1:{port}"),
                "--delay-us",
                &shape.delay.as_micros().to_string(),
                "--jitter-us",
                &shape.jitter.as_micros().to_string(),
                "--loss",
                &shape.loss.to_string(),
                "--count-file",
            ])
            .arg(self.counts.join(format!("{host}-{port}")))
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("delay proxy: {e}"))?;
        self.proxies.push(child);
        // Listening before anyone is told the address.
        let address: std::net::SocketAddr = listen.parse().map_err(|e| format!("{listen}: {e}"))?;
        for _ in 0..100 {
            if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("the delay proxy on {listen} did not start"))
    }

    /// Stops every delay proxy (before the next delay's are started).
    pub fn unexpose_all(&mut self) {
        for mut proxy in self.proxies.drain(..) {
            let _ = proxy.kill();
            let _ = proxy.wait();
        }
    }

    /// Round trips relayed so far to each host (all its ports), by host name.
    pub fn round_trips(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(&self.counts)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((host, _port)) = name.rsplit_once('-').filter(|_| !name.ends_with(".new"))
            else {
                continue;
            };
            let count = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0);
            *counts.entry(host.to_owned()).or_default() += count;
        }
        counts
    }

    /// Cuts `host` off the network (`up = false`) or connects it again.
    pub fn set_link(&self, host: &str, up: bool) -> Result<(), String> {
        let ns = self.namespace(host);
        ip(&[
            "-n",
            &ns,
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.unexpose_all();
        let _ = std::fs::remove_dir_all(&self.counts);
        let names: Vec<String> = self
            .hosts
            .iter()
            .map(|(host, _)| self.namespace(host))
            .chain([format!("{}-switch", self.prefix)])
            .collect();
        for ns in names {
            kill_processes_in(&ns);
            let _ = ip(&["netns", "del", &ns]);
        }
    }
}

/// `rsvp-bench delay-proxy`: relays TCP connections from `listen` to `to`, holding each chunk of
/// data for the delay in both directions. It counts round trips — a chunk towards the server
/// after one came back (or the first on a connection) starts one — and keeps the total in
/// `count_file`.
pub async fn delay_proxy(
    listen: &str,
    to: &str,
    shape: Shape,
    count_file: Option<PathBuf>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("{listen}: {e}"))?;
    let round_trips = std::sync::Arc::new(AtomicU64::new(0));
    if let Some(path) = count_file {
        let round_trips = round_trips.clone();
        tokio::spawn(async move {
            let mut written = u64::MAX;
            loop {
                let now = round_trips.load(Ordering::Relaxed);
                if now != written {
                    let staged = path.with_extension("new");
                    if std::fs::write(&staged, now.to_string()).is_ok()
                        && std::fs::rename(&staged, &path).is_ok()
                    {
                        written = now;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    loop {
        let (inbound, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let to = to.to_owned();
        let round_trips = round_trips.clone();
        tokio::spawn(async move {
            let Ok(outbound) = tokio::net::TcpStream::connect(&to).await else {
                return;
            };
            let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            // Whose turn it is: true once the server answered since the client last sent.
            let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
            let to_server = Turn {
                answered: answered.clone(),
                round_trips: Some(round_trips),
            };
            let to_client = Turn {
                answered,
                round_trips: None,
            };
            tokio::join!(
                relay(in_read, out_write, shape, to_server),
                relay(out_read, in_write, shape, to_client)
            );
        });
    }
}

/// Copies `from` to `to`, each chunk released `delay` (+ jitter, + a loss penalty) after it
/// arrived, in order.
/// One direction's part in counting round trips.
struct Turn {
    answered: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Towards the server: counts a round trip when the client speaks after an answer.
    round_trips: Option<std::sync::Arc<AtomicU64>>,
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shape: Shape,
    turn: Turn,
) {
    use rand::Rng;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (sender, mut receiver) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut last = tokio::time::Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            match &turn.round_trips {
                Some(count) => {
                    if turn.answered.swap(false, Ordering::Relaxed) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => turn.answered.store(true, Ordering::Relaxed),
            }
            let mut wait = shape.delay;
            let mut rng = rand::thread_rng();
            if !shape.jitter.is_zero() {
                wait += shape.jitter.mul_f64(rng.r#gen::<f64>());
            }
            if shape.loss > 0.0 && rng.r#gen::<f64>() < shape.loss {
                wait += Duration::from_millis(200);
            }
            last = last.max(tokio::time::Instant::now() + wait);
            if sender.send((last, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
