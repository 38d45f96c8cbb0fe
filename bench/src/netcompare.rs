//! `rsvp-bench compare --network netns`: the monolith and the split topology with every process
//! on a host of its own (see `network`), swept over link delays. For each delay: p50/p99 and
//! throughput of event detail, the attendee list (one cross-module call in the split) and
//! register + cancel, with the HTTP exchanges each request caused, counted from every process's
//! own request counter (`rsvp_http_requests_total`), not assumed. Optionally a partition: the
//! users host cut off in the middle of a run of event reads, and connected again.
//!
//! Writes network.json, network.md and network.svg (p50 latency against delay).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant},
};

use plotters::prelude::*;
use rand::Rng;
use serde::Serialize;

use crate::{
    deployment::{Backend, Deployment, OnHosts, Topology},
    load::{self, Scenario, Seed, Target},
    network::{Hosts, Shape},
};

/// What `--network netns` measures and how.
pub struct NetworkRun {
    pub backends: Vec<Backend>,
    pub delays: Vec<Duration>,
    pub jitter: Duration,
    pub loss: f64,
    pub partition: Option<String>,
    pub duration: Duration,
    pub partition_phase: Duration,
    pub concurrency: usize,
    pub users: usize,
    pub events: usize,
    pub registrations: usize,
    pub out: PathBuf,
    /// Measure the flash crowd instead of the scenarios.
    pub crowd: Option<CrowdRun>,
}

/// `crowd --network netns`: which topologies, how many people, how many seats.
pub struct CrowdRun {
    pub topologies: Vec<Topology>,
    pub people: usize,
    pub capacity: u32,
    pub connections: usize,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario::EventDetail,
    Scenario::Attendees,
    Scenario::RegisterCancel,
];

#[derive(Serialize)]
struct Row {
    backend: Backend,
    delay_ms: f64,
    topology: &'static str,
    scenario: &'static str,
    p50_ms: f64,
    p99_ms: f64,
    throughput: f64,
    /// HTTP requests served by all processes together, per request of the load generator.
    exchanges: f64,
    /// Network round trips per request, by the host they went to (counted by the delay proxies).
    round_trips: std::collections::BTreeMap<String, f64>,
    errors: u64,
}

#[derive(Serialize)]
struct Phase {
    phase: &'static str,
    requests_per_second: f64,
    answered: u64,
    errors: u64,
    names_missing: u64,
    p99_ms: f64,
}

#[derive(Serialize)]
struct Results {
    machine: String,
    shape: String,
    bare_handler_per_second: f64,
    rows: Vec<Row>,
    partition: Option<(String, Vec<Phase>)>,
}

