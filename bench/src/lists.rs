//! `rsvp-bench lists`: the event list's latency at 1 000 and at 1 000 000 events, for every
//! filter combination, first page and a deep page. The 1 000 events are created through the API;
//! the million are the same rows repeated in bulk by SQL (seconds, not a million requests).
//! The server runs with its read caches off, so every request reaches the database.

use std::{path::Path, time::Duration, time::Instant};

use chrono::{Days, Utc};
use diesel::{Connection, RunQueryDsl, connection::SimpleConnection};
use indicatif::ProgressBar;
use serde_json::{Value, json};

use crate::{
    deployment::{Backend, Deployment, Topology},
    load::{self, Target},
};

/// Requests per measured figure (the median is reported).
const SAMPLES: usize = 30;
/// How deep the "deep page" is: the page after this many pages of 20.
const DEEP_PAGES: usize = 10;

/// One filter combination's query string and the figures at both sizes.
struct Row {
    query: String,
    first: [Option<Duration>; 2],
    /// Events on the first page at each size: a page of 3 renders faster than one of 20.
    items: [usize; 2],
    deep: [Option<Duration>; 2],
    /// The cursor of the deep page, found at 1 000 events and reused at 1 000 000.
    deep_cursor: Option<String>,
}

/// Runs the comparison on `backend`, returning a markdown table.
pub async fn compare(
    backend: Backend,
    bins: &Path,
    dir: &Path,
    postgres_url: &str,
    copies: u32,
) -> Result<String, String> {
    let bar = ProgressBar::new_spinner();
    bar.set_message(format!("{backend:?}: seeding 1 000 events"));
    let (mut deployment, _) = Deployment::start(
        Topology::Monolith,
        backend,
        bins,
        dir,
        postgres_url,
        4,
        None,
    )
    .await?;
    let target = Target::new(&deployment.gateway);
    let seed = load::seed(&target, 20, 1_000, 0, &bar).await?;
    let organizer = &seed.organizers[0].token;
    add_rare_event(&target, organizer).await?;
    let me = target
        .send(
            target
                .client
                .get(format!("{}/api/users/me", target.base))
                .bearer_auth(organizer),
            200,
        )
        .await?;
    let organizer_id = me["id"].as_str().unwrap_or_default().to_owned();
    deployment
        .restart_with("RSVP__CACHE__ENABLED", "false")
        .await?;

    let mut rows: Vec<Row> = queries(&organizer_id)
        .into_iter()
        .map(|query| Row {
            query,
            first: [None; 2],
            items: [0; 2],
            deep: [None; 2],
            deep_cursor: None,
        })
        .collect();
    bar.set_message(format!("{backend:?}: measuring at 1 000 events"));
    for row in &mut rows {
        row.deep_cursor = deep_cursor(&target, &row.query).await?;
        measure(&target, row, 0).await?;
    }
    bar.set_message(format!(
        "{backend:?}: repeating the rows to 1 000 000 events"
    ));
    let url = deployment.database_url().ok_or("no database")?;
    let took = multiply(&url, copies)?;
    // The product indexes what has no search text yet (SQLite's copies) when it starts.
    deployment
        .restart_with("RSVP__CACHE__ENABLED", "false")
        .await?;
    let indexed_in = wait_indexed(&url).await?;
    bar.set_message(format!("{backend:?}: measuring at 1 000 000 events"));
    for row in &mut rows {
        measure(&target, row, 1).await?;
    }
    bar.finish_and_clear();
    deployment.stop().await;

    let ms = |d: &Option<Duration>| {
        d.map_or("–".to_owned(), |d| {
            format!("{:.2}", d.as_secs_f64() * 1e3)
        })
    };
    let ratio = |pair: &[Option<Duration>; 2]| match pair {
        [Some(a), Some(b)] => format!("{:.2}", b.as_secs_f64() / a.as_secs_f64()),
        _ => "–".to_owned(),
    };
    let mut out = format!(
        "### {backend:?}: 1 001 events → {} events (repeated in {:.0} s, indexed for search in {:.0} s)\n\n\
         Median of {SAMPLES} sequential requests, caches off. Deep page: the page after \
         {DEEP_PAGES} pages of 20 (\"–\": fewer matches at 1 001 events).\n\n\
         | query | events on page 1k / 1M | first page 1k (ms) | at 1M (ms) | × | deep page 1k (ms) | at 1M (ms) | × |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        1_001 * (u64::from(copies) + 1),
        took.as_secs_f64(),
        indexed_in.as_secs_f64()
    );
    for row in &rows {
        out.push_str(&format!(
            "| `{}` | {} / {} | {} | {} | {} | {} | {} | {} |\n",
            if row.query.is_empty() {
                "(none)"
            } else {
                &row.query
            },
            row.items[0],
            row.items[1],
            ms(&row.first[0]),
            ms(&row.first[1]),
            ratio(&row.first),
            ms(&row.deep[0]),
            ms(&row.deep[1]),
            ratio(&row.deep),
        ));
    }
    Ok(out)
}

