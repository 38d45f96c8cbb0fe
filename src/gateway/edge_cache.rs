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
//! - an answer may come from a service's cache that has not applied a change yet when the
//!   gateway has (a rename in the users service, seen in the events service's names over the
//!   same broadcast): every change is applied again [`SETTLE`] later, which drops such a copy;
//! - a fill races an invalidation as in `platform::read_cache`: a miss takes a [`Ticket`] before
//!   it asks the service, and its answer is kept only if nothing it depends on was invalidated
//!   since.
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

/// Invalidations remembered for fills that started before them; a fill older than all of them
/// is refused.
const REMEMBERED: usize = 256;

/// How long after a change it is applied once more: longer than a broadcast takes to reach
/// and be applied by every service instance, short enough that a copy made from a cache that
/// had not applied it yet is not served for long.
pub const SETTLE: Duration = Duration::from_millis(500);

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
            let text = tags.iter().map(Tag::to_string).collect::<Vec<_>>().join(",");
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
    /// The answer a service gave, minus what describes the exchange rather than the resource.
    pub fn new(headers: HeaderMap, body: Bytes) -> Self {
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

    fn weight(&self, key: &str) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        // The compressed forms come later: counted ahead, as a list page's are.
        128 + key.len() + headers + self.body.identity().len() * 5 / 2
    }
}

/// Taken before a miss asks the service; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// The answers kept, by path and query.
pub struct EdgeCache {
    state: Mutex<State>,
    max_bytes: usize,
    ttl: Duration,
    series: CacheSeries,
    /// Changes to apply again, each (as the tags it stales) with when.
    settling: Mutex<HashMap<Option<Vec<Tag>>, Instant>>,
}

struct Stored {
    answer: Arc<EdgeAnswer>,
    tags: Vec<Tag>,
    expires: Instant,
    weight: usize,
    /// Which fill stored it, to tell it from a later fill of the same key in `order`.
    fill: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Box<str>, Stored>,
    by_tag: HashMap<Tag, HashSet<Box<str>>>,
    /// Fills in the order they happened: the oldest expire, or are evicted, first.
    order: VecDeque<(u64, Box<str>)>,
    fills: u64,
    bytes: usize,
    /// Invalidations so far, and the last [`REMEMBERED`] of them (`None`: everything).
    invalidations: u64,
    recent: VecDeque<(u64, Option<Tag>)>,
}

