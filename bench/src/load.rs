//! The workload: seeding through the public API, the named scenarios, and two drivers —
//! closed-loop (a fixed number of workers, each waiting for its answer) and open-loop (requests
//! started at a fixed rate whatever the answers do; latency counts from the intended start, so
//! a slow server can not hide its queueing: no coordinated omission).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{Duration as Days, Utc};
use futures_util::{StreamExt, stream};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use serde_json::{Value, json};

pub const PASSWORD: &str = "benchmark-password";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `GET /` on the bare actix-web baseline.
    Hello,
    /// The first page of the unfiltered list, again and again: what the cache serves.
    EventListHot,
    /// A new `from` each request: every page a cache miss.
    EventList,
    /// One popular event, again and again.
    EventDetailHot,
    /// Any seeded event at random: mostly cache misses.
    EventDetail,
    Attendees,
    RegisterCancel,
    Login,
    Mix,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::EventListHot,
        Scenario::EventList,
        Scenario::EventDetailHot,
        Scenario::EventDetail,
        Scenario::Attendees,
        Scenario::RegisterCancel,
        Scenario::Login,
        Scenario::Mix,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Scenario::Hello => "hello (ceiling)",
            Scenario::EventListHot => "event list, first page (hot)",
            Scenario::EventList => "event list, a new from each time (cold)",
            Scenario::EventDetailHot => "event detail, one event (hot)",
            Scenario::EventDetail => "event detail, any event (cold)",
            Scenario::Attendees => "attendee list",
            Scenario::RegisterCancel => "register + cancel",
            Scenario::Login => "login",
            Scenario::Mix => "mix",
        }
    }
}

/// Someone logged in.
#[derive(Clone)]
pub struct Actor {
    pub token: String,
}

/// What seeding created, for the scenarios to pick from.
#[derive(Default)]
pub struct Seed {
    /// Organisers; they also register and cancel (never registered while seeding).
    pub organizers: Vec<Actor>,
    /// Accounts hashed at the measured bcrypt cost, for the login scenario.
    pub login_accounts: Vec<String>,
    /// (event id, index of its organiser)
    pub events: Vec<(String, usize)>,
}

#[derive(Clone)]
pub struct Target {
    pub client: reqwest::Client,
    pub base: String,
}