/// One event in a town no other has: the rare match the issue names.
async fn add_rare_event(target: &Target, token: &str) -> Result<(), String> {
    let starts = Utc::now() + Days::new(100);
    let body = json!({
        "title": "The rare one", "location": "Rareville", "category": "Tech",
        "starts_at": starts.to_rfc3339(),
        "ends_at": (starts + chrono::Duration::hours(2)).to_rfc3339(), "capacity": 10,
    });
    let request = target
        .client
        .post(format!("{}/api/events", target.base))
        .bearer_auth(token)
        .json(&body);
    target.send(request, 201).await.map(drop)
}

/// Every combination of the five filters, plus the two rare cases.
fn queries(organizer: &str) -> Vec<String> {
    let from = (Utc::now() + Days::new(30)).format("%Y-%m-%dT00:00:00Z");
    let to = (Utc::now() + Days::new(200)).format("%Y-%m-%dT00:00:00Z");
    let parts = [
        format!("from={from}"),
        format!("to={to}"),
        format!("organizer_id={organizer}"),
        "category=tech".to_owned(),
        "location=berlin".to_owned(),
    ];
    let mut all: Vec<String> = (0..32u32)
        .map(|mask| {
            parts
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, p)| p.as_str())
                .collect::<Vec<_>>()
                .join("&")
        })
        .collect();
    all.push("category=nosuch".into());
    all.push("location=rareville".into());
    // Free text: a common word's beginning, a rare one, two words, a word nobody wrote, one
    // with a filter; and the lists relative to now.
    for q in [
        "q=ber",
        "q=rare",
        "q=event%20ber",
        "q=zzyzx",
        "q=seed&category=tech",
    ] {
        all.push(q.into());
    }
    all.push("when=upcoming".into());
    all.push("when=past".into());
    all
}

fn page_url(target: &Target, query: &str, cursor: Option<&str>) -> String {
    let mut url = format!("{}/api/events?limit=20", target.base);
    if !query.is_empty() {
        url.push('&');
        url.push_str(query);
    }
    if let Some(cursor) = cursor {
        url.push_str("&cursor=");
        url.push_str(cursor);
    }
    url
}

async fn page(target: &Target, url: &str) -> Result<Value, String> {
    target.send(target.client.get(url), 200).await
}

/// The cursor after `DEEP_PAGES` pages, if the list is that long.
async fn deep_cursor(target: &Target, query: &str) -> Result<Option<String>, String> {
    let mut cursor: Option<String> = None;
    for _ in 0..DEEP_PAGES {
        let answer = page(target, &page_url(target, query, cursor.as_deref())).await?;
        match answer["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(None),
        }
    }
    Ok(cursor)
}

async fn median(target: &Target, url: &str) -> Result<Duration, String> {
    page(target, url).await?;
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        page(target, url).await?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[SAMPLES / 2])
}