impl EdgeCache {
    /// An empty cache bounded as the `cache` settings bound each cache.
    pub fn new(settings: &CacheSettings, series: CacheSeries) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_bytes: usize::try_from(settings.max_bytes).unwrap_or(usize::MAX),
            ttl: Duration::from_millis(settings.ttl_ms.max(1)),
            series,
            settling: Mutex::new(HashMap::new()),
        }
    }

    /// Applies each change once more [`SETTLE`] after it was applied, for as long as the cache
    /// is in use.
    pub fn spawn_second_sweeps(self: &Arc<Self>) {
        let cache = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SETTLE / 4).await;
                let Some(cache) = cache.upgrade() else { break };
                let now = Instant::now();
                let due: Vec<_> = {
                    let mut settling = cache
                        .settling
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let due = settling
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(tags, _)| tags.clone())
                        .collect();
                    settling.retain(|_, at| *at > now);
                    due
                };
                for tags in due {
                    cache.invalidate(tags.as_deref());
                }
            }
        });
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

    /// Keeps `answer`, depending on `tags`, unless one of them was invalidated since `ticket`.
    pub fn fill(&self, ticket: Ticket, key: &str, tags: Vec<Tag>, answer: EdgeAnswer) {
        let weight = answer.weight(key);
        if weight > self.max_bytes / 4 {
            return; // one answer never pushes out a quarter of the others
        }
        let now = Instant::now();
        let mut state = self.lock();
        if !state.untouched_since(ticket, &tags) {
            return;
        }
        state.remove(key);
        state.fills += 1;
        let fill = state.fills;
        for tag in &tags {
            state
                .by_tag
                .entry(tag.clone())
                .or_default()
                .insert(key.into());
        }
        state.order.push_back((fill, key.into()));
        state.bytes += weight;
        state.entries.insert(
            key.into(),
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
    /// fills that started before.
    pub fn invalidate(&self, tags: Option<&[Tag]>) {
        let mut state = self.lock();
        match tags {
            Some(tags) => {
                for tag in tags {
                    state.remember(Some(tag.clone()));
                    for key in state.by_tag.remove(tag).unwrap_or_default() {
                        state.remove(&key);
                    }
                }
            }
            None => {
                state.remember(None);
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
    /// Whether no invalidation since `ticket` touched any of `tags`.
    fn untouched_since(&self, Ticket(seen): Ticket, tags: &[Tag]) -> bool {
        let since = self.invalidations - seen;
        if since == 0 {
            return true;
        }
        if since > self.recent.len() as u64 {
            return false; // forgotten: it may have been one of them
        }
        self.recent
            .iter()
            .rev()
            .take(since as usize)
            .all(|(_, tag)| tag.as_ref().is_some_and(|tag| !tags.contains(tag)))
    }

    fn remember(&mut self, tag: Option<Tag>) {
        self.invalidations += 1;
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back((self.invalidations, tag));
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
        let tags = change.stales();
        self.invalidate(tags.as_deref());
        self.settling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tags, Instant::now() + SETTLE);
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::platform::read_cache::CacheMetrics;

    fn cache(max_bytes: u64, ttl_ms: u64) -> EdgeCache {
        let settings = CacheSettings {
            enabled: true,
            max_bytes,
            ttl_ms,
        };
        EdgeCache::new(&settings, CacheMetrics::default().series("edge"))
    }

    fn answer(body: &'static str) -> EdgeAnswer {
        EdgeAnswer::new(HeaderMap::new(), Bytes::from_static(body.as_bytes()))
    }

    fn body(cache: &EdgeCache, key: &str) -> Option<Bytes> {
        cache.get(key).map(|a| a.body.identity().clone())
    }

    #[test]
    fn a_change_drops_the_answers_that_depend_on_it_and_only_those() {
        let cache = cache(1 << 20, 60_000);
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
        let cache = cache(1 << 20, 60_000);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let ticket = cache.ticket();
        cache.apply(&Change::item("event", a, false));
        cache.fill(ticket, "/a", vec![Tag::item("event", a)], answer("old"));
        assert_eq!(body(&cache, "/a"), None);
        // Another event's change does not refuse it.
        let ticket = cache.ticket();
        cache.apply(&Change::item("event", b, false));
        cache.fill(ticket, "/a", vec![Tag::item("event", a)], answer("new"));
        assert_eq!(body(&cache, "/a").as_deref(), Some(&b"new"[..]));
        // Nor does it survive everything, or more changes than are remembered.
        let ticket = cache.ticket();
        cache.apply(&Change::Everything);
        cache.fill(ticket, "/c", vec![Tag::item("event", b)], answer("c"));
        assert_eq!(body(&cache, "/c"), None);
        let ticket = cache.ticket();
        for _ in 0..=REMEMBERED {
            cache.apply(&Change::item("event", Uuid::now_v7(), false));
        }
        cache.fill(ticket, "/c", vec![Tag::item("event", b)], answer("c"));
        assert_eq!(body(&cache, "/c"), None);
    }

    #[test]
    fn racing_fills_and_changes_never_leave_a_stale_answer() {
        // Readers fill what they read under a ticket taken before reading; writers bump the
        // version, then announce. Whatever interleaving, what stays is the latest version.
        let cache = Arc::new(cache(1 << 20, 60_000));
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
                        let kept = EdgeAnswer::new(HeaderMap::new(), text);
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
        let last = version.load(std::sync::atomic::Ordering::SeqCst).to_string();
        if let Some(kept) = body(&cache, "/e") {
            assert_eq!(kept, last.as_bytes());
        }
    }

    #[tokio::test]
    async fn a_copy_made_before_a_slower_cache_applied_a_change_goes_when_it_settles() {
        let cache = Arc::new(cache(1 << 20, 60_000));
        cache.spawn_second_sweeps();
        let id = Uuid::now_v7();
        cache.apply(&Change::item("user", id, false));
        // The service's cache had not applied the rename yet: an old name, with a clean ticket.
        let tags = vec![Tag::any_item("user")];
        cache.fill(cache.ticket(), "/e", tags, answer("old name"));
        assert!(body(&cache, "/e").is_some());
        tokio::time::sleep(SETTLE * 2).await;
        assert_eq!(body(&cache, "/e"), None);
    }

    #[test]
    fn the_oldest_answers_go_first_when_full_or_expired() {
        let one = answer("x").weight("/0");
        let cache = cache(one as u64 * 4, 60_000);
        for i in 0..6 {
            let key = format!("/{i}");
            cache.fill(cache.ticket(), &key, vec![Tag::lists("event")], answer("x"));
        }
        let kept: Vec<_> = (0..6).map(|i| body(&cache, &format!("/{i}")).is_some()).collect();
        assert_eq!(kept, [false, false, true, true, true, true]);
        // Refilling a key replaces it without counting it twice.
        cache.fill(cache.ticket(), "/5", vec![], answer("x"));
        assert!(body(&cache, "/2").is_some());

        let cache = self::cache(1 << 20, 1);
        cache.fill(cache.ticket(), "/a", vec![], answer("a"));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(body(&cache, "/a"), None);
    }
}
