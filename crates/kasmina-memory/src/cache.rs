//! A TTL-, byte- and entry-bounded concurrent LRU cache with an injected monotonic clock.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use quanta::{Clock, Instant};

use crate::error::{Error, Result};
use crate::lru::{Lru, Node};
use crate::weigh::Weigh;

/// A function giving a value's weight in bytes.
pub type Weigher<V> = Arc<dyn Fn(&V) -> u64 + Send + Sync>;

/// The longest TTL accepted (far beyond any run; kept from the moka-based cache, whose limit it was).
const MAX_TTL: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// Settings of one [`TtlCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlCacheConfig {
    /// Time to live of an entry, from its insertion (reads do not extend it). Default 3600 s (design).
    pub ttl: Duration,
    /// Bound on the summed weight of the entries, in bytes. Default 64 MiB.
    pub max_bytes: u64,
    /// Optional bound on the number of entries. Default none. Both bounds hold at once, each exactly.
    pub max_entries: Option<u64>,
}

impl Default for TtlCacheConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(3600), max_bytes: 64 * 1024 * 1024, max_entries: None }
    }
}

impl TtlCacheConfig {
    /// A config with the given TTL and byte bound and no entry bound.
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        Self { ttl, max_bytes, max_entries: None }
    }

    /// The same config with an entry bound.
    pub fn with_max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = Some(max_entries);
        self
    }

    /// Check the settings: a positive TTL of at most 1000 years, a positive byte bound, a positive entry bound.
    pub fn validate(&self) -> Result<()> {
        if self.ttl.is_zero() {
            return Err(Error::InvalidConfig { field: "ttl", reason: "must be positive" });
        }
        if self.ttl > MAX_TTL {
            return Err(Error::InvalidConfig { field: "ttl", reason: "must be at most 1000 years" });
        }
        if self.max_bytes == 0 {
            return Err(Error::InvalidConfig { field: "max_bytes", reason: "must be positive" });
        }
        if self.max_entries == Some(0) {
            return Err(Error::InvalidConfig { field: "max_entries", reason: "must be positive when set" });
        }
        Ok(())
    }
}

/// Evictions by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvictionCounts {
    /// Entries removed because their TTL ran out (on `get`, `contains_key` or a cleanup sweep).
    pub expired: u64,
    /// Entries evicted to keep the byte or entry bound.
    pub size: u64,
    /// Entries removed on request (`invalidate`, `clear`).
    pub explicit: u64,
}

impl EvictionCounts {
    /// All evictions together.
    pub fn total(&self) -> u64 {
        self.expired + self.size + self.explicit
    }
}

/// A snapshot of a cache's state and counters, for telemetry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheStats {
    /// Entries held (expired entries count until they are removed).
    pub size: u64,
    /// Summed weight of the entries held, in bytes.
    pub weighted_size_bytes: u64,
    /// The byte bound.
    pub max_bytes: u64,
    /// The entry bound, if any.
    pub max_entries: Option<u64>,
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing or an expired entry.
    pub misses: u64,
    /// `hits / (hits + misses)`, or 0 before any lookup.
    pub hit_rate: f64,
    /// Evictions by cause.
    pub evictions: EvictionCounts,
    /// The TTL in seconds.
    pub ttl_seconds: f64,
}

/// What one cleanup removed: the expired or cleared entries, plus the size evictions made by inserts since the
/// previous report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupCounts {
    /// Expired entries removed.
    pub expired: u64,
    /// Entries evicted for the byte or entry bound (by inserts) since the previous report.
    pub size_evicted: u64,
    /// Entries removed on request (by `clear`).
    pub explicit: u64,
    /// Bytes released by the removals above.
    pub bytes_freed: u64,
}

impl CleanupCounts {
    /// Entries removed, all causes together.
    pub fn total(&self) -> u64 {
        self.expired + self.size_evicted + self.explicit
    }
}