impl Target {
    pub fn new(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            client,
            base: base.to_owned(),
        }
    }

    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        expected: u16,
    ) -> Result<Value, String> {
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if status != expected {
            return Err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn register(&self, email: &str, name: &str) -> Result<(), String> {
        let body = json!({"email": email, "password": PASSWORD, "name": name});
        self.send(
            self.client
                .post(format!("{}/api/auth/register", self.base))
                .json(&body),
            201,
        )
        .await
        .map(drop)
    }

    async fn login(&self, email: &str) -> Result<String, String> {
        let body = json!({"email": email, "password": PASSWORD});
        let tokens = self
            .send(
                self.client
                    .post(format!("{}/api/auth/login", self.base))
                    .json(&body),
                200,
            )
            .await?;
        tokens["access_token"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| "no token".into())
    }
}

const CONCURRENCY: usize = 32;

/// Registers `users` accounts, logs in organisers and attendees, creates `events` events and
/// `registrations` registrations — all through the public API.
pub async fn seed(
    target: &Target,
    users: usize,
    events: usize,
    registrations: usize,
    bar: &ProgressBar,
) -> Result<Seed, String> {
    let actors = users.clamp(2, 400);
    bar.set_length((users + actors + events + registrations) as u64);
    bar.set_position(0);
    let email = |i: usize| format!("bench{i}@example.com");
    run_all(
        (0..users).map(|i| {
            let t = target.clone();
            let e = email(i);
            async move { t.register(&e, &format!("User {i}")).await }
        }),
        bar,
    )
    .await?;
    let tokens: Vec<String> = stream::iter((0..actors).map(|i| {
        let t = target.clone();
        let e = email(i);
        async move { t.login(&e).await }
    }))
    .buffered(CONCURRENCY)
    .inspect(|_| bar.inc(1))
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()?;
    let mut all: Vec<Actor> = tokens.into_iter().map(|token| Actor { token }).collect();
    let attendees = all.split_off(actors / 2);
    let organizers = all;

    let categories = ["Music", "Tech", "Sports", "Art", "Food"];
    let cities = ["Berlin", "Paris", "Lisbon", "Oslo", "Rome", "Vienna"];
    let created: Vec<Result<(String, usize), String>> = stream::iter((0..events).map(|i| {
        let target = target.clone();
        let organizer = i % organizers.len();
        let token = organizers[organizer].token.clone();
        async move {
            let starts =
                Utc::now() + Days::days(1 + (i % 365) as i64) + Days::minutes((i % 1440) as i64);
            let body = json!({
                "title": format!("Event {i}"), "description": "Seeded by rsvp-bench",
                "category": categories[i % categories.len()], "location": cities[i % cities.len()],
                "starts_at": starts.to_rfc3339(), "ends_at": (starts + Days::hours(2)).to_rfc3339(),
                "capacity": 10 + (i % 190),
            });
            let event = target
                .send(
                    target
                        .client
                        .post(format!("{}/api/events", target.base))
                        .bearer_auth(token)
                        .json(&body),
                    201,
                )
                .await?;
            Ok((
                event["id"].as_str().unwrap_or_default().to_owned(),
                organizer,
            ))
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .inspect(|_| bar.inc(1))
    .collect()
    .await;
    let events: Vec<(String, usize)> = created.into_iter().collect::<Result<_, _>>()?;

    // Seeded registrations: attendee a on event e, each pair once.
    let pairs = registrations.min(attendees.len() * events.len());
    run_all(
        (0..pairs).map(|i| {
            let target = target.clone();
            let attendee = attendees[i % attendees.len()].token.clone();
            let event = events[(i / attendees.len() * 7919 + i) % events.len()]
                .0
                .clone();
            async move {
                let url = format!("{}/api/events/{event}/registrations", target.base);
                match target
                    .send(target.client.post(url).bearer_auth(attendee), 201)
                    .await
                {
                    Err(e) if e.starts_with("status 409") => Ok(()),
                    other => other.map(drop),
                }
            }
        }),
        bar,
    )
    .await?;
    Ok(Seed {
        organizers,
        login_accounts: Vec::new(),
        events,
    })
}

/// Accounts created after a restart at the measured bcrypt cost, for the login scenario.
pub async fn seed_login_accounts(
    target: &Target,
    seed: &mut Seed,
    count: usize,
) -> Result<(), String> {
    let emails: Vec<String> = (0..count)
        .map(|i| format!("login{i}@example.com"))
        .collect();
    let none = ProgressBar::hidden();
    run_all(
        emails.iter().map(|e| {
            let t = target.clone();
            let e = e.clone();
            async move { t.register(&e, "Login").await }
        }),
        &none,
    )
    .await?;
    seed.login_accounts = emails;
    Ok(())
}

async fn run_all<F: std::future::Future<Output = Result<(), String>>>(
    jobs: impl Iterator<Item = F>,
    bar: &ProgressBar,
) -> Result<(), String> {
    let results: Vec<Result<(), String>> = stream::iter(jobs)
        .buffer_unordered(CONCURRENCY)
        .inspect(|_| bar.inc(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// One operation of `scenario`; `n` numbers operations so each register/cancel pair is unique.
pub async fn operation(
    scenario: Scenario,
    target: &Target,
    seed: &Seed,
    n: u64,
    rng: &mut StdRng,
) -> Result<(), String> {
    let scenario = match scenario {
        Scenario::Mix => match rng.gen_range(0..100) {
            0..50 => Scenario::EventDetail,
            50..75 => Scenario::EventList,
            75..85 => Scenario::Attendees,
            85..95 => Scenario::RegisterCancel,
            _ => Scenario::Login,
        },
        other => other,
    };
    let base = &target.base;
    let client = &target.client;
    match scenario {
        Scenario::EventListHot => target
            .send(client.get(format!("{base}/api/events?limit=20")), 200)
            .await
            .map(drop),
        Scenario::EventDetailHot => {
            let (id, _) = &seed.events[0];
            target
                .send(client.get(format!("{base}/api/events/{id}")), 200)
                .await
                .map(drop)
        }
        Scenario::EventList => {
            let from = (Utc::now() + Days::days(rng.gen_range(0..365)))
                .to_rfc3339()
                .replace('+', "%2B");
            target
                .send(
                    client.get(format!("{base}/api/events?limit=20&from={from}")),
                    200,
                )
                .await
                .map(drop)
        }
        Scenario::EventDetail => {
            let (id, _) = &seed.events[rng.gen_range(0..seed.events.len())];
            target
                .send(client.get(format!("{base}/api/events/{id}")), 200)
                .await
                .map(drop)
        }
        Scenario::Attendees => {
            let (id, organizer) = &seed.events[rng.gen_range(0..seed.events.len())];
            let token = &seed.organizers[*organizer].token;
            target
                .send(
                    client
                        .get(format!("{base}/api/events/{id}/registrations?limit=20"))
                        .bearer_auth(token),
                    200,
                )
                .await
                .map(drop)
        }
        Scenario::RegisterCancel => {
            // Organisers never registered during seeding; operation n pairs organiser n mod A
            // with event n / A, so no two operations share a pair until the events run out.
            let actors = seed.organizers.len() as u64;
            let actor = &seed.organizers[(n % actors) as usize];
            let (id, _) =
                &seed.events[((n / actors) as usize * 31 + n as usize) % seed.events.len()];
            let url = format!("{base}/api/events/{id}/registrations");
            target
                .send(client.post(&url).bearer_auth(&actor.token), 201)
                .await?;
            target
                .send(
                    client.delete(format!("{url}/me")).bearer_auth(&actor.token),
                    204,
                )
                .await
                .map(drop)
        }
        Scenario::Login => {
            let email = &seed.login_accounts[rng.gen_range(0..seed.login_accounts.len())];
            target.login(email).await.map(drop)
        }
        Scenario::Hello => target
            .send(client.get(format!("{base}/")), 200)
            .await
            .map(drop),
        Scenario::Mix => unreachable!(),
    }
}

/// What one driver run measured.
pub struct Measured {
    pub histogram: Histogram<u64>,
    pub errors: u64,
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

/// One worker's latencies, error count and first error.
type WorkerResult = (Histogram<u64>, u64, Option<String>);

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// `workers` loops, each sending its next request when the previous one answered.
pub async fn closed_loop(
    scenario: Scenario,
    target: &Target,
    seed: Arc<Seed>,
    workers: usize,
    duration: Duration,
    counter: Arc<AtomicU64>,
) -> Measured {
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (target, seed, counter) = (target.clone(), seed.clone(), counter.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w as u64);
                let mut hist = histogram();
                let (mut errors, mut first_error) = (0u64, None);
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t0 = Instant::now();
                    match operation(scenario, &target, &seed, n, &mut rng).await {
                        Ok(()) => hist.saturating_record(t0.elapsed().as_micros() as u64),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (hist, errors, first_error)
            })
        })
        .collect();
    merge(handles, started).await
}

/// Starts requests at `rate` per second for `duration`, each measured from its intended start.
pub async fn open_loop(
    scenario: Scenario,
    target: &Target,
    seed: Arc<Seed>,
    rate: u64,
    duration: Duration,
    counter: Arc<AtomicU64>,
) -> Measured {
    let started = Instant::now();
    let total = rate * duration.as_secs().max(1);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut handles = Vec::with_capacity(total as usize);
    for i in 0..total {
        let intended = started + interval * i as u32;
        tokio::time::sleep_until(intended.into()).await;
        let (target, seed, counter) = (target.clone(), seed.clone(), counter.clone());
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(i);
            let mut hist = histogram();
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let result = operation(scenario, &target, &seed, n, &mut rng).await;
            let (errors, first_error) = match result {
                Ok(()) => {
                    hist.saturating_record(intended.elapsed().as_micros() as u64);
                    (0, None)
                }
                Err(e) => (1, Some(e)),
            };
            (hist, errors, first_error)
        }));
    }
    merge(handles, started).await
}

async fn merge(handles: Vec<tokio::task::JoinHandle<WorkerResult>>, started: Instant) -> Measured {
    let mut measured = Measured {
        histogram: histogram(),
        errors: 0,
        elapsed: Duration::ZERO,
        first_error: None,
    };
    for handle in handles {
        match handle.await {
            Ok((hist, errors, first_error)) => {
                let _ = measured.histogram.add(&hist);
                measured.errors += errors;
                if measured.first_error.is_none() {
                    measured.first_error = first_error;
                }
            }
            Err(e) => {
                measured.errors += 1;
                measured.first_error.get_or_insert(e.to_string());
            }
        }
    }
    measured.elapsed = started.elapsed();
    measured
}

/// The ceiling for any HTTP endpoint on this machine: a bare actix-web handler.
pub async fn bare_actix_server() -> (String, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = bare_server(listener).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

/// The bare handler on `bind` until the process is stopped.
pub async fn serve_bare(bind: &str) -> Result<(), String> {
    let listener = std::net::TcpListener::bind(bind).map_err(|e| format!("{bind}: {e}"))?;
    eprintln!("bare actix-web handler on http://{bind}/");
    bare_server(listener)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())
}

fn bare_server(listener: std::net::TcpListener) -> std::io::Result<actix_web::dev::Server> {
    Ok(actix_web::HttpServer::new(|| {
        actix_web::App::new().route("/", actix_web::web::get().to(|| async { "ok" }))
    })
    .workers(2)
    .listen(listener)?
    .run())
}
