//! A bounded in-process cache for hot reads that is never wrong: writers invalidate what they
//! changed before answering, and a reader that missed may only fill the cache with what it read
//! if no invalidation of that key happened since it looked.
//!
//! The classic race this prevents: a reader misses, reads the old row, a writer commits and
//! invalidates, then the reader stores the old row — stale until evicted. Here the reader takes
//! a [`Ticket`] *before* it reads; invalidation bumps the key's stripe generation under the
//! stripe's lock, and a fill checks its ticket under the same lock, so a fill either lands
//! before the invalidation (and is removed by it) or sees the new generation (and is dropped).
//!
//! Entries expire after a TTL as well: in the split topology invalidations from other instances
//! travel over the broker, and a lost message must not leave an entry stale for ever.

use std::{
    hash::{BuildHasher, Hash, RandomState},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use moka::{notification::RemovalCause, sync::Cache};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, core::Collector};

/// Stripes of invalidation generations; a fill is refused only when its own stripe moved.
const STRIPES: usize = 64;

/// The `cache` section of the configuration.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CacheSettings {
    /// Off: every read goes to the database (for comparisons; the product's default is on).
    pub enabled: bool,
    /// Upper bound of each cache's size, counted as the bytes of the entries it holds.
    pub max_bytes: u64,
    /// How long an entry may live without being invalidated: the bound on staleness when an
    /// invalidation from another instance is lost.
    pub ttl_ms: u64,
}

/// What a reader holds from before its database read until it fills the cache.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    stripe: usize,
    generation: u64,
}

/// A ticket for values read in bulk (a list query) whose keys are not known in advance: valid
/// only while no key at all was invalidated.
#[derive(Debug, Clone, Copy)]
pub struct BulkTicket {
    invalidations: u64,
}

/// How big a cached value is, for the size bound.
pub trait Weigh {
    /// Approximate bytes held.
    fn weight(&self) -> u32;
}

/// A size-bounded, TTL-bounded cache of `K → V` with race-free fills (module docs).
pub struct ReadCache<K, V> {
    entries: Option<Cache<K, V>>,
    stripes: Box<[Mutex<u64>]>,
    hasher: RandomState,
    /// Every invalidation, of any key; what a [`BulkTicket`] checks.
    invalidations: AtomicU64,
    hits: IntCounter,
    misses: IntCounter,
    metrics: CacheMetrics,
    name: &'static str,
}

