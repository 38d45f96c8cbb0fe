//! The split gateway's cache of answers it relayed: a hot public read (an event, a list page)
//! is answered from the gateway's memory, without the second HTTP exchange that otherwise costs
//! the split half the monolith's rate.
//!
//! It is never wrong for the same reasons a module's own cache is not (ARCHITECTURE.md, "caches
//! that are never wrong"), over HTTP:
//!
//! - a service marks an answer that is the same for every caller with what it depends on
//!   ([`CACHE_TAGS`], from the handler's [`CacheTags`]); nothing else is kept;
//! - a service's answer to a write names what the write changed ([`CHANGES`], the changes
//!   announced while it ran): the gateway drops what they stale before it relays the answer, so
//!   a client reads its own write;
//! - changes made behind other gateways' backs (another gateway's client, a cascade after a
//!   deletion) reach it as they reach every instance: the change broadcast over NATS; the TTL
//!   bounds a missed one;
//! - a fill races an invalidation as in `platform::read_cache`: a miss takes a [`Ticket`] before
//!   it asks the service, and its answer is kept only if nothing it depends on was invalidated
//!   since;
//! - nor is an answer kept while what it depends on changed less than [`SETTLE`] ago: it may
//!   come from a service cache that has not applied the change yet (a rename in the users
//!   service reaches the events service's names over the same broadcast as the gateway), and
//!   is then only relayed.
//!
//! A change lost on its way to a service is bounded by that service's TTL, and the copy the
//! gateway keeps by its own: the bound for a lost message is their sum.
//!
//! Both headers are the gateway's business: they are taken off every relayed answer.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use actix_web::{
    Error, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderMap, HeaderName, HeaderValue},
    middleware::Next,
};
use bytes::Bytes;

use crate::platform::{
    changes::{self, CacheTags, Change, ChangeListener, Tag},
    compression::Encodings,
    read_cache::{CacheSeries, CacheSettings},
};

/// On a service's answer: the [`Tag`]s it depends on, comma-separated; only on answers the
/// same for every caller.
pub const CACHE_TAGS: HeaderName = HeaderName::from_static("rsvp-cache-tags");

/// On a service's answer: the [`Change`]s announced while it was made, as a JSON array.
pub const CHANGES: HeaderName = HeaderName::from_static("rsvp-changes");

/// How long after a change answers that depend on it are relayed without being kept: longer
/// than a broadcast takes to reach, and be applied by, every service instance.
pub const SETTLE: Duration = Duration::from_millis(500);

/// How long a tag's last change is remembered for fills that started before it; a fill that
/// took longer (an upstream deadline is 10 s) is refused.
const REMEMBER: Duration = Duration::from_secs(15);

/// Keys longer than this (a query string padded with parameters nobody reads) are not kept.
const LONGEST_KEY: usize = 512;

/// The headers of a kept answer that describe the resource; the rest (the date, CORS for the
/// first caller's origin, security headers) the gateway's own middleware sets for each caller.
const KEPT_HEADERS: [HeaderName; 4] = [
    actix_web::http::header::CONTENT_TYPE,
    actix_web::http::header::CACHE_CONTROL,
    actix_web::http::header::ETAG,
    actix_web::http::header::LAST_MODIFIED,
];

/// The service side (every split service's app): tells the gateway what an answer depends on
/// and what the request changed.
pub async fn tell_the_gateway(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let (response, changed) = changes::noting(next.call(req)).await;
    let mut response = response?;
    let tags = response
        .response()
        .extensions()
        .get::<CacheTags>()
        .and_then(|CacheTags(tags)| {
            let text = tags
                .iter()
                .map(Tag::to_string)
                .collect::<Vec<_>>()
                .join(",");
            HeaderValue::try_from(text).ok()
        });
    let headers = response.headers_mut();
    if let Some(tags) = tags {
        headers.insert(CACHE_TAGS, tags);
    }
    if !changed.is_empty()
        && let Ok(json) = serde_json::to_string(&changed)
        && let Ok(value) = HeaderValue::try_from(json)
    {
        headers.insert(CHANGES, value);
    }
    Ok(response)
}