impl std::ops::AddAssign for CleanupCounts {
    fn add_assign(&mut self, rhs: Self) {
        self.expired += rhs.expired;
        self.size_evicted += rhs.size_evicted;
        self.explicit += rhs.explicit;
        self.bytes_freed += rhs.bytes_freed;
    }
}

/// Cumulative counters, kept under the cache's lock with the entries.
#[derive(Debug, Default)]
struct Counters {
    hits: u64,
    misses: u64,
    expired: u64,
    size_evicted: u64,
    explicit: u64,
}

/// Everything behind the cache's lock.
struct State<K, V> {
    lru: Lru<K, V>,
    counters: Counters,
    /// Size evictions not yet returned by `run_pending_tasks`, `cleanup` or `clear`.
    unreported: CleanupCounts,
}

/// What a lookup found.
enum Found<R, K, V> {
    /// A live entry (made the most recently used), read through the caller's closure.
    Live(R),
    /// An expired entry, now removed.
    Expired(Node<K, V>),
    Absent,
}

/// A concurrent cache bounded by TTL, bytes and (optionally) entries, with eviction counted by cause.
///
/// Entries are kept in least-recently-used order behind one lock: a lookup makes its entry the most recently used,
/// and an `insert` that takes the cache past its byte or entry bound evicts the least recently used entries there
/// and then, so both bounds always hold. Expiry is checked against an injected [`quanta::Clock`], so tests drive
/// time with `quanta::Clock::mock()`. An expired entry is removed when it is next looked up (counted as a miss and an
/// expiry) or by [`cleanup`](Self::cleanup); until then it still counts towards the bounds (and may be evicted for
/// them like any other entry). Values are cloned under the lock: wrap large ones in an `Arc`.
///
/// All methods take `&self`; clone an `Arc<TtlCache>` to share one.
pub struct TtlCache<K, V> {
    state: Mutex<State<K, V>>,
    clock: Clock,
    config: TtlCacheConfig,
    weigher: Weigher<V>,
    /// The entry bound as a count (`usize::MAX` when none is set).
    max_entries: usize,
}