impl<K, V> ReadCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Weigh + Send + Sync + 'static,
{
    /// An empty cache named `name` in the metrics (disabled: every lookup misses).
    pub fn new(name: &'static str, settings: &CacheSettings, metrics: &CacheMetrics) -> Self {
        let evictions = metrics.evictions.with_label_values(&[name]);
        let entries = settings.enabled.then(|| {
            Cache::builder()
                .max_capacity(settings.max_bytes)
                .weigher(|_: &K, value: &V| value.weight())
                .time_to_live(Duration::from_millis(settings.ttl_ms.max(1)))
                .eviction_listener(move |_, _, cause| {
                    if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                        evictions.inc();
                    }
                })
                .build()
        });
        Self {
            entries,
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            hasher: RandomState::new(),
            invalidations: AtomicU64::new(0),
            hits: metrics.lookups.with_label_values(&[name, "hit"]),
            misses: metrics.lookups.with_label_values(&[name, "miss"]),
            metrics: metrics.clone(),
            name,
        }
    }

    /// The cached value, if any.
    pub fn get(&self, key: &K) -> Option<V> {
        let found = self.entries.as_ref().and_then(|cache| cache.get(key));
        match found {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        }
        found
    }

    /// Taken before reading `key`'s value from its source.
    pub fn ticket(&self, key: &K) -> Ticket {
        let stripe = self.stripe_of(key);
        Ticket {
            stripe,
            generation: *lock(&self.stripes[stripe]),
        }
    }

    /// Taken before a bulk read whose keys are learnt from the read itself.
    pub fn bulk_ticket(&self) -> BulkTicket {
        BulkTicket {
            invalidations: self.invalidations.load(Ordering::Acquire),
        }
    }

    /// Stores `value` read under `ticket`, unless `key` was invalidated since.
    pub fn fill(&self, ticket: Ticket, key: K, value: V) {
        let Some(cache) = &self.entries else { return };
        let stripe = lock(&self.stripes[ticket.stripe]);
        if *stripe == ticket.generation {
            cache.insert(key, value);
        }
        drop(stripe);
        self.report_size(cache);
    }

    /// Replaces `key`'s value with `update(current)`, read under `ticket`, unless `key` was
    /// invalidated since: for a value gathered piece by piece (say, an event's attendee pages).
    pub fn update(&self, ticket: Ticket, key: K, update: impl FnOnce(Option<V>) -> V) {
        let Some(cache) = &self.entries else { return };
        let stripe = lock(&self.stripes[ticket.stripe]);
        if *stripe == ticket.generation {
            let value = update(cache.get(&key));
            cache.insert(key, value);
        }
        drop(stripe);
        self.report_size(cache);
    }

    /// Stores `value` read under a bulk `ticket`, unless anything was invalidated since.
    pub fn fill_bulk(&self, ticket: BulkTicket, key: K, value: V) {
        let Some(cache) = &self.entries else { return };
        let stripe = lock(&self.stripes[self.stripe_of(&key)]);
        // Invalidations count up under their stripe's lock, so an invalidation of this key
        // either shows here or runs after this insert (and removes it).
        if self.invalidations.load(Ordering::Acquire) == ticket.invalidations {
            cache.insert(key, value);
        }
        drop(stripe);
        self.report_size(cache);
    }

    /// Drops `key` and refuses fills of it read before now.
    pub fn invalidate(&self, key: &K) {
        let mut stripe = lock(&self.stripes[self.stripe_of(key)]);
        *stripe += 1;
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.entries {
            cache.invalidate(key);
        }
    }

    /// Drops everything and refuses fills read before now.
    pub fn invalidate_all(&self) {
        let mut stripes: Vec<_> = self.stripes.iter().map(lock).collect();
        for generation in &mut stripes {
            **generation += 1;
        }
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.entries {
            cache.invalidate_all();
        }
    }

    fn stripe_of(&self, key: &K) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    fn report_size(&self, cache: &Cache<K, V>) {
        let labels = [self.name];
        self.metrics
            .entries
            .with_label_values(&labels)
            .set(i64::try_from(cache.entry_count()).unwrap_or(i64::MAX));
        self.metrics
            .bytes
            .with_label_values(&labels)
            .set(i64::try_from(cache.weighted_size()).unwrap_or(i64::MAX));
    }
}

/// A poisoned stripe only means a panic elsewhere held it; its counter is still right.
fn lock(stripe: &Mutex<u64>) -> std::sync::MutexGuard<'_, u64> {
    stripe
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The caches' metrics, registered with the process's `/metrics`.
#[derive(Clone)]
pub struct CacheMetrics {
    lookups: IntCounterVec,
    evictions: IntCounterVec,
    entries: IntGaugeVec,
    bytes: IntGaugeVec,
}

impl Default for CacheMetrics {
    fn default() -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["cache"]).expect("valid metric")
        };
        Self {
            lookups: counter(
                "cache_lookups_total",
                "Read-cache lookups by cache and result (hit or miss)",
                &["cache", "result"],
            ),
            evictions: counter(
                "cache_evictions_total",
                "Entries dropped for size or age (invalidations not counted)",
                &["cache"],
            ),
            entries: gauge("cache_entries", "Entries held, by cache"),
            bytes: gauge("cache_size_bytes", "Approximate bytes held, by cache"),
        }
    }
}

/// One cache's series of [`CacheMetrics`], for a cache kept otherwise than in a [`ReadCache`].
pub struct CacheSeries {
    pub hits: IntCounter,
    pub misses: IntCounter,
    pub evictions: IntCounter,
    pub entries: IntGauge,
    pub bytes: IntGauge,
}

impl CacheMetrics {
    /// The series of the cache named `name`.
    pub fn series(&self, name: &str) -> CacheSeries {
        CacheSeries {
            hits: self.lookups.with_label_values(&[name, "hit"]),
            misses: self.lookups.with_label_values(&[name, "miss"]),
            evictions: self.evictions.with_label_values(&[name]),
            entries: self.entries.with_label_values(&[name]),
            bytes: self.bytes.with_label_values(&[name]),
        }
    }

    /// The collectors to register.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.lookups.clone()),
            Box::new(self.evictions.clone()),
            Box::new(self.entries.clone()),
            Box::new(self.bytes.clone()),
        ]
    }
}