async fn measure(target: &Target, row: &mut Row, size: usize) -> Result<(), String> {
    let url = page_url(target, &row.query, None);
    row.items[size] = page(target, &url).await?["items"]
        .as_array()
        .map_or(0, Vec::len);
    row.first[size] = Some(median(target, &url).await?);
    if let Some(cursor) = &row.deep_cursor {
        let url = page_url(target, &row.query, Some(cursor));
        row.deep[size] = Some(median(target, &url).await?);
    }
    Ok(())
}

/// Repeats every event `copies` more times, with new ids, in one statement; then lets the
/// database gather statistics as its routine maintenance would (PostgreSQL's autovacuum).
/// Waits until every event has its search text and its words listed (the product's background
/// indexing); how long.
async fn wait_indexed(url: &str) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let left = count_unindexed(url)?;
        if left == 0 {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(1800) {
            return Err(format!("{left} events still not indexed after 30 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn count_unindexed(url: &str) -> Result<i64, String> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = "SELECT COUNT(*) AS n FROM events WHERE words_listed IS NULL";
    let found: Count = match url.strip_prefix("sqlite://") {
        Some(path) => diesel::sql_query(sql)
            .get_result(&mut diesel::SqliteConnection::establish(path).map_err(|e| e.to_string())?),
        None => diesel::sql_query(sql)
            .get_result(&mut diesel::PgConnection::establish(url).map_err(|e| e.to_string())?),
    }
    .map_err(|e| format!("counting unindexed events: {e}"))?;
    Ok(found.n)
}

fn multiply(url: &str, copies: u32) -> Result<Duration, String> {
    let start = Instant::now();
    let columns = "organizer_id, title, description, location, location_key, category, \
                   category_key, starts_at, ends_at, capacity, 0, 0, status, created_at, updated_at, \
                   time_zone, sequence";
    // PostgreSQL's full-text index follows the text column, and the copies' word lists are
    // filled in by SQL; SQLite's search rows are the product's to write: its copies come
    // without text, as events of an older version would, and the product indexes them after
    // the restart that follows ([`wait_indexed`]).
    let insert = |id: &str, series: &str, text: &str, listed: &str| {
        format!(
            "INSERT INTO events (id, organizer_id, title, description, location, location_key, \
             category, category_key, starts_at, ends_at, capacity, seats_taken, waitlist_length, \
             status, created_at, updated_at, time_zone, sequence, search_text, words_listed) \
             SELECT {id}, {columns}, {text}, {listed} FROM seed_events, {series}"
        )
    };
    if let Some(path) = url.strip_prefix("sqlite://") {
        let mut conn = diesel::SqliteConnection::establish(path).map_err(|e| e.to_string())?;
        let id = "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || \
                  substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-' || \
                  hex(randomblob(6)))";
        let series = format!(
            "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {copies}) SELECT i FROM n)"
        );
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = 60000; CREATE TEMP TABLE seed_events AS SELECT * FROM events; \
             BEGIN IMMEDIATE; {}; COMMIT;",
            insert(id, &series, "NULL", "NULL")
        ))
        .map_err(|e| format!("bulk insert: {e}"))?;
    } else {
        let mut conn = diesel::PgConnection::establish(url).map_err(|e| e.to_string())?;
        // The copies' word lists as the migration that made the table fills them in.
        conn.batch_execute(&format!(
            "CREATE TEMP TABLE seed_events AS SELECT * FROM events; {}; \
             INSERT INTO event_words (word, starts_at, event_id) \
             SELECT DISTINCT word, starts_at, id \
             FROM events, unnest(string_to_array(search_text, ' ')) AS word \
             WHERE search_text IS NOT NULL AND word <> '' \
             ON CONFLICT DO NOTHING; \
             ANALYZE events; ANALYZE event_words;",
            insert(
                "gen_random_uuid()::text",
                &format!("generate_series(1, {copies})"),
                "search_text",
                "1"
            )
        ))
        .map_err(|e| format!("bulk insert: {e}"))?;
    }
    Ok(start.elapsed())
}
