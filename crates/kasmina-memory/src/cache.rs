//! A TTL- and byte-bounded concurrent cache on top of `moka`, with an injected monotonic clock.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::policy::EvictionPolicy;
use quanta::{Clock, Instant};

use crate::error::{Error, Result};
use crate::weigh::Weigh;

/// A function giving a value's weight in bytes.
pub type Weigher<V> = Arc<dyn Fn(&V) -> u64 + Send + Sync>;

/// The longest TTL accepted (moka's own limit).
const MAX_TTL: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// Settings of one [`TtlCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlCacheConfig {
    /// Time to live of an entry, from its insertion (reads do not extend it). Default 3600 s (design).
    pub ttl: Duration,
    /// Bound on the summed weight of the entries, in bytes. Default 64 MiB.
    pub max_bytes: u64,
    /// Optional bound on the number of entries. Default none.
    ///
    /// Both bounds hold at once: with an entry bound, every entry counts at least `max_bytes / max_entries` bytes
    /// against the byte bound, so the cache may evict a little before either bound alone is reached.
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

/// What one cleanup removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupCounts {
    /// Expired entries removed.
    pub expired: u64,
    /// Entries evicted for the byte or entry bound while pending work was applied.
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

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    expired: AtomicU64,
    size_evicted: AtomicU64,
    size_evicted_bytes: AtomicU64,
    explicit: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
}

/// A cached value with its expiry and its weight.
#[derive(Clone)]
struct Slot<V> {
    value: V,
    /// `None`: beyond the clock's range, never expires.
    expires_at: Option<Instant>,
    bytes: u64,
    /// Weight in the cache's units against moka's bound.
    units: u32,
}