impl Weigh for bytes::Bytes {
    fn weight(&self) -> u32 {
        u32::try_from(self.len()).unwrap_or(u32::MAX)
    }
}

impl<T: Weigh> Weigh for Arc<T> {
    fn weight(&self) -> u32 {
        (**self).weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> ReadCache<u32, bytes::Bytes> {
        let settings = CacheSettings {
            enabled: true,
            max_bytes: 1 << 20,
            ttl_ms: 60_000,
        };
        ReadCache::new("test", &settings, &CacheMetrics::default())
    }

    fn value(s: &'static str) -> bytes::Bytes {
        bytes::Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn a_fill_read_before_an_invalidation_is_dropped() {
        let cache = cache();
        let ticket = cache.ticket(&1);
        cache.invalidate(&1);
        cache.fill(ticket, 1, value("old"));
        assert_eq!(cache.get(&1), None);

        let ticket = cache.ticket(&1);
        cache.fill(ticket, 1, value("new"));
        assert_eq!(cache.get(&1), Some(value("new")));
    }

    #[test]
    fn invalidating_everything_refuses_every_earlier_ticket() {
        let cache = cache();
        let (one, two, bulk) = (cache.ticket(&1), cache.ticket(&2), cache.bulk_ticket());
        cache.invalidate_all();
        cache.fill(one, 1, value("a"));
        cache.fill(two, 2, value("b"));
        cache.fill_bulk(bulk, 3, value("c"));
        assert_eq!(
            (cache.get(&1), cache.get(&2), cache.get(&3)),
            (None, None, None)
        );
    }

    #[test]
    fn an_update_builds_on_the_current_value_unless_invalidated() {
        let cache = cache();
        cache.update(cache.ticket(&1), 1, |_| value("a"));
        cache.update(cache.ticket(&1), 1, |old| {
            assert_eq!(old, Some(value("a")));
            value("ab")
        });
        assert_eq!(cache.get(&1), Some(value("ab")));
        let ticket = cache.ticket(&1);
        cache.invalidate(&1);
        cache.update(ticket, 1, |_| value("stale"));
        assert_eq!(cache.get(&1), None);
    }

    #[test]
    fn a_bulk_fill_is_refused_after_any_invalidation() {
        let cache = cache();
        let bulk = cache.bulk_ticket();
        cache.invalidate(&99);
        cache.fill_bulk(bulk, 1, value("a"));
        assert_eq!(cache.get(&1), None);
        let bulk = cache.bulk_ticket();
        cache.fill_bulk(bulk, 1, value("a"));
        assert_eq!(cache.get(&1), Some(value("a")));
    }

    #[test]
    fn an_invalidation_drops_the_entry() {
        let cache = cache();
        cache.fill(cache.ticket(&1), 1, value("a"));
        cache.invalidate(&1);
        assert_eq!(cache.get(&1), None);
    }

    #[test]
    fn a_disabled_cache_always_misses() {
        let settings = CacheSettings {
            enabled: false,
            max_bytes: 1 << 20,
            ttl_ms: 60_000,
        };
        let cache: ReadCache<u32, bytes::Bytes> =
            ReadCache::new("off", &settings, &CacheMetrics::default());
        cache.fill(cache.ticket(&1), 1, value("a"));
        assert_eq!(cache.get(&1), None);
    }

    /// Readers and writers racing on one key: once the last writer's invalidation returned,
    /// no reader may leave a value read before it in the cache.
    #[test]
    fn racing_fills_never_outlive_the_last_write() {
        let cache = Arc::new(cache());
        let source = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (cache, source) = (cache.clone(), source.clone());
                std::thread::spawn(move || {
                    for _ in 0..5_000 {
                        if i == 0 {
                            source.fetch_add(1, Ordering::SeqCst);
                            cache.invalidate(&7);
                        } else if cache.get(&7).is_none() {
                            let ticket = cache.ticket(&7);
                            let read = source.load(Ordering::SeqCst);
                            std::thread::yield_now();
                            cache.fill(ticket, 7, bytes::Bytes::from(read.to_string()));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let last = source.load(Ordering::SeqCst).to_string();
        if let Some(cached) = cache.get(&7) {
            assert_eq!(cached, bytes::Bytes::from(last));
        }
    }
}
