//! `rsvp-bench compare`: the same workload against the monolith and the split topology, on
//! SQLite and PostgreSQL, with a bare actix-web handler and the services addressed directly as
//! baselines. Writes results.json, results.md and chart.svg and prints the table.
//!
//! Run it as `cargo run --release -p rsvp-bench -- compare`: it builds the product's binaries
//! in the same profile, then starts them.

mod crowd;
mod deployment;
mod lists;
mod load;
mod netcompare;
mod network;
mod report;

use std::{
    path::PathBuf,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use deployment::{Backend, Deployment, Topology};
use load::{Measured, Scenario, Target};
use report::{Report, Row, Startup};

#[derive(Parser)]
#[command(about = "Compare rsvp's monolith and split topologies on the same workload")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every topology on every backend and write the results.
    Compare(Options),
    /// The event list at 1 000 and 1 000 000 events, every filter combination (caches off).
    Lists {
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        backends: Vec<String>,
        /// How many times the 1 001 seeded events are repeated (999: about a million).
        #[arg(long, default_value_t = 999)]
        copies: u32,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
        postgres_url: String,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// The flash crowd: `--people` distinct people sign up for one event of `--capacity` seats
    /// at once; sign-ups per second, p50/p99, and the outcome checked (capacity exact, waitlist
    /// in arrival order, no error). With `--network netns` every process and PostgreSQL on a
    /// host of its own, `--delay` per link.
    Crowd {
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        backends: Vec<String>,
        #[arg(long, value_delimiter = ',', default_value = "monolith,split")]
        topologies: Vec<String>,
        #[arg(long, default_value_t = 10_000)]
        people: usize,
        #[arg(long, default_value_t = 500)]
        capacity: u32,
        /// Sign-ups in flight at most (the crowd's connections).
        #[arg(long, default_value_t = 256)]
        connections: usize,
        /// `loopback` or `netns` (see `compare`).
        #[arg(long, default_value = "loopback")]
        network: String,
        /// With `--network netns`: the delay per host link, e.g. `1ms`.
        #[arg(long, default_value = "1ms")]
        delay: String,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
        postgres_url: String,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// Serve only the bare actix-web handler (`GET /` → `ok`, two workers) until stopped: the
    /// ceiling to measure an external load generator (wrk) against.
    Ceiling {
        #[arg(long, default_value = "127.0.0.1:7999")]
        bind: String,
    },
    /// Remove the namespaces (and what runs in them) that an interrupted `--network netns` run
    /// left behind.
    NetnsCleanup,
    /// Relay TCP from `listen` to `to`, each chunk held for the delay (`--network netns` starts
    /// one per host port).
    #[command(hide = true)]
    DelayProxy {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value_t = 0)]
        delay_us: u64,
        #[arg(long, default_value_t = 0)]
        jitter_us: u64,
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        #[arg(long)]
        count_file: Option<PathBuf>,
    },
}

#[derive(clap::Args, Clone)]
struct Options {
    /// Seconds-long smoke run with tiny data (what CI runs).
    #[arg(long)]
    quick: bool,
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<String>,
    /// monolith, split, split-2 (two events instances)
    #[arg(long, value_delimiter = ',', default_value = "monolith,split,split-2")]
    topologies: Vec<String>,
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    #[arg(long, default_value_t = 20_000)]
    registrations: usize,
    /// Seconds per scenario and mode.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Closed-loop workers.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Open-loop arrival rate (requests per second).
    #[arg(long, default_value_t = 300)]
    rate: u64,
    /// bcrypt cost during the measurement (seeding always uses 4).
    #[arg(long, default_value_t = 10)]
    bcrypt_cost: u32,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres_url: String,
    /// Where results go (a timestamped folder inside).
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// `loopback` (every process on this host) or `netns`: each process, NATS and the load
    /// generator on a host of its own (network namespaces; needs root and iproute2), swept over
    /// `--delay`. SQLite only.
    #[arg(long, default_value = "loopback")]
    network: String,
    /// With `--network netns`: the delays per host link to sweep, e.g. `0,1ms,5ms` (`us` too).
    #[arg(long, value_delimiter = ',', default_value = "0,1ms,5ms")]
    delay: Vec<String>,
    /// With `--network netns`: up to this much more delay per chunk, at random.
    #[arg(long, default_value = "0")]
    jitter: String,
    /// With `--network netns`: the share of chunks (0..1) that wait as a lost segment would.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// With `--network netns`: cut this host (`users`) off in the middle of event reads.
    #[arg(long)]
    partition: Option<String>,
}