pub async fn run(
    hosts: &mut Hosts,
    bins: &Path,
    run: NetworkRun,
    machine: String,
) -> Result<(), String> {
    let out = run.out.join(format!(
        "{}-network",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    let work = out.join("work");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    // Absolute: the servers started on other hosts run as other users, elsewhere.
    let work = work.canonicalize().map_err(|e| e.to_string())?;
    let placement = hosts.placement();
    // NATS and PostgreSQL on a host of their own, as a deployment would have them.
    let _nats = placement
        .command("data", Path::new("nats-server"))
        .args(["-a", "127.0.0.1", "-p", "4222", "-js", "-sd"])
        .arg(work.join("nats"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("nats-server: {e}"))?;

    let _postgres = if run.backends.contains(&Backend::Postgres) {
        Some(postgres_on_data_host(&placement).await?)
    } else {
        None
    };
    let postgres_url = format!("postgres://postgres@{}:5432", placement.address("data"));
    if let Some(crowd) = &run.crowd {
        return crowds(
            hosts,
            bins,
            &work,
            &run,
            crowd,
            &postgres_url,
            &out,
            machine,
        )
        .await;
    }

    eprintln!("baseline: a bare actix-web handler on the load generator's host");
    let (bare, handle) = load::bare_actix_server().await;
    let measured = load::closed_loop(
        Scenario::Hello,
        &Target::new(&bare),
        Arc::new(Seed::default()),
        run.concurrency,
        run.duration,
        Arc::new(AtomicU64::new(0)),
    )
    .await;
    handle.stop(false).await;
    let bare_handler_per_second = per_second(measured.histogram.len(), measured.elapsed);

    let run_backends = run.backends.clone();
    let mut rows = Vec::new();
    let sweep: Vec<(Backend, Duration)> = run
        .backends
        .iter()
        .flat_map(|&b| run.delays.iter().map(move |&d| (b, d)))
        .collect();
    for (backend, delay) in sweep {
        let shape = Shape {
            delay,
            jitter: run.jitter,
            loss: run.loss,
        };
        for topology in [Topology::Monolith, Topology::Split] {
            eprintln!(
                "{backend:?}, {} at {} ms: starting",
                topology.label(),
                ms(delay)
            );
            let place = Place {
                topology,
                backend,
                shape,
                postgres_url: &postgres_url,
            };
            let (deployment, seed) = start(hosts, bins, &work, place, &run, &[]).await?;
            let target = Target::new(&deployment.gateway);
            let counter = Arc::new(AtomicU64::new(0));
            for scenario in SCENARIOS {
                eprintln!(
                    "{} at {} ms: {}",
                    topology.label(),
                    ms(delay),
                    scenario.label()
                );
                let before = served(&deployment).await;
                let trips_before = hosts.round_trips();
                let measured = load::closed_loop(
                    scenario,
                    &target,
                    seed.clone(),
                    run.concurrency,
                    run.duration,
                    counter.clone(),
                )
                .await;
                let after = served(&deployment).await;
                let trips_after = hosts.round_trips();
                let requests = measured.histogram.len() + measured.errors;
                let calls_per_request = if scenario == Scenario::RegisterCancel {
                    2
                } else {
                    1
                };
                rows.push(Row {
                    backend,
                    delay_ms: ms(delay),
                    topology: topology.label(),
                    scenario: scenario.label(),
                    p50_ms: measured.histogram.value_at_quantile(0.5) as f64 / 1000.0,
                    p99_ms: measured.histogram.value_at_quantile(0.99) as f64 / 1000.0,
                    throughput: per_second(measured.histogram.len(), measured.elapsed),
                    exchanges: (after - before) as f64
                        / (requests * calls_per_request).max(1) as f64,
                    round_trips: trips_after
                        .iter()
                        .map(|(host, n)| {
                            let delta = n - trips_before.get(host).copied().unwrap_or(0);
                            (host.clone(), delta as f64 / requests.max(1) as f64)
                        })
                        .filter(|(_, per_request)| *per_request >= 0.005)
                        .collect(),
                    errors: measured.errors,
                });
                // A measurement with failed requests means nothing: stop here, saying why.
                if let Some(error) = measured.first_error {
                    return Err(format!(
                        "{backend:?}, {} at {} ms, {}: {} requests failed, the first: {error}",
                        topology.label(),
                        ms(delay),
                        scenario.label(),
                        measured.errors
                    ));
                }
            }
            deployment.stop().await;
            hosts.unexpose_all();
        }
    }

    let partition = match &run.partition {
        Some(host) => Some((
            host.clone(),
            partition(hosts, bins, &work, host, &run, &postgres_url).await?,
        )),
        None => None,
    };
    let results = Results {
        machine,
        shape: format!(
            "delays {:?} ms per host link (a round trip between two hosts pays twice), jitter {} ms, loss {}",
            run.delays.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            ms(run.jitter),
            run.loss
        ),
        bare_handler_per_second,
        rows,
        partition,
    };
    let markdown = markdown(&results);
    std::fs::write(
        out.join("network.json"),
        serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(out.join("network.md"), &markdown).map_err(|e| e.to_string())?;
    for &backend in &run_backends {
        let name = format!("network-{backend:?}.svg").to_lowercase();
        chart(&results, backend, &out.join(name))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    println!("{markdown}");
    println!("written to {}", out.display());
    let errors: u64 = results.rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        return Err(format!("{errors} requests failed during the measurements"));
    }
    Ok(())
}

/// The flash crowd on every backend, delay and topology of `run`, with the network round trips
/// each sign-up cost, by host (the data host's are the database's and NATS's).
#[allow(clippy::too_many_arguments)]
async fn crowds(
    hosts: &mut Hosts,
    bins: &Path,
    work: &Path,
    run: &NetworkRun,
    crowd: &CrowdRun,
    postgres_url: &str,
    out: &Path,
    machine: String,
) -> Result<(), String> {
    // The ceiling in this run: a bare actix-web handler on the load generator's host.
    let (bare, handle) = load::bare_actix_server().await;
    let measured = load::closed_loop(
        Scenario::Hello,
        &Target::new(&bare),
        Arc::new(Seed::default()),
        64,
        Duration::from_secs(5),
        Arc::new(AtomicU64::new(0)),
    )
    .await;
    handle.stop(false).await;
    let ceiling = per_second(measured.histogram.len(), measured.elapsed);
    let mut report = format!(
        "## Flash crowd, every process on a host of its own\n\nMachine: {machine}\n\n\
         Bare actix-web handler in this run: {ceiling:.0} req/s\n\n{}\n",
        crate::crowd::MARKDOWN_HEADER
    );
    let mut trips_report = String::from("\nRound trips per sign-up, by host:\n\n");
    for &backend in &run.backends {
        for &delay in &run.delays {
            let shape = Shape {
                delay,
                jitter: Duration::ZERO,
                loss: 0.0,
            };
            for &topology in &crowd.topologies {
                let name = format!("{backend:?}, {} at {} ms", topology.label(), ms(delay));
                eprintln!("{name}: starting, seeding {} people", crowd.people);
                let place = Place {
                    topology,
                    backend,
                    shape,
                    postgres_url,
                };
                let (deployment, _) = start(hosts, bins, work, place, run, &[]).await?;
                let target = Target::new(&deployment.gateway);
                let outcome = async {
                    let prepared =
                        crate::crowd::prepare(&target, crowd.people, crowd.capacity).await?;
                    eprintln!("{name}: the crowd signs up");
                    let before = hosts.round_trips();
                    let measured = crate::crowd::run(&target, prepared, crowd.connections).await?;
                    let after = hosts.round_trips();
                    Ok::<_, String>((measured, before, after))
                }
                .await;
                deployment.stop().await;
                hosts.unexpose_all();
                let (measured, before, after) = outcome.map_err(|e| format!("{name}: {e}"))?;
                let network = format!("netns, {} ms per link", ms(delay));
                let row = format!(
                    "{} {:.4} |",
                    crate::crowd::markdown_row(
                        &format!("{backend:?}").to_lowercase(),
                        topology.label(),
                        &network,
                        &measured,
                    ),
                    measured.signups_per_second / ceiling
                );
                eprintln!("{row}");
                report.push_str(&row);
                report.push('\n');
                // Counted while the crowd ran: its sign-ups and the registrations read back.
                let trips: Vec<String> = after
                    .iter()
                    .map(|(host, n)| {
                        let delta = n - before.get(host).copied().unwrap_or(0);
                        format!("{host} {:.1}", delta as f64 / measured.people as f64)
                    })
                    .collect();
                trips_report.push_str(&format!("- {name}: {}\n", trips.join(", ")));
            }
        }
    }
    report.push_str(&trips_report);
    std::fs::write(out.join("crowd.md"), &report).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(work);
    println!("{report}");
    println!("written to {}", out.join("crowd.md").display());
    Ok(())
}

/// What to start, where.
#[derive(Clone, Copy)]
struct Place<'a> {
    topology: Topology,
    backend: Backend,
    shape: Shape,
    postgres_url: &'a str,
}

/// Starts a topology on its hosts with a small seeded data set. SQLite: each service's database
/// is a file on its own host; PostgreSQL: on the data host, every query crossing the network.
async fn start(
    hosts: &mut Hosts,
    bins: &Path,
    work: &Path,
    place: Place<'_>,
    run: &NetworkRun,
    settings: &[(&str, &str)],
) -> Result<(Deployment, Arc<Seed>), String> {
    let Place {
        topology,
        backend,
        shape,
        postgres_url,
    } = place;
    hosts.expose("data", 4222, shape)?;
    if backend == Backend::Postgres {
        hosts.expose("data", 5432, shape)?;
    }
    let dir = work.join(format!(
        "{backend:?}-{}-{}ms-{}",
        topology.label(),
        ms(shape.delay),
        settings.len()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (mut deployment, _) = Deployment::start(
        topology,
        backend,
        bins,
        &dir,
        postgres_url,
        4,
        Some(OnHosts { hosts, shape }),
    )
    .await?;
    for (key, value) in settings {
        deployment.restart_with(key, value).await?;
    }
    let target = Target::new(&deployment.gateway);
    let seed = load::seed(
        &target,
        run.users,
        run.events,
        run.registrations,
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .map_err(|e| format!("seeding: {e}"))?;
    Ok((deployment, Arc::new(seed)))
}

/// A PostgreSQL server of this run's own on the data host, and its cluster's folder: both gone
/// when this is dropped.
struct DataHostPostgres {
    server: tokio::process::Child,
    folder: PathBuf,
}

impl Drop for DataHostPostgres {
    fn drop(&mut self) {
        let _ = self.server.start_kill();
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// A fresh cluster (trust authentication, the machine's PostgreSQL binaries) served on the data
/// host. Its folder is in the system's temporary folder: the `postgres` user must reach it,
/// which `--out` (or a private temporary folder) may not allow.
async fn postgres_on_data_host(
    placement: &crate::network::Placement,
) -> Result<DataHostPostgres, String> {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(
            |_| "PostgreSQL on the data host needs the server's binaries (/usr/lib/postgresql)",
        )?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .max()
        .ok_or("no PostgreSQL version under /usr/lib/postgresql")?;
    let data = std::env::temp_dir().join(format!("rsvp-{}-postgres", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    std::process::Command::new("chown")
        .arg("postgres:postgres")
        .arg(&data)
        .status()
        .map_err(|e| format!("chown: {e}"))?;
    let init = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !init.status.success() {
        return Err(format!("initdb: {}", String::from_utf8_lossy(&init.stderr)));
    }
    let log = std::env::temp_dir().join(format!("rsvp-{}-postgres.log", std::process::id()));
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = placement
        .command("data", Path::new("runuser"))
        .args(["-u", "postgres", "--"])
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-h", "127.0.0.1", "-p", "5432", "-k"])
        .arg(&data)
        .args(["-c", "max_connections=300"])
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("postgres: {e}"))?;
    for _ in 0..100 {
        let ready = placement
            .command("data", &bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", "5432"])
            .status()
            .await
            .is_ok_and(|s| s.success());
        if ready {
            let _ = std::fs::remove_file(&log);
            return Ok(DataHostPostgres {
                server: child,
                folder: data,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = said.lines().rev().take(5).collect();
    Err(format!(
        "PostgreSQL on the data host did not start: {}",
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    ))
}

/// Requests served so far by every process of `deployment` (health checks and scrapes aside).
async fn served(deployment: &Deployment) -> u64 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let mut total = 0;
    for (_, base) in deployment.urls() {
        let Ok(response) = client.get(format!("{base}/metrics")).send().await else {
            continue;
        };
        let text = response.text().await.unwrap_or_default();
        total += text
            .lines()
            .filter(|l| l.starts_with("rsvp_http_requests_total{"))
            .filter(|l| {
                !["/readyz", "/healthz", "/metrics"]
                    .iter()
                    .any(|r| l.contains(&format!("route=\"{r}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    total
}

/// Event reads before, during and after `host` is cut off (caches off, so every read asks the
/// users module for names).
async fn partition(
    hosts: &mut Hosts,
    bins: &Path,
    work: &Path,
    host: &str,
    run: &NetworkRun,
    postgres_url: &str,
) -> Result<Vec<Phase>, String> {
    let place = Place {
        topology: Topology::Split,
        backend: run.backends[0],
        shape: Shape {
            delay: run.delays[0],
            jitter: run.jitter,
            loss: run.loss,
        },
        postgres_url,
    };
    eprintln!("partition: the {host} host cut off during event reads");
    let (deployment, seed) = start(
        hosts,
        bins,
        work,
        place,
        run,
        &[("RSVP__CACHE__ENABLED", "false")],
    )
    .await?;
    let target = Target::new(&deployment.gateway);
    let mut phases = Vec::new();
    for (phase, up) in [("before", true), ("cut off", false), ("reconnected", true)] {
        hosts.set_link(host, up)?;
        phases.push(read_events(phase, &target, &seed, run.concurrency, run.partition_phase).await);
    }
    hosts.set_link(host, true)?;
    deployment.stop().await;
    hosts.unexpose_all();
    Ok(phases)
}

async fn read_events(
    phase: &'static str,
    target: &Target,
    seed: &Arc<Seed>,
    workers: usize,
    duration: Duration,
) -> Phase {
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (target, seed) = (target.clone(), seed.clone());
            tokio::spawn(async move {
                let (mut answered, mut errors, mut missing, mut latencies) = (0, 0, 0, Vec::new());
                while started.elapsed() < duration {
                    let (id, _) = &seed.events[rand::thread_rng().gen_range(0..seed.events.len())];
                    let t0 = Instant::now();
                    let request = target
                        .client
                        .get(format!("{}/api/events/{id}", target.base));
                    match target.send(request, 200).await {
                        Ok(event) => {
                            answered += 1;
                            missing += u64::from(event["organizer"]["name"].is_null());
                            latencies.push(t0.elapsed());
                        }
                        Err(_) => errors += 1,
                    }
                }
                (answered, errors, missing, latencies)
            })
        })
        .collect();
    let (mut answered, mut errors, mut missing, mut latencies) = (0, 0, 0, Vec::new());
    for handle in handles {
        if let Ok((a, e, m, l)) = handle.await {
            (answered, errors, missing) = (answered + a, errors + e, missing + m);
            latencies.extend(l);
        }
    }
    latencies.sort();
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Phase {
        phase,
        requests_per_second: answered as f64 / started.elapsed().as_secs_f64(),
        answered,
        errors,
        names_missing: missing,
        p99_ms: p99,
    }
}

fn markdown(results: &Results) -> String {
    let mut md = format!(
        "## Monolith and split, each process on a host of its own\n\nMachine: {}\n\nNetwork: {}. \
         Load generator, NATS and every process on hosts of their own (network namespaces). \
         SQLite: each database a file on its service's host; PostgreSQL: a server on the data \
         host, every query crossing the network. A bare actix-web handler on the load \
         generator's host: {:.0} requests/s.\n\n\
         | backend | delay (ms) | scenario | topology | p50 (ms) | p99 (ms) | requests/s | HTTP exchanges per request | network round trips per request, by host reached | errors |\n\
         |---|---:|---|---|---:|---:|---:|---:|---|---:|\n",
        results.machine, results.shape, results.bare_handler_per_second
    );
    for r in &results.rows {
        md.push_str(&format!(
            "| {:?} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.2} | {} | {} |\n",
            r.backend,
            r.delay_ms,
            r.scenario,
            r.topology,
            r.p50_ms,
            r.p99_ms,
            r.throughput,
            r.exchanges,
            r.round_trips
                .iter()
                .map(|(host, n)| format!("{host} {n:.2}"))
                .collect::<Vec<_>>()
                .join(" · "),
            r.errors
        ));
    }
    if let Some((host, phases)) = &results.partition {
        md.push_str(&format!(
            "\n### The {host} host cut off during event reads (split, caches off)\n\n\
             | phase | answered/s | answered | errors | names missing | p99 (ms) |\n|---|---:|---:|---:|---:|---:|\n"
        ));
        for p in phases {
            md.push_str(&format!(
                "| {} | {:.0} | {} | {} | {} | {:.1} |\n",
                p.phase, p.requests_per_second, p.answered, p.errors, p.names_missing, p.p99_ms
            ));
        }
    }
    md
}

/// p50 latency against the link delay: one line per scenario and topology.
fn chart(results: &Results, backend: Backend, path: &Path) -> Result<(), String> {
    let max_delay = results
        .rows
        .iter()
        .map(|r| r.delay_ms)
        .fold(0.0, f64::max)
        .max(1.0);
    let max_latency = results
        .rows
        .iter()
        .map(|r| r.p50_ms)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let root = SVGBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "p50 latency against link delay, {backend:?} (ms; thick: split, thin: monolith)"
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..max_delay, 0.0..max_latency)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("delay per host link (ms)")
        .y_desc("p50 (ms)")
        .draw()
        .map_err(|e| e.to_string())?;
    let colours = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        for topology in [Topology::Split, Topology::Monolith] {
            let points: Vec<(f64, f64)> = results
                .rows
                .iter()
                .filter(|r| {
                    r.scenario == scenario.label()
                        && r.topology == topology.label()
                        && r.backend == backend
                })
                .map(|r| (r.delay_ms, r.p50_ms))
                .collect();
            let style = colours[i].stroke_width(if topology == Topology::Split { 3 } else { 1 });
            chart
                .draw_series(LineSeries::new(points, style))
                .map_err(|e| e.to_string())?
                .label(format!("{} · {}", scenario.label(), topology.label()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}