/// The tags of a relayed answer; `None` when it carries none or any is unreadable.
pub fn tags_of(headers: &HeaderMap) -> Option<Vec<Tag>> {
    let text = headers.get(CACHE_TAGS)?.to_str().ok()?;
    text.split(',').map(Tag::parse).collect()
}

/// The changes a relayed answer reports (none when unreadable: the TTL is then the bound).
pub fn changes_of(headers: &HeaderMap) -> Vec<Change> {
    let Some(value) = headers.get(CHANGES) else {
        return Vec::new();
    };
    match serde_json::from_slice(value.as_bytes()) {
        Ok(changes) => changes,
        Err(err) => {
            tracing::warn!(error = %err, "unreadable change report from a service");
            vec![Change::Everything]
        }
    }
}

/// A kept answer: `200`, its headers (the type among them) and its body in every coding asked
/// for so far.
#[derive(Debug)]
pub struct EdgeAnswer {
    headers: HeaderMap,
    body: Arc<Encodings>,
}

impl EdgeAnswer {
    /// The answer a service gave with `headers`, of which it keeps those of the resource.
    pub fn new(headers: &HeaderMap, body: Bytes) -> Self {
        Self::kept(resource_headers(headers), body)
    }

    /// An answer whose headers are already those of the resource ([`resource_headers`]).
    pub fn kept(headers: HeaderMap, body: Bytes) -> Self {
        Self {
            headers,
            body: Encodings::kept(body),
        }
    }

    /// The answer to send; the compression middleware picks the coding.
    pub fn respond(&self) -> HttpResponse {
        let mut response = HttpResponse::Ok();
        for (name, value) in &self.headers {
            response.append_header((name.clone(), value.clone()));
        }
        self.body.respond(&mut response)
    }

    /// Bytes held for it under `key` with `tags` (each tag's index holds the key too).
    fn weight(&self, key: &str, tags: &[Tag]) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        // The compressed forms come later: counted ahead, as a list page's are.
        128 + key.len() + tags.len() * 96 + headers + self.body.identity().len() * 5 / 2
    }
}