impl Options {
    fn effective(mut self) -> Self {
        if self.quick {
            (self.users, self.events, self.registrations) = (40, 120, 120);
            (self.duration, self.concurrency, self.rate, self.bcrypt_cost) = (1, 4, 40, 4);
        }
        self
    }
}

fn main() -> std::process::ExitCode {
    let command = Cli::parse().command;
    if let Command::Crowd { network, .. } = &command
        && network == "netns"
    {
        return exit(crowd_on_hosts(command));
    }
    if let Command::Compare(options) = &command
        && options.network == "netns"
    {
        return exit(compare_on_hosts(options.clone().effective()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let run = match command {
        Command::Compare(options) if options.network == "loopback" => {
            runtime.block_on(compare(options.effective()))
        }
        Command::Compare(options) => Err(format!(
            "--network {}: expected loopback or netns",
            options.network
        )),
        Command::NetnsCleanup => network::cleanup_all().map(|n| {
            eprintln!("removed {n} namespaces");
        }),
        Command::DelayProxy {
            listen,
            to,
            delay_us,
            jitter_us,
            loss,
            count_file,
        } => runtime.block_on(network::delay_proxy(
            &listen,
            &to,
            network::Shape {
                delay: Duration::from_micros(delay_us),
                jitter: Duration::from_micros(jitter_us),
                loss,
            },
            count_file,
        )),
        Command::Crowd { network, .. } if network != "loopback" => {
            Err(format!("--network {network}: expected loopback or netns"))
        }
        Command::Crowd {
            backends,
            topologies,
            people,
            capacity,
            connections,
            postgres_url,
            out,
            ..
        } => runtime.block_on(crowd(CrowdOptions {
            backends,
            topologies,
            people,
            capacity,
            connections,
            postgres_url,
            out,
        })),
        Command::Ceiling { bind } => runtime.block_on(load::serve_bare(&bind)),
        Command::Lists {
            backends,
            copies,
            postgres_url,
            out,
        } => runtime.block_on(lists(backends, copies, postgres_url, out)),
    };
    exit(run)
}

fn exit(run: Result<(), String>) -> std::process::ExitCode {
    match run {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rsvp-bench: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `compare --network netns`: creates the hosts, moves this process onto the load generator's
/// host before any runtime thread exists (threads inherit it), runs, and removes every host
/// again — after a failure or Ctrl-C too.
fn compare_on_hosts(options: Options) -> Result<(), String> {
    network::preflight()?;
    let delays = options
        .delay
        .iter()
        .map(|d| duration(d))
        .collect::<Result<Vec<_>, _>>()?;
    let run = netcompare::NetworkRun {
        backends: parse_backends(&options.backends)?,
        delays,
        jitter: duration(&options.jitter)?,
        loss: options.loss,
        partition: options.partition.clone(),
        duration: Duration::from_secs(options.duration),
        partition_phase: Duration::from_secs(if options.quick { 3 } else { 10 }),
        concurrency: options.concurrency,
        users: options.users.min(2_000),
        events: options.events.min(2_000),
        registrations: options.registrations.min(2_000),
        out: options.out.clone(),
        crowd: None,
    };
    if !(0.0..=1.0).contains(&run.loss) {
        return Err("--loss: a share between 0 and 1".into());
    }
    if let Some(host) = &run.partition
        && host != "users"
        && host != "events"
    {
        return Err(format!("--partition {host}: expected users or events"));
    }
    on_hosts(run)
}

/// Creates the hosts, moves this process onto the load generator's host before any runtime
/// thread exists (threads inherit it), runs, and removes every host again.
fn on_hosts(run: netcompare::NetworkRun) -> Result<(), String> {
    let bins = binaries()?;
    let mut hosts =
        network::Hosts::create(&["client", "data", "monolith", "gateway", "users", "events"])?;
    hosts.enter("client")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = runtime.block_on(async {
        tokio::select! {
            result = netcompare::run(&mut hosts, &bins, run, machine()) => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
            _ = terminated() => Err("terminated".to_owned()),
        }
    });
    // The runtime first (its tasks hold the processes), then the hosts.
    drop(runtime);
    drop(hosts);
    result
}

async fn terminated() {
    if let Ok(mut signal) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        signal.recv().await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// `0`, `500us`, `1ms`, `1.5ms`.
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if text == "0" {
        (text, 0.0)
    } else {
        return Err(format!(
            "{text:?}: expected a duration such as 0, 500us or 2ms"
        ));
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| Duration::from_secs_f64(n * scale))
        .ok_or_else(|| format!("{text:?}: expected a duration such as 0, 500us or 2ms"))
}

/// Under `cargo run`, builds the binaries the topologies need (cargo only built this one), in
/// the same profile; otherwise they are expected beside this executable.
fn build_binaries(bins: &std::path::Path) -> Result<(), String> {
    let Ok(cargo) = std::env::var("CARGO") else {
        return Ok(());
    };
    let release = bins.ends_with("release");
    let mut command = std::process::Command::new(cargo);
    command.args([
        "build",
        "-p",
        "rsvp",
        "--features",
        "split",
        "--bins",
        "--manifest-path",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"),
    ]);
    if release {
        command.arg("--release");
    }
    eprintln!(
        "building the topologies' binaries ({})",
        if release { "release" } else { "debug" }
    );
    let status = command.status().map_err(|e| format!("cargo build: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("cargo build of the binaries failed".into())
    }
}

async fn lists(
    backends: Vec<String>,
    copies: u32,
    postgres_url: String,
    out: PathBuf,
) -> Result<(), String> {
    let bins = binaries()?;
    let out = out.join(format!(
        "{}-lists",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    let work = tempfile_dir(&out)?;
    let mut report = format!(
        "## Event list at 1k and 1M events

Machine: {}

",
        machine()
    );
    for backend in parse_backends(&backends)? {
        report.push_str(&lists::compare(backend, &bins, &work, &postgres_url, copies).await?);
        report.push('\n');
    }
    let _ = std::fs::remove_dir_all(&work);
    std::fs::write(out.join("lists.md"), &report).map_err(|e| e.to_string())?;
    println!("{report}");
    println!("written to {}", out.join("lists.md").display());
    Ok(())
}

fn binaries() -> Result<PathBuf, String> {
    let bins = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .ok_or("no binary folder")?
        .to_owned();
    build_binaries(&bins)?;
    Ok(bins)
}

/// Starts `topology` on `backend`, every process on this host, its files in a folder of `work`
/// named after `name`; returns it with the time it took to be ready.
async fn start_on_loopback(
    work: &std::path::Path,
    name: &str,
    topology: Topology,
    backend: Backend,
    bins: &std::path::Path,
    postgres_url: &str,
) -> Result<(Deployment, Duration), String> {
    let dir = work.join(name.replace(['/', ' ', ','], "_"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Deployment::start(topology, backend, bins, &dir, postgres_url, 4, None).await
}

fn parse_topologies(names: &[String]) -> Result<Vec<Topology>, String> {
    names
        .iter()
        .map(|t| match t.as_str() {
            "monolith" => Ok(Topology::Monolith),
            "split" => Ok(Topology::Split),
            "split-2" => Ok(Topology::SplitTwoEvents),
            other => Err(format!("unknown topology {other}")),
        })
        .collect()
}

/// `crowd` on loopback.
struct CrowdOptions {
    backends: Vec<String>,
    topologies: Vec<String>,
    people: usize,
    capacity: u32,
    connections: usize,
    postgres_url: String,
    out: PathBuf,
}

async fn crowd(options: CrowdOptions) -> Result<(), String> {
    // A misspelt name is refused before anything starts.
    let backends = parse_backends(&options.backends)?;
    let topologies = parse_topologies(&options.topologies)?;
    let bins = binaries()?;
    let out = options.out.join(format!(
        "{}-crowd",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    let work = tempfile_dir(&out)?;
    // The machine's ceiling in this run: a bare actix-web handler under 64 closed-loop workers.
    let (bare, handle) = load::bare_actix_server().await;
    let measured = load::closed_loop(
        load::Scenario::Hello,
        &Target::new(&bare),
        Arc::new(load::Seed::default()),
        64,
        Duration::from_secs(5),
        Arc::new(AtomicU64::new(0)),
    )
    .await;
    handle.stop(false).await;
    let ceiling = measured.histogram.len() as f64 / measured.elapsed.as_secs_f64();
    let mut report = format!(
        "## Flash crowd\n\nMachine: {}\n\nBare actix-web handler in this run: {ceiling:.0} req/s \
         (× bare below: sign-ups/s over it)\n\n{}\n",
        machine(),
        crowd::MARKDOWN_HEADER
    );
    for &backend in &backends {
        for &topology in &topologies {
            let name = format!("{}-{}", label(backend), topology.label());
            eprintln!("{name}: starting, seeding {} people", options.people);
            let (deployment, _) = start_on_loopback(
                &work,
                &name,
                topology,
                backend,
                &bins,
                &options.postgres_url,
            )
            .await?;
            let target = Target::new(&deployment.gateway);
            let outcome = async {
                let prepared = crowd::prepare(&target, options.people, options.capacity).await?;
                eprintln!("{name}: the crowd signs up");
                crowd::run(&target, prepared, options.connections).await
            }
            .await;
            deployment.stop().await;
            let measured = outcome.map_err(|e| format!("{name}: {e}"))?;
            let row = format!(
                "{} {:.4} |",
                crowd::markdown_row(&label(backend), topology.label(), "loopback", &measured),
                measured.signups_per_second / ceiling
            );
            eprintln!("{row}");
            report.push_str(&row);
            report.push('\n');
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    std::fs::write(out.join("crowd.md"), &report).map_err(|e| e.to_string())?;
    println!("{report}");
    println!("written to {}", out.join("crowd.md").display());
    Ok(())
}

/// `crowd --network netns`: as `compare_on_hosts`, with the crowd as the only measurement.
fn crowd_on_hosts(command: Command) -> Result<(), String> {
    let Command::Crowd {
        backends,
        topologies,
        people,
        capacity,
        connections,
        delay,
        out,
        ..
    } = command
    else {
        unreachable!("called for the crowd command only")
    };
    network::preflight()?;
    let run = netcompare::NetworkRun {
        backends: parse_backends(&backends)?,
        delays: vec![duration(&delay)?],
        jitter: Duration::ZERO,
        loss: 0.0,
        partition: None,
        duration: Duration::ZERO,
        partition_phase: Duration::ZERO,
        concurrency: 1,
        users: 2,
        events: 1,
        registrations: 0,
        out,
        crowd: Some(netcompare::CrowdRun {
            topologies: parse_topologies(&topologies)?,
            people,
            capacity,
            connections,
        }),
    };
    on_hosts(run)
}

fn parse_backends(names: &[String]) -> Result<Vec<Backend>, String> {
    names
        .iter()
        .map(|b| match b.as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            other => Err(format!("unknown backend {other}")),
        })
        .collect()
}

async fn compare(options: Options) -> Result<(), String> {
    let bins = binaries()?;
    let backends = parse_backends(&options.backends)?;
    let topologies = parse_topologies(&options.topologies)?;
    let duration = Duration::from_secs(options.duration);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let out = options.out.join(&stamp);
    let work = tempfile_dir(&out)?;

    let per_topology = Scenario::ALL.len() * 2 + 3;
    let total = (1 + backends.len() * topologies.len() * per_topology) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap(),
    );
    let mut rows = Vec::new();
    let mut startup = Vec::new();

    bar.set_message("baseline: bare actix-web handler");
    let (bare, handle) = load::bare_actix_server().await;
    let nothing = Arc::new(load::Seed::default());
    let measured = load::closed_loop(
        Scenario::Hello,
        &Target::new(&bare),
        nothing,
        options.concurrency,
        duration,
        Arc::new(AtomicU64::new(0)),
    )
    .await;
    rows.push(row(
        "-",
        "bare actix-web",
        Scenario::Hello.label(),
        "closed",
        options.concurrency as u64,
        &measured,
        Vec::new(),
    ));
    handle.stop(false).await;
    bar.inc(1);

    for &backend in &backends {
        for &topology in &topologies {
            let name = format!("{backend:?}/{}", topology.label()).to_lowercase();
            bar.set_message(format!("{name}: starting"));
            let (mut deployment, empty_ready) = start_on_loopback(
                &work,
                &name,
                topology,
                backend,
                &bins,
                &options.postgres_url,
            )
            .await?;
            let target = Target::new(&deployment.gateway);
            bar.set_message(format!("{name}: seeding"));
            let seed_bar = bar.clone();
            let seeding = ProgressBar::hidden();
            let mut seed = load::seed(
                &target,
                options.users,
                options.events,
                options.registrations,
                &seeding,
            )
            .await
            .map_err(|e| format!("{name}: seeding failed: {e}"))?;
            drop(seed_bar);
            let seeded_ready = deployment
                .restart_with("RSVP__AUTH__BCRYPT_COST", &options.bcrypt_cost.to_string())
                .await?;
            load::seed_login_accounts(&target, &mut seed, 16).await?;
            startup.push(Startup {
                backend: label(backend),
                topology: topology.label().into(),
                empty_ms: ms(empty_ready),
                seeded_ms: ms(seeded_ready),
            });
            let seed = Arc::new(seed);
            let counter = Arc::new(AtomicU64::new(0));

            for scenario in Scenario::ALL {
                bar.set_message(format!("{name}: {} (closed)", scenario.label()));
                let before = deployment.cpu_seconds();
                let measured = load::closed_loop(
                    scenario,
                    &target,
                    seed.clone(),
                    options.concurrency,
                    duration,
                    counter.clone(),
                )
                .await;
                rows.push(row(
                    &label(backend),
                    topology.label(),
                    scenario.label(),
                    "closed",
                    options.concurrency as u64,
                    &measured,
                    deployment.usage_since(&before),
                ));
                bar.inc(1);
                bar.set_message(format!("{name}: {} (open)", scenario.label()));
                let rate = if scenario == Scenario::Login {
                    (options.rate / 10).max(1)
                } else {
                    options.rate
                };
                let before = deployment.cpu_seconds();
                let measured = load::open_loop(
                    scenario,
                    &target,
                    seed.clone(),
                    rate,
                    duration,
                    counter.clone(),
                )
                .await;
                rows.push(row(
                    &label(backend),
                    topology.label(),
                    scenario.label(),
                    "open",
                    rate,
                    &measured,
                    deployment.usage_since(&before),
                ));
                bar.inc(1);
            }
            // The gateway's cost per hop: the same reads addressed to the events service itself.
            if let Some(direct) = deployment.events_direct.clone() {
                for scenario in [
                    Scenario::EventDetailHot,
                    Scenario::EventDetail,
                    Scenario::EventList,
                ] {
                    bar.set_message(format!("{name}: {} direct to events", scenario.label()));
                    let before = deployment.cpu_seconds();
                    let measured = load::closed_loop(
                        scenario,
                        &Target::new(&direct),
                        seed.clone(),
                        options.concurrency,
                        duration,
                        counter.clone(),
                    )
                    .await;
                    let label_direct = format!("{} (direct, no gateway)", scenario.label());
                    rows.push(row(
                        &label(backend),
                        topology.label(),
                        &label_direct,
                        "closed",
                        options.concurrency as u64,
                        &measured,
                        deployment.usage_since(&before),
                    ));
                    bar.inc(1);
                }
            } else {
                bar.inc(3);
            }
            deployment.stop().await;
        }
    }
    bar.finish_with_message("done");
    let _ = std::fs::remove_dir_all(&work);

    let mut report = Report {
        machine: machine(),
        settings: format!(
            "{} users, {} events, {} registrations; {} s per run; closed loop {} workers; open loop {}/s ({}/s for login); bcrypt cost {}",
            options.users,
            options.events,
            options.registrations,
            options.duration,
            options.concurrency,
            options.rate,
            (options.rate / 10).max(1),
            options.bcrypt_cost
        ),
        startup,
        rows,
    };
    report.fill_ratios();
    report.write(&out)?;
    println!("{}", report.markdown());
    println!(
        "Results: {}/results.{{md,json}}, chart: {}/chart.svg",
        out.display(),
        out.display()
    );
    let errors: u64 = report.rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        let first = report
            .rows
            .iter()
            .find_map(|r| r.first_error.clone())
            .unwrap_or_default();
        return Err(format!("{errors} requests failed (first: {first})"));
    }
    Ok(())
}

fn tempfile_dir(out: &std::path::Path) -> Result<PathBuf, String> {
    let dir = out.join("work");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn label(backend: Backend) -> String {
    format!("{backend:?}").to_lowercase()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn row(
    backend: &str,
    topology: &str,
    scenario: &str,
    mode: &str,
    load: u64,
    m: &Measured,
    processes: Vec<deployment::ProcessUsage>,
) -> Row {
    let h = &m.histogram;
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    Row {
        backend: backend.into(),
        topology: topology.into(),
        scenario: scenario.into(),
        mode: mode.into(),
        load,
        requests: h.len(),
        errors: m.errors,
        throughput: h.len() as f64 / m.elapsed.as_secs_f64(),
        ratio_to_bare: None,
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        cpu_seconds: processes.iter().map(|p| p.cpu_seconds).sum(),
        peak_rss_mb: processes.iter().map(|p| p.peak_rss_mb).sum(),
        processes,
        first_error: m.first_error.clone(),
    }
}

/// What the figures were measured on.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {memory:.0} GiB, Linux {}; load generator on the same machine",
        kernel.trim()
    )
}
