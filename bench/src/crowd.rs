//! The flash crowd: N distinct people sign up for one event at the same instant (by default
//! 10,000 people for 500 seats). Measures sign-ups per second and each sign-up's latency, then
//! checks what the contract promises under such a race: every sign-up answered `201`, exactly
//! `capacity` seats given, everyone else waitlisted at distinct places 1..N-capacity, and the
//! event's registrations, read back in arrival order, agreeing with what each person was told.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{Duration as Days, Utc};
use futures_util::{StreamExt, stream};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Barrier, Semaphore};

use crate::load::{PASSWORD, Target};

/// What one crowd run measured, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Crowd {
    pub people: usize,
    pub capacity: u32,
    /// Requests in flight at most (the crowd's connections).
    pub connections: usize,
    pub signups_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Registers `people` accounts and an organiser, logs them all in, and creates the event.
pub struct Prepared {
    organizer: String,
    tokens: Vec<String>,
    event: String,
    capacity: u32,
}

const SEEDING_CONCURRENCY: usize = 64;

/// Accounts `crowd{i}@example.com` (and an organiser), each logged in, and one event of
/// `capacity` seats a week ahead.
pub async fn prepare(target: &Target, people: usize, capacity: u32) -> Result<Prepared, String> {
    let accounts: Vec<String> = (0..=people)
        .map(|i| format!("crowd{i}@example.com"))
        .collect();
    let mut tokens: Vec<String> = stream::iter(accounts.iter().cloned().map(|email| {
        let target = target.clone();
        async move {
            let body = json!({"email": email, "password": PASSWORD, "name": email});
            target
                .send(
                    target
                        .client
                        .post(format!("{}/api/auth/register", target.base))
                        .json(&body),
                    201,
                )
                .await?;
            let tokens = target
                .send(
                    target
                        .client
                        .post(format!("{}/api/auth/login", target.base))
                        .json(&json!({"email": email, "password": PASSWORD})),
                    200,
                )
                .await?;
            tokens["access_token"]
                .as_str()
                .map(String::from)
                .ok_or_else(|| format!("login of {email}: no token"))
        }
    }))
    .buffered(SEEDING_CONCURRENCY)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()?;
    let organizer = tokens.remove(0);
    let starts = Utc::now() + Days::days(7);
    let event = target
        .send(
            target
                .client
                .post(format!("{}/api/events", target.base))
                .bearer_auth(&organizer)
                .json(&json!({
                    "title": "Flash crowd", "capacity": capacity,
                    "starts_at": starts.to_rfc3339(),
                    "ends_at": (starts + Days::hours(2)).to_rfc3339(),
                })),
            201,
        )
        .await?;
    let event = event["id"]
        .as_str()
        .ok_or("the created event has no id")?
        .to_owned();
    Ok(Prepared {
        organizer,
        tokens,
        event,
        capacity,
    })
}