/// Of an answer's `headers`, those that describe the resource ([`KEPT_HEADERS`]).
pub fn resource_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in &KEPT_HEADERS {
        for value in headers.get_all(name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// Taken before a miss asks the service; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// The answers kept, by path and query.
pub struct EdgeCache {
    state: Mutex<State>,
    max_bytes: usize,
    ttl: Duration,
    /// [`SETTLE`], but in tests.
    settle: Duration,
    series: CacheSeries,
}

struct Stored {
    answer: Arc<EdgeAnswer>,
    tags: Vec<Tag>,
    expires: Instant,
    weight: usize,
    /// Which fill stored it, to tell it from a later fill of the same key in `order`.
    fill: u64,
}

/// When something changed: the invalidation's number (what tickets are compared with) and its
/// instant.
#[derive(Clone, Copy)]
struct Changed {
    number: u64,
    at: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<Arc<str>, Stored>,
    by_tag: HashMap<Tag, HashSet<Arc<str>>>,
    /// Fills in the order they happened: the oldest expire, or are evicted, first.
    order: VecDeque<(u64, Arc<str>)>,
    fills: u64,
    bytes: usize,
    /// Invalidations so far.
    invalidations: u64,
    /// Each tag's last change, for [`REMEMBER`]; and the last change of everything.
    changed: HashMap<Tag, Changed>,
    everything: Option<Changed>,
    /// The latest invalidation forgotten since: a ticket from before it is refused.
    forgotten: u64,
}

impl EdgeCache {
    /// An empty cache bounded as the `cache` settings bound each cache.
    pub fn new(settings: &CacheSettings, series: CacheSeries) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_bytes: usize::try_from(settings.max_bytes).unwrap_or(usize::MAX),
            ttl: Duration::from_millis(settings.ttl_ms.max(1)),
            settle: SETTLE,
            series,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere that held it left the maps consistent: each change is one step.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer kept for `key`, if any and not expired.
    pub fn get(&self, key: &str) -> Option<Arc<EdgeAnswer>> {
        let found = {
            let state = self.lock();
            state
                .entries
                .get(key)
                .filter(|stored| stored.expires > Instant::now())
                .map(|stored| Arc::clone(&stored.answer))
        };
        match found {
            Some(_) => self.series.hits.inc(),
            None => self.series.misses.inc(),
        }
        found
    }

    /// Taken before asking the service for `key`.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().invalidations)
    }

    /// Keeps `answer`, depending on `tags`, unless one of them was invalidated since `ticket` or
    /// changed less than [`SETTLE`] ago.
    pub fn fill(&self, ticket: Ticket, key: &str, tags: Vec<Tag>, answer: EdgeAnswer) {
        let weight = answer.weight(key, &tags);
        if weight > self.max_bytes / 4 || key.len() > LONGEST_KEY {
            return; // one answer never pushes out a quarter of the others
        }
        let now = Instant::now();
        let mut state = self.lock();
        if !state.unchanged(ticket, &tags, now, self.settle) {
            return;
        }
        state.remove(key);
        state.fills += 1;
        let fill = state.fills;
        let key: Arc<str> = key.into();
        for tag in &tags {
            state
                .by_tag
                .entry(tag.clone())
                .or_default()
                .insert(Arc::clone(&key));
        }
        state.order.push_back((fill, Arc::clone(&key)));
        state.bytes += weight;
        state.entries.insert(
            key,
            Stored {
                answer: Arc::new(answer),
                tags,
                expires: now + self.ttl,
                weight,
                fill,
            },
        );
        // The oldest go first: expired ones, then as many as the bound needs.
        while let Some((fill, key)) = state.order.front() {
            let stored = state.entries.get(key).filter(|s| s.fill == *fill);
            let expired = stored.is_some_and(|s| s.expires <= now);
            let over = state.bytes > self.max_bytes;
            if stored.is_some() && !expired && !over {
                break;
            }
            let (fill, key) = state.order.pop_front().expect("looked at it");
            if state.entries.get(&key).is_some_and(|s| s.fill == fill) {
                state.remove(&key);
                self.series.evictions.inc();
            }
        }
        self.series.entries.set(state.entries.len() as i64);
        self.series.bytes.set(state.bytes as i64);
    }

    /// Drops every answer that depends on one of `tags` (`None`: every answer), and refuses
    /// fills that started before, or that come within [`SETTLE`].
    pub fn invalidate(&self, tags: Option<&[Tag]>) {
        let now = Instant::now();
        let mut state = self.lock();
        state.invalidations += 1;
        let changed = Changed {
            number: state.invalidations,
            at: now,
        };
        state.forget_before(now);
        match tags {
            Some(tags) => {
                for tag in tags {
                    state.changed.insert(tag.clone(), changed);
                    for key in state.by_tag.remove(tag).unwrap_or_default() {
                        state.remove(&key);
                    }
                }
            }
            None => {
                state.everything = Some(changed);
                state.entries.clear();
                state.by_tag.clear();
                state.order.clear();
                state.bytes = 0;
            }
        }
        self.series.entries.set(state.entries.len() as i64);
        self.series.bytes.set(state.bytes as i64);
    }
}

impl State {
    /// Whether none of `tags` (nor everything) changed since `ticket` or less than [`SETTLE`]
    /// before `now`.
    fn unchanged(
        &self,
        Ticket(seen): Ticket,
        tags: &[Tag],
        now: Instant,
        settle: Duration,
    ) -> bool {
        if seen < self.forgotten {
            return false; // it may have been one of them
        }
        let clean = |changed: Option<Changed>| {
            changed.is_none_or(|c| c.number <= seen && now.duration_since(c.at) >= settle)
        };
        clean(self.everything) && tags.iter().all(|t| clean(self.changed.get(t).copied()))
    }

    /// Forgets changes older than [`REMEMBER`] (checked when there are many).
    fn forget_before(&mut self, now: Instant) {
        if self.changed.len() < 1024 {
            return;
        }
        let mut forgotten = self.forgotten;
        self.changed.retain(|_, c| {
            let keep = now.duration_since(c.at) < REMEMBER;
            if !keep {
                forgotten = forgotten.max(c.number);
            }
            keep
        });
        self.forgotten = forgotten;
    }

    /// Drops `key`'s answer and its place in the tag index (its place in `order` goes when it
    /// comes up).
    fn remove(&mut self, key: &str) {
        let Some(stored) = self.entries.remove(key) else {
            return;
        };
        self.bytes -= stored.weight;
        for tag in &stored.tags {
            if let Some(keys) = self.by_tag.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
    }
}

impl ChangeListener for EdgeCache {
    fn apply(&self, change: &Change) {
        self.invalidate(change.stales().as_deref());
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::platform::read_cache::CacheMetrics;

    fn cache(max_bytes: u64, ttl_ms: u64, settle: Duration) -> EdgeCache {
        let settings = CacheSettings {
            enabled: true,
            max_bytes,
            ttl_ms,
        };
        let mut cache = EdgeCache::new(&settings, CacheMetrics::default().series("edge"));
        cache.settle = settle;
        cache
    }

    fn answer(body: &'static str) -> EdgeAnswer {
        EdgeAnswer::new(&HeaderMap::new(), Bytes::from_static(body.as_bytes()))
    }

    fn body(cache: &EdgeCache, key: &str) -> Option<Bytes> {
        cache.get(key).map(|a| a.body.identity().clone())
    }

    #[test]
    fn a_change_drops_the_answers_that_depend_on_it_and_only_those() {
        let cache = cache(1 << 20, 60_000, Duration::ZERO);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let tags = |id| vec![Tag::item("event", id), Tag::any_item("user")];
        cache.fill(cache.ticket(), "/a", tags(a), answer("a"));
        cache.fill(cache.ticket(), "/b", tags(b), answer("b"));
        let list = vec![Tag::lists("event"), Tag::item("event", a)];
        cache.fill(cache.ticket(), "/list", list, answer("[a]"));

        cache.apply(&Change::item("event", b, false));
        assert_eq!(body(&cache, "/b"), None);
        assert_eq!(body(&cache, "/a").as_deref(), Some(&b"a"[..]));
        assert!(body(&cache, "/list").is_some(), "b is not on the list");

        cache.apply(&Change::item("event", Uuid::now_v7(), true));
        assert_eq!(body(&cache, "/list"), None, "a new event may be listed");
        assert!(body(&cache, "/a").is_some());

        cache.apply(&Change::item("user", Uuid::now_v7(), false));
        assert_eq!(body(&cache, "/a"), None, "it shows a user's name");

        cache.fill(cache.ticket(), "/a", tags(a), answer("a"));
        cache.apply(&Change::Everything);
        assert_eq!(body(&cache, "/a"), None);
    }

    #[test]
    fn a_fill_that_started_before_an_invalidation_of_its_tags_is_refused() {
        let cache = cache(1 << 20, 60_000, Duration::ZERO);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let ticket = cache.ticket();
        cache.apply(&Change::item("event", a, false));
        cache.fill(ticket, "/a", vec![Tag::item("event", a)], answer("old"));
        assert_eq!(body(&cache, "/a"), None);
        // Another event's change does not refuse it, however many there were.
        let ticket = cache.ticket();
        for _ in 0..2_000 {
            cache.apply(&Change::item("event", b, false));
        }
        cache.fill(ticket, "/a", vec![Tag::item("event", a)], answer("new"));
        assert_eq!(body(&cache, "/a").as_deref(), Some(&b"new"[..]));
        // A change of everything refuses any.
        let ticket = cache.ticket();
        cache.apply(&Change::Everything);
        cache.fill(ticket, "/c", vec![Tag::item("event", b)], answer("c"));
        assert_eq!(body(&cache, "/c"), None);
    }

    #[test]
    fn racing_fills_and_changes_never_leave_a_stale_answer() {
        // Readers fill what they read under a ticket taken before reading; writers bump the
        // version, then announce. Whatever interleaving, what stays is the latest version.
        let cache = Arc::new(cache(1 << 20, 60_000, Duration::ZERO));
        let id = Uuid::now_v7();
        let version = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(5));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (cache, version, barrier) = (cache.clone(), version.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..5_000 {
                        let ticket = cache.ticket();
                        let read = version.load(std::sync::atomic::Ordering::SeqCst);
                        let text = Bytes::from(read.to_string());
                        let kept = EdgeAnswer::new(&HeaderMap::new(), text);
                        cache.fill(ticket, "/e", vec![Tag::item("event", id)], kept);
                    }
                })
            })
            .collect();
        barrier.wait();
        for _ in 0..2_000 {
            version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            cache.apply(&Change::item("event", id, false));
        }
        for reader in readers {
            reader.join().unwrap();
        }
        let last = version
            .load(std::sync::atomic::Ordering::SeqCst)
            .to_string();
        if let Some(kept) = body(&cache, "/e") {
            assert_eq!(kept, last.as_bytes());
        }
    }

    #[test]
    fn an_answer_is_not_kept_while_what_it_depends_on_settles() {
        let settle = Duration::from_millis(100);
        let cache = cache(1 << 20, 60_000, settle);
        cache.apply(&Change::item("user", Uuid::now_v7(), false));
        // A service cache that had not applied the rename yet gave the old name: not kept.
        let tags = vec![Tag::any_item("user")];
        cache.fill(cache.ticket(), "/e", tags.clone(), answer("old name"));
        assert_eq!(body(&cache, "/e"), None);
        // An answer that does not depend on it is.
        let other = vec![Tag::item("event", Uuid::now_v7())];
        cache.fill(cache.ticket(), "/f", other, answer("f"));
        assert!(body(&cache, "/f").is_some());
        std::thread::sleep(settle * 2);
        cache.fill(cache.ticket(), "/e", tags, answer("new name"));
        assert_eq!(body(&cache, "/e").as_deref(), Some(&b"new name"[..]));
    }

    #[test]
    fn only_the_resource_s_headers_are_kept() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("access-control-allow-origin", "https://first.example"),
            ("date", "Tue, 01 Dec 2026 00:00:00 GMT"),
            ("vary", "origin"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let kept = EdgeAnswer::new(&headers, Bytes::from_static(b"{}"));
        let names: Vec<_> = kept.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type"]);
    }

    #[test]
    fn the_oldest_answers_go_first_when_full_or_expired_and_long_keys_are_not_kept() {
        let tags = vec![Tag::lists("event")];
        let one = answer("x").weight("/0", &tags);
        let cache = cache(one as u64 * 4, 60_000, Duration::ZERO);
        for i in 0..6 {
            let key = format!("/{i}");
            cache.fill(cache.ticket(), &key, tags.clone(), answer("x"));
        }
        let kept: Vec<_> = (0..6)
            .map(|i| body(&cache, &format!("/{i}")).is_some())
            .collect();
        assert_eq!(kept, [false, false, true, true, true, true]);
        // Refilling a key replaces it without counting it twice.
        cache.fill(cache.ticket(), "/5", tags.clone(), answer("x"));
        assert!(body(&cache, "/2").is_some());

        let cache = self::cache(1 << 20, 1, Duration::ZERO);
        cache.fill(cache.ticket(), "/a", vec![], answer("a"));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(body(&cache, "/a"), None);

        let long = format!("/api/events?x={}", "y".repeat(LONGEST_KEY));
        cache.fill(cache.ticket(), &long, vec![], answer("a"));
        assert_eq!(body(&cache, &long), None);
    }
}