impl<K, V> fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (entries, bytes) = self.state.try_lock().map_or((None, None), |s| (Some(s.lru.len()), Some(s.lru.bytes())));
        f.debug_struct("TtlCache")
            .field("config", &self.config)
            .field("entries", &entries)
            .field("bytes", &bytes)
            .finish_non_exhaustive()
    }
}

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Weigh + Clone + Send + Sync + 'static,
{
    /// A cache weighing values with their [`Weigh`] impl, timed by `clock`.
    pub fn new(config: TtlCacheConfig, clock: Clock) -> Result<Self> {
        Self::with_weigher(config, clock, Arc::new(|v: &V| v.weigh_bytes()))
    }
}

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache weighing values with `weigher`, timed by `clock`.
    pub fn with_weigher(config: TtlCacheConfig, clock: Clock, weigher: Weigher<V>) -> Result<Self> {
        config.validate()?;
        let max_entries = config.max_entries.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let state = State { lru: Lru::new(), counters: Counters::default(), unreported: CleanupCounts::default() };
        Ok(Self { state: Mutex::new(state), clock, config, weigher, max_entries })
    }

    /// The settings in use.
    pub fn config(&self) -> &TtlCacheConfig {
        &self.config
    }

    /// The clock the cache reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Insert or replace `key` with a fresh TTL, as the most recently used entry. A value heavier than the whole byte
    /// bound is refused and not cached ([`Error::EntryTooLarge`]); otherwise the least recently used entries are
    /// evicted until both bounds hold again.
    pub fn insert(&self, key: K, value: V) -> Result<()> {
        let bytes = (self.weigher)(&value);
        if bytes > self.config.max_bytes {
            return Err(Error::EntryTooLarge { bytes, max_bytes: self.config.max_bytes });
        }
        let expires_at = self.clock.now().checked_add(self.config.ttl);
        let mut evicted = Vec::new();
        let mut state = self.state.lock();
        let replaced = state.lru.insert(Node::new(key, value, expires_at, bytes));
        while state.lru.bytes() > self.config.max_bytes || state.lru.len() > self.max_entries {
            let Some(node) = state.lru.pop_lru() else { break };
            state.counters.size_evicted += 1;
            state.unreported.size_evicted += 1;
            state.unreported.bytes_freed += node.bytes;
            evicted.push(node);
        }
        drop(state);
        drop((replaced, evicted));
        Ok(())
    }

    /// The live value under `key` (a clone), counting a hit or a miss; a hit makes the entry the most recently used.
    /// An expired entry is removed and counted as a miss and an expiry.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.clock.now();
        let mut state = self.state.lock();
        match Self::lookup(&mut state, key, now, V::clone) {
            Found::Live(value) => {
                state.counters.hits += 1;
                Some(value)
            }
            found => {
                state.counters.misses += 1;
                drop(state);
                drop(found);
                None
            }
        }
    }

    /// Whether a live entry is held under `key` (made the most recently used; no hit or miss counted). An expired
    /// entry is removed and counted as an expiry.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let found = Self::lookup(&mut state, key, now, |_| ());
        drop(state);
        matches!(found, Found::Live(()))
    }

    /// Remove the entry under `key`, returning its value; counted as an explicit eviction.
    pub fn invalidate<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut state = self.state.lock();
        let i = state.lru.find(key)?;
        let node = state.lru.remove_at(i)?;
        state.counters.explicit += 1;
        drop(state);
        Some(node.value)
    }

    /// Remove every entry; returns the real count (as explicit evictions) and the bytes released, plus the size
    /// evictions not reported yet (see [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn clear(&self) -> CleanupCounts {
        let mut state = self.state.lock();
        let mut out = std::mem::take(&mut state.unreported);
        out.bytes_freed += state.lru.bytes();
        let removed = state.lru.take_all();
        out.explicit += removed.len() as u64;
        state.counters.explicit += removed.len() as u64;
        drop(state);
        drop(removed);
        out
    }

    /// Remove every expired entry. Returns what was removed, plus the size evictions not reported yet (see
    /// [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn cleanup(&self) -> CleanupCounts {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let mut out = std::mem::take(&mut state.unreported);
        let removed = state.lru.drain_if(|node| node.is_expired(now));
        out.expired += removed.len() as u64;
        out.bytes_freed += removed.iter().map(|node| node.bytes).sum::<u64>();
        state.counters.expired += removed.len() as u64;
        drop(state);
        drop(removed);
        out
    }

    /// The size evictions made since they were last reported (by this method, [`cleanup`](Self::cleanup) or
    /// [`clear`](Self::clear)). Evictions happen within [`insert`](Self::insert), so no work is ever pending; the
    /// name is kept from the moka-based cache, which deferred them.
    pub fn run_pending_tasks(&self) -> CleanupCounts {
        std::mem::take(&mut self.state.lock().unreported)
    }

    /// Entries held (expired ones count until removed).
    pub fn len(&self) -> u64 {
        self.state.lock().lru.len() as u64
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Summed weight of the entries held, in bytes.
    pub fn weighted_size_bytes(&self) -> u64 {
        self.state.lock().lru.bytes()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let state = self.state.lock();
        let c = &state.counters;
        let lookups = c.hits + c.misses;
        CacheStats {
            size: state.lru.len() as u64,
            weighted_size_bytes: state.lru.bytes(),
            max_bytes: self.config.max_bytes,
            max_entries: self.config.max_entries,
            hits: c.hits,
            misses: c.misses,
            hit_rate: if lookups == 0 { 0.0 } else { c.hits as f64 / lookups as f64 },
            evictions: EvictionCounts { expired: c.expired, size: c.size_evicted, explicit: c.explicit },
            ttl_seconds: self.config.ttl.as_secs_f64(),
        }
    }

    /// Look `key` up at `now`: a live entry becomes the most recently used and is read with `read`; an expired one
    /// is removed and counted as an expiry.
    fn lookup<Q, R>(state: &mut State<K, V>, key: &Q, now: Instant, read: impl FnOnce(&V) -> R) -> Found<R, K, V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(i) = state.lru.find(key) else { return Found::Absent };
        match state.lru.node(i) {
            Some(node) if !node.is_expired(now) => {
                let out = read(&node.value);
                state.lru.touch(i);
                Found::Live(out)
            }
            Some(_) => match state.lru.remove_at(i) {
                Some(node) => {
                    state.counters.expired += 1;
                    Found::Expired(node)
                }
                None => Found::Absent,
            },
            None => Found::Absent,
        }
    }

    /// Remove `key` if its entry is expired at `now` (counted as an expiry); returns the bytes released.
    #[cfg(test)]
    fn remove_if_expired<Q>(&self, key: &Q, now: Instant) -> Option<u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match Self::lookup(&mut self.state.lock(), key, now, |_| ()) {
            Found::Expired(node) => Some(node.bytes),
            Found::Live(()) | Found::Absent => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry bound counts entries, independently of their weight.
    #[test]
    fn the_entry_bound_counts_entries() {
        let cfg = TtlCacheConfig::new(Duration::from_secs(1), 1000).with_max_entries(10);
        let cache: TtlCache<u32, Vec<u8>> = TtlCache::new(cfg, Clock::mock().0).unwrap();
        for k in 0..20 {
            cache.insert(k, vec![0; 1]).unwrap();
        }
        assert_eq!((cache.len(), cache.weighted_size_bytes()), (10, 10), "tiny entries: the entry bound holds");
        for k in 0..5 {
            cache.insert(100 + k, vec![0; 300]).unwrap();
        }
        assert_eq!((cache.len(), cache.weighted_size_bytes()), (3, 900), "heavy entries: the byte bound holds");
        assert_eq!(
            cache.run_pending_tasks(),
            CleanupCounts { size_evicted: 22, bytes_freed: 620, ..Default::default() }
        );
        assert_eq!(cache.run_pending_tasks(), CleanupCounts::default(), "reported once");
    }

    /// A fresh entry is never collected by the expiry path; an expired one is, with its accounting.
    #[test]
    fn a_fresh_entry_is_never_collected() {
        let (clock, mock) = Clock::mock();
        let cache: TtlCache<String, Vec<u8>> =
            TtlCache::new(TtlCacheConfig::new(Duration::from_secs(10), 1000), clock.clone()).unwrap();
        cache.insert("k".into(), vec![0; 7]).unwrap();
        assert_eq!(cache.remove_if_expired("k", clock.now()), None);
        assert_eq!(cache.get("k"), Some(vec![0; 7]));
        assert_eq!((cache.len(), cache.weighted_size_bytes(), cache.stats().evictions.expired), (1, 7, 0));
        mock.increment(Duration::from_secs(10));
        assert_eq!(cache.remove_if_expired("k", clock.now()), Some(7));
        assert_eq!((cache.len(), cache.weighted_size_bytes(), cache.stats().evictions.expired), (0, 0, 1));
    }

    /// Bounds beyond `u32` (what moka's weights allowed) are kept exactly, in bytes.
    #[test]
    fn huge_bounds_are_exact() {
        let cfg = TtlCacheConfig::new(Duration::from_secs(1), 64 * 1024 * 1024 * 1024);
        let weigher: Weigher<u64> = Arc::new(|v: &u64| *v);
        let cache: TtlCache<u32, u64> = TtlCache::with_weigher(cfg, Clock::mock().0, weigher).unwrap();
        for k in 0..8 {
            cache.insert(k, 5 << 30).unwrap();
        }
        assert_eq!((cache.len(), cache.weighted_size_bytes()), (8, 40 << 30));
        cache.insert(8, 30 << 30).unwrap();
        assert_eq!((cache.len(), cache.weighted_size_bytes()), (7, 60 << 30));
    }
}