impl<V> Slot<V> {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// A concurrent cache bounded by TTL, bytes and (optionally) entries, with eviction counted by cause.
///
/// Storage, the weight bound and LRU eviction come from [`moka::sync::Cache`]; expiry is checked by this wrapper
/// against an injected [`quanta::Clock`] (moka's own mock clock is private to moka), so tests drive time with
/// `quanta::Clock::mock()`. An expired entry is removed when it is next looked up (counted as a miss and an
/// expiry) or by [`cleanup`](Self::cleanup); until then it still counts towards the bounds, which keep holding
/// regardless.
///
/// All methods take `&self`; clone an `Arc<TtlCache>` to share one.
pub struct TtlCache<K, V> {
    inner: moka::sync::Cache<K, Slot<V>>,
    clock: Clock,
    config: TtlCacheConfig,
    weigher: Weigher<V>,
    counters: Arc<Counters>,
    /// Bytes per weight unit against moka's `u32` weights (1 unless the bound exceeds `u32::MAX` bytes).
    unit: u64,
    /// Minimum weight of an entry, in bytes (enforces the entry bound through the byte bound).
    floor: u64,
}

impl<K, V> fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtlCache")
            .field("config", &self.config)
            .field("entries", &self.counters.entries.load(Relaxed))
            .field("bytes", &self.counters.bytes.load(Relaxed))
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
        let unit = config.max_bytes.div_ceil(u64::from(u32::MAX)).max(1);
        let floor = config.max_entries.map_or(1, |n| (config.max_bytes / n).max(1));
        let counters = Arc::new(Counters::default());
        let listener_counters = Arc::clone(&counters);
        let inner = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes / unit)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|_k: &K, slot: &Slot<V>| slot.units)
            .eviction_listener(move |_k: Arc<K>, slot: Slot<V>, cause: RemovalCause| {
                let c = &listener_counters;
                c.entries.fetch_sub(1, Relaxed);
                c.bytes.fetch_sub(slot.bytes, Relaxed);
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    c.size_evicted.fetch_add(1, Relaxed);
                    c.size_evicted_bytes.fetch_add(slot.bytes, Relaxed);
                }
            })
            .build();
        Ok(Self { inner, clock, config, weigher, counters, unit, floor })
    }

    /// The settings in use.
    pub fn config(&self) -> &TtlCacheConfig {
        &self.config
    }

    /// The clock the cache reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Insert or replace `key` with a fresh TTL. A value heavier than the whole byte bound is refused and not
    /// cached ([`Error::EntryTooLarge`]); otherwise older entries are evicted (LRU) to make room.
    pub fn insert(&self, key: K, value: V) -> Result<()> {
        let bytes = (self.weigher)(&value);
        if bytes > self.config.max_bytes {
            return Err(Error::EntryTooLarge { bytes, max_bytes: self.config.max_bytes });
        }
        let units = u32::try_from(bytes.max(self.floor).div_ceil(self.unit)).unwrap_or(u32::MAX);
        let expires_at = self.clock.now().checked_add(self.config.ttl);
        // Count before inserting: the listener subtracts when this slot (or the one it replaces) goes.
        self.counters.entries.fetch_add(1, Relaxed);
        self.counters.bytes.fetch_add(bytes, Relaxed);
        self.inner.insert(key, Slot { value, expires_at, bytes, units });
        Ok(())
    }

    /// The live value under `key` (a clone), counting a hit or a miss. An expired entry is removed and counted as a
    /// miss and an expiry.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
    {
        match self.inner.get(key) {
            Some(slot) if !slot.is_expired(self.clock.now()) => {
                self.counters.hits.fetch_add(1, Relaxed);
                Some(slot.value)
            }
            Some(_) => {
                self.remove_if_expired(key, self.clock.now());
                self.counters.misses.fetch_add(1, Relaxed);
                None
            }
            None => {
                self.counters.misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Whether a live entry is held under `key` (no hit or miss counted; an expired entry is removed).
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
    {
        match self.inner.get(key) {
            Some(slot) if slot.is_expired(self.clock.now()) => {
                self.remove_if_expired(key, self.clock.now());
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Remove the entry under `key`, returning its value; counted as an explicit eviction.
    pub fn invalidate<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.inner.remove(key)?;
        self.counters.explicit.fetch_add(1, Relaxed);
        Some(slot.value)
    }

    /// Remove every entry; returns the real count (as explicit evictions) and the bytes released.
    pub fn clear(&self) -> CleanupCounts {
        let mut out = CleanupCounts::default();
        for (key, _) in self.inner.iter() {
            if let Some(slot) = self.inner.remove(&*key) {
                out.explicit += 1;
                out.bytes_freed += slot.bytes;
            }
        }
        self.counters.explicit.fetch_add(out.explicit, Relaxed);
        out += self.run_pending_tasks();
        out
    }

    /// Remove every expired entry, then apply moka's pending work (which may evict for the bounds). Returns what
    /// was removed.
    pub fn cleanup(&self) -> CleanupCounts {
        let now = self.clock.now();
        let mut out = CleanupCounts::default();
        for (key, slot) in self.inner.iter() {
            if slot.is_expired(now)
                && let Some(bytes) = self.remove_if_expired(&*key, now)
            {
                out.expired += 1;
                out.bytes_freed += bytes;
            }
        }
        out += self.run_pending_tasks();
        out
    }

    /// Apply moka's pending maintenance (size evictions); returns the size evictions it performed.
    pub fn run_pending_tasks(&self) -> CleanupCounts {
        let (n0, b0) = (self.counters.size_evicted.load(Relaxed), self.counters.size_evicted_bytes.load(Relaxed));
        self.inner.run_pending_tasks();
        let (n1, b1) = (self.counters.size_evicted.load(Relaxed), self.counters.size_evicted_bytes.load(Relaxed));
        CleanupCounts { size_evicted: n1.saturating_sub(n0), bytes_freed: b1.saturating_sub(b0), ..Default::default() }
    }

    /// Entries held (expired ones count until removed).
    pub fn len(&self) -> u64 {
        self.counters.entries.load(Relaxed)
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Summed weight of the entries held, in bytes.
    pub fn weighted_size_bytes(&self) -> u64 {
        self.counters.bytes.load(Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let hits = c.hits.load(Relaxed);
        let misses = c.misses.load(Relaxed);
        let lookups = hits + misses;
        CacheStats {
            size: c.entries.load(Relaxed),
            weighted_size_bytes: c.bytes.load(Relaxed),
            max_bytes: self.config.max_bytes,
            max_entries: self.config.max_entries,
            hits,
            misses,
            hit_rate: if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 },
            evictions: EvictionCounts {
                expired: c.expired.load(Relaxed),
                size: c.size_evicted.load(Relaxed),
                explicit: c.explicit.load(Relaxed),
            },
            ttl_seconds: self.config.ttl.as_secs_f64(),
        }
    }

    /// Remove `key` if its entry is expired at `now`; returns the bytes released.
    ///
    /// Uses moka's plain removal (the cheap path) and puts the entry back, unless something newer took its place,
    /// in the rare case that a concurrent insert made it fresh in the meantime.
    fn remove_if_expired<Q>(&self, key: &Q, now: Instant) -> Option<u64>
    where
        K: Borrow<Q>,
        Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
    {
        let slot = self.inner.remove(key)?;
        if slot.is_expired(now) {
            self.counters.expired.fetch_add(1, Relaxed);
            return Some(slot.bytes);
        }
        let bytes = slot.bytes;
        self.counters.entries.fetch_add(1, Relaxed);
        self.counters.bytes.fetch_add(bytes, Relaxed);
        let restored = self.inner.entry_by_ref(key).and_compute_with(|entry| match entry {
            None => Op::Put(slot),
            Some(_) => Op::Nop,
        });
        if !matches!(restored, CompResult::Inserted(_)) {
            self.counters.entries.fetch_sub(1, Relaxed);
            self.counters.bytes.fetch_sub(bytes, Relaxed);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_bound_becomes_a_weight_floor() {
        let cfg = TtlCacheConfig::new(Duration::from_secs(1), 1000).with_max_entries(10);
        let cache: TtlCache<u32, Vec<u8>> = TtlCache::new(cfg, Clock::mock().0).unwrap();
        assert_eq!((cache.unit, cache.floor), (1, 100));
    }

    /// The race path: an entry found expired was refreshed by a concurrent insert before removal; it is put back
    /// with its accounting intact.
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

    #[test]
    fn huge_bounds_are_scaled_into_u32_weights() {
        let cfg = TtlCacheConfig::new(Duration::from_secs(1), 64 * 1024 * 1024 * 1024);
        let cache: TtlCache<u32, Vec<u8>> = TtlCache::new(cfg, Clock::mock().0).unwrap();
        assert!(cache.unit > 1);
        assert!(cache.config.max_bytes / cache.unit <= u64::from(u32::MAX));
    }
}