/// Everyone signs up at once (at most `connections` requests in flight), then the outcome is
/// checked against the contract. An error names the first broken promise.
pub async fn run(target: &Target, prepared: Prepared, connections: usize) -> Result<Crowd, String> {
    let people = prepared.tokens.len();
    let url = format!(
        "{}/api/events/{}/registrations",
        target.base, prepared.event
    );
    // A connection pool as large as the crowd's in-flight limit, opened before the start so
    // the measurement is of sign-ups, not of TCP handshakes.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    warm_up(&client, target, connections).await;

    let gate = Arc::new(Semaphore::new(connections));
    let start = Arc::new(Barrier::new(people + 1));
    let tasks: Vec<_> = prepared
        .tokens
        .iter()
        .map(|token| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            let (gate, start) = (gate.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let _slot = gate.acquire().await.map_err(|e| e.to_string())?;
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let took = sent.elapsed();
                if status != 201 {
                    return Err(format!("sign-up answered {status}: {body}"));
                }
                Ok::<_, String>((body, took))
            })
        })
        .collect();
    start.wait().await;
    let started = Instant::now();
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let mut answers = Vec::with_capacity(people);
    let (mut errors, mut first_error) = (0usize, None);
    for task in tasks {
        match task.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok((body, took)) => {
                latencies.saturating_record(took.as_micros() as u64);
                answers.push(body);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some(error) = first_error {
        return Err(format!(
            "{errors} of {people} sign-ups failed, the first: {error}"
        ));
    }
    check(target, &prepared, &answers).await?;
    Ok(Crowd {
        people,
        capacity: prepared.capacity,
        connections,
        signups_per_second: people as f64 / elapsed.as_secs_f64(),
        p50_ms: latencies.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: latencies.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: latencies.max() as f64 / 1000.0,
    })
}

/// Opens `connections` keep-alive connections (health checks in parallel).
async fn warm_up(client: &reqwest::Client, target: &Target, connections: usize) {
    let url = format!("{}/healthz", target.base);
    stream::iter(0..connections)
        .for_each_concurrent(connections, |_| {
            let request = client.get(&url);
            async move {
                let _ = request.send().await;
            }
        })
        .await;
}

/// Capacity exact, the waitlist numbered 1..N-capacity once each, and the event's
/// registrations in arrival order telling the same story as the answers.
async fn check(target: &Target, prepared: &Prepared, answers: &[Value]) -> Result<(), String> {
    let capacity = prepared.capacity as usize;
    let mut told: HashMap<String, Option<u64>> = HashMap::new();
    for answer in answers {
        let user = answer["user_id"]
            .as_str()
            .ok_or_else(|| format!("a registration without user_id: {answer}"))?;
        let position = match answer["status"].as_str() {
            Some("confirmed") => None,
            Some("waitlisted") => Some(
                answer["position"]
                    .as_u64()
                    .ok_or_else(|| format!("waitlisted without a position: {answer}"))?,
            ),
            _ => return Err(format!("unexpected registration: {answer}")),
        };
        if told.insert(user.to_owned(), position).is_some() {
            return Err(format!("{user} was registered twice"));
        }
    }
    let confirmed = told.values().filter(|p| p.is_none()).count();
    let expected_confirmed = capacity.min(answers.len());
    if confirmed != expected_confirmed {
        return Err(format!(
            "{confirmed} seats given for a capacity of {capacity} ({} people)",
            answers.len()
        ));
    }
    let mut positions: Vec<u64> = told.values().filter_map(|p| *p).collect();
    positions.sort_unstable();
    if positions
        .iter()
        .enumerate()
        .any(|(i, &p)| p != i as u64 + 1)
    {
        return Err("the waitlist positions told are not 1..N-capacity, each once".into());
    }
    let event = target
        .send(
            target
                .client
                .get(format!("{}/api/events/{}", target.base, prepared.event)),
            200,
        )
        .await?;
    let waiting = answers.len() - confirmed;
    if event["seats_taken"].as_u64() != Some(confirmed as u64)
        || event["waitlist_length"].as_u64() != Some(waiting as u64)
    {
        return Err(format!(
            "the event says {} seats taken and {} waiting; {confirmed} and {waiting} were told",
            event["seats_taken"], event["waitlist_length"]
        ));
    }
    // The registrations in arrival order: the seats first, then the waitlist in the order of
    // the positions its people were told.
    let mut in_order = Vec::with_capacity(answers.len());
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!(
            "{}/api/events/{}/registrations?limit=100",
            target.base, prepared.event
        );
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page = target
            .send(target.client.get(url).bearer_auth(&prepared.organizer), 200)
            .await?;
        for item in page["items"].as_array().into_iter().flatten() {
            in_order.push(item["user"]["id"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    if in_order.len() != answers.len() {
        return Err(format!(
            "{} registrations stored, {} answered",
            in_order.len(),
            answers.len()
        ));
    }
    for (i, user) in in_order.iter().enumerate() {
        let expected = (i >= confirmed).then(|| (i - confirmed + 1) as u64);
        if told.get(user) != Some(&expected) {
            return Err(format!(
                "arrival order broken: registration {} of the list ({user}) was told {:?}, \
                 expected {expected:?}",
                i + 1,
                told.get(user)
            ));
        }
    }
    Ok(())
}

/// The crowd's table row heading and one row.
pub fn markdown_row(backend: &str, topology: &str, network: &str, crowd: &Crowd) -> String {
    format!(
        "| {backend} | {topology} | {network} | {} / {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
        crowd.people,
        crowd.capacity,
        crowd.connections,
        crowd.signups_per_second,
        crowd.p50_ms,
        crowd.p99_ms,
        crowd.max_ms
    )
}

pub const MARKDOWN_HEADER: &str = "| backend | topology | network | people / seats | in flight | sign-ups/s | p50 ms | p99 ms | max ms | × bare |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|";
