//! The synchronisation primitives of the nonce ledger, switched at compile time.
//!
//! A normal build re-exports `std`'s atomics and `parking_lot`'s mutex and backs [`ExpiryMap`] with
//! a `DashMap` (each method one `DashMap` call), so it uses those types directly, with no wrapper
//! and no run-time switch. The loom build (`RUSTFLAGS="--cfg loom"`, see `tests/loom.rs`) swaps in
//! loom's instrumented atomics, a thin wrapper over loom's mutex whose `lock` has `parking_lot`'s
//! signature, and a model of the `DashMap` over loom mutexes, so the ledger's own code is the same
//! in both builds.

use std::sync::Arc;

use quanta::Instant;

#[cfg(not(loom))]
pub(crate) use parking_lot::Mutex;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom_mutex::Mutex;

#[cfg(loom)]
mod loom_mutex {
    /// loom's mutex behind `parking_lot`'s interface: `lock` returns the guard itself.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        /// Like `parking_lot`, a panic while the lock is held does not poison it.
        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

/// Outcome of [`ExpiryMap::insert_unless_live`].
#[derive(Debug)]
pub(crate) enum Insert {
    /// The expiry is stored (a new entry, or an expired one renewed); the map's key.
    Stored(Arc<str>),
    /// The nonce is live: nothing changed.
    Live,
    /// The nonce is absent and no slot was free: nothing changed.
    NoRoom,
}

/// Nonce → expiry instant, with exactly the three operations the ledger needs, each atomic for
/// its key.
///
/// Normally a `DashMap`: every operation takes the key's shard lock (a write lock for
/// [`insert_unless_live`](Self::insert_unless_live) and [`remove_if_expired`](Self::remove_if_expired),
/// a read lock for [`expiry`](Self::expiry)).
///
/// Under loom, which cannot see inside `DashMap`'s locks, each key gets its own loom mutex (its
/// "shard"), and every operation runs under it, as the `DashMap` runs it under the key's shard
/// lock. The modelling choices:
/// - Every key in its own shard is the most concurrent layout a `DashMap` can have. Any layout
///   with shared shards only excludes more: its executions are a subset of these (deadlocks
///   aside, and the ledger never holds a shard lock while taking another lock; the only thing it
///   does under one is the `reserve_slot` atomic). One mutex for the whole map would instead
///   serialise the `live` counter's updates made under different keys' locks and hide races.
/// - A mutex, where the `DashMap` has a read-write lock: two readers of one key exclude each
///   other, which only drops interleavings of reads, and reads commute.
/// - The directory from key to lock is a `std` mutex that loom does not see. It is bookkeeping of
///   the model: held for no loom operation (loom runs one thread at a time and switches only at
///   its own operations), it adds neither interleavings nor ordering.
pub(crate) struct ExpiryMap {
    #[cfg(not(loom))]
    map: dashmap::DashMap<Arc<str>, Instant>,
    #[cfg(loom)]
    shards: std::sync::Mutex<std::collections::HashMap<Arc<str>, Shard>>,
}

/// The loom model's lock of one key, over its expiry (`None`: absent).
#[cfg(loom)]
type Shard = Arc<Mutex<Option<Instant>>>;

#[cfg(not(loom))]
impl ExpiryMap {
    pub(crate) fn new() -> Self {
        Self { map: dashmap::DashMap::new() }
    }

    /// Atomically (under the key's shard write lock) stores `expiry` for `nonce` unless it is live
    /// at `now`: an expired entry is renewed in place; a new entry is inserted only if
    /// `reserve_slot`, called under the same lock, grants it a slot.
    pub(crate) fn insert_unless_live(
        &self,
        nonce: &str,
        now: Instant,
        expiry: Instant,
        reserve_slot: impl FnOnce() -> bool,
    ) -> Insert {
        use dashmap::mapref::entry::Entry;
        match self.map.entry(Arc::from(nonce)) {
            Entry::Occupied(occupied) if *occupied.get() > now => Insert::Live,
            Entry::Occupied(mut occupied) => {
                occupied.insert(expiry);
                Insert::Stored(occupied.key().clone())
            }
            Entry::Vacant(_) if !reserve_slot() => Insert::NoRoom,
            Entry::Vacant(vacant) => {
                let key = vacant.key().clone();
                vacant.insert(expiry);
                Insert::Stored(key)
            }
        }
    }

    /// The expiry stored for `nonce`, if any (under the key's shard read lock).
    pub(crate) fn expiry(&self, nonce: &str) -> Option<Instant> {
        self.map.get(nonce).map(|expiry| *expiry)
    }

    /// Atomically (under the key's shard write lock) removes `key` if its expiry is at or before
    /// `now`; whether it did.
    pub(crate) fn remove_if_expired(&self, key: &str, now: Instant) -> bool {
        self.map.remove_if(key, |_, expiry| *expiry <= now).is_some()
    }
}

/// The loom model: the same operations, each under the key's own loom mutex.
#[cfg(loom)]
impl ExpiryMap {
    pub(crate) fn new() -> Self {
        Self { shards: std::sync::Mutex::default() }
    }

    /// The lock of `nonce`, if it was ever used.
    fn shard(&self, nonce: &str) -> Option<Shard> {
        self.shards.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(nonce).cloned()
    }

    /// The key as stored and its lock, created on first use.
    fn shard_or_new(&self, nonce: &str) -> (Arc<str>, Shard) {
        let mut shards = self.shards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((key, shard)) = shards.get_key_value(nonce) {
            return (Arc::clone(key), Arc::clone(shard));
        }
        let key: Arc<str> = Arc::from(nonce);
        let shard = Arc::new(Mutex::new(None));
        shards.insert(Arc::clone(&key), Arc::clone(&shard));
        (key, shard)
    }

    pub(crate) fn insert_unless_live(
        &self,
        nonce: &str,
        now: Instant,
        expiry: Instant,
        reserve_slot: impl FnOnce() -> bool,
    ) -> Insert {
        let (key, shard) = self.shard_or_new(nonce);
        let mut entry = shard.lock();
        match *entry {
            Some(stored) if stored > now => Insert::Live,
            Some(_) => {
                *entry = Some(expiry);
                Insert::Stored(key)
            }
            None if !reserve_slot() => Insert::NoRoom,
            None => {
                *entry = Some(expiry);
                Insert::Stored(key)
            }
        }
    }

    pub(crate) fn expiry(&self, nonce: &str) -> Option<Instant> {
        let shard = self.shard(nonce)?;
        *shard.lock()
    }

    pub(crate) fn remove_if_expired(&self, key: &str, now: Instant) -> bool {
        let Some(shard) = self.shard(key) else { return false };
        let mut entry = shard.lock();
        match *entry {
            Some(expiry) if expiry <= now => {
                *entry = None;
                true
            }
            _ => false,
        }
    }
}
