//! The nonce ledger: command ids accepted within the last TTL, on the injected monotonic clock.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use quanta::{Clock, Instant};

use crate::sync::{AtomicUsize, ExpiryMap, Insert, Mutex, Ordering};

/// How many expired entries one registration removes at most; the amortised cost of eviction
/// stays O(1) per call and no call scans the ledger.
const SWEEP_PER_CALL: usize = 32;

/// Outcome of [`NonceLedger::try_register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Registration {
    /// The nonce was not live; it is now recorded until the TTL runs out.
    Registered,
    /// The nonce is live: a replay.
    Replayed,
    /// The ledger holds `capacity` live nonces; the nonce was not recorded.
    Full {
        /// The ledger's capacity.
        capacity: usize,
    },
}

/// One live nonce of a [`NonceLedger::snapshot`]: the nonce and how long it had left to live.
/// Time left, not an instant: a ledger restored in another process (after a restart) keeps
/// the nonce for exactly the time that was left when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LiveNonce {
    /// The nonce (a command id).
    pub nonce: String,
    /// How long it stays live from the snapshot on (above zero, at most the TTL).
    pub remaining: Duration,
}

/// Outcome of [`NonceLedger::restore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Nonces recorded.
    pub restored: usize,
    /// Nonces already live in this ledger (they keep their own expiry).
    pub already_live: usize,
    /// Nonces left out because the ledger was full of live nonces.
    pub dropped_full: usize,
}

/// Nonces (command ids) seen within the last TTL, safe to share between threads.
///
/// A concurrent map from nonce to expiry instant, plus a FIFO of `(expiry, nonce)` in registration
/// order. The TTL is fixed, so the FIFO is ordered by expiry: each registration evicts up to 32
/// expired entries from its front (all of them when the ledger is full), and [`purge_expired`](Self::purge_expired) evicts all
/// of them. Registration is an atomic insert-if-absent under the map's shard lock, so of two
/// threads registering the same nonce at once exactly one gets [`Registration::Registered`] and
/// the other [`Registration::Replayed`]. Memory is bounded by `capacity` entries: a new entry takes
/// its slot in that same critical section (a replay or a renewal takes none), and a full ledger
/// refuses new nonces rather than forget live ones.
pub struct NonceLedger {
    /// A `DashMap` (a loom model of one under `cfg(loom)`, see `ExpiryMap` in `src/sync.rs`).
    entries: ExpiryMap,
    expiry_queue: Mutex<VecDeque<(Instant, Arc<str>)>>,
    live: AtomicUsize,
    ttl: Duration,
    capacity: usize,
    clock: Clock,
}

impl NonceLedger {
    /// A ledger whose nonces live `ttl` on `clock`, holding at most `capacity` (at least 1) entries.
    pub fn new(ttl: Duration, capacity: usize, clock: Clock) -> Self {
        Self {
            entries: ExpiryMap::new(),
            expiry_queue: Mutex::new(VecDeque::new()),
            live: AtomicUsize::new(0),
            ttl,
            capacity: capacity.max(1),
            clock,
        }
    }

    /// Records `nonce` unless it is live (a replay) or the ledger is full of live nonces.
    pub fn try_register(&self, nonce: &str) -> Registration {
        let now = self.clock.now();
        // Overflow would need 584 years of uptime; an entry expiring at once is the fallback.
        let expiry = now.checked_add(self.ttl).unwrap_or(now);
        // A new entry takes its slot under its shard lock, in the same step as the insert; a replay
        // or the renewal of an expired entry takes none, so neither can make the ledger look full.
        // With no slot free, evict every expired entry and try once more.
        let mut swept = false;
        let key = loop {
            match self.entries.insert_unless_live(nonce, now, expiry, || self.reserve_slot()) {
                Insert::Stored(key) => break key,
                Insert::Live => return Registration::Replayed,
                Insert::NoRoom if swept => return Registration::Full { capacity: self.capacity },
                Insert::NoRoom => {
                    self.sweep(now, usize::MAX);
                    swept = true;
                }
            }
        };
        // One lock for both: record the new expiry, then evict a bounded number of expired ones
        // (the new entry is live, so it is never among them).
        let mut queue = self.expiry_queue.lock();
        queue.push_back((expiry, key));
        self.sweep_locked(&mut queue, now, SWEEP_PER_CALL);
        Registration::Registered
    }

    /// Whether `nonce` is recorded and not yet expired.
    pub fn is_live(&self, nonce: &str) -> bool {
        let now = self.clock.now();
        self.entries.expiry(nonce).is_some_and(|expiry| expiry > now)
    }

    /// Evicts every expired entry; returns how many were removed. Costs O(expired entries).
    pub fn purge_expired(&self) -> usize {
        self.sweep(self.clock.now(), usize::MAX)
    }

    /// Entries held, including expired ones not yet evicted (never more than the capacity).
    pub fn len(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Whether the ledger holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long a nonce stays live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The most entries the ledger holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn reserve_slot(&self) -> bool {
        self.live.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.capacity).then_some(n + 1)).is_ok()
    }

    /// Pops up to `max` expired entries from the front of the expiry queue. An entry re-registered
    /// since (a newer expiry in the map) is left alone: its newer queue item evicts it later.
    fn sweep(&self, now: Instant, max: usize) -> usize {
        self.sweep_locked(&mut self.expiry_queue.lock(), now, max)
    }

    fn sweep_locked(&self, queue: &mut VecDeque<(Instant, Arc<str>)>, now: Instant, max: usize) -> usize {
        let mut removed = 0;
        for _ in 0..max {
            match queue.front() {
                Some((expiry, _)) if *expiry <= now => {}
                _ => break,
            }
            let Some((_, key)) = queue.pop_front() else { break };
            if self.entries.remove_if_expired(&key, now) {
                self.live.fetch_sub(1, Ordering::SeqCst);
                removed += 1;
            }
        }
        removed
    }

    /// Every live nonce and the time it has left, soonest to expire first (for a checkpoint:
    /// a restart must not reopen a replay window). Costs O(entries), under the expiry queue's
    /// lock; registrations wait for it.
    pub fn snapshot(&self) -> Vec<LiveNonce> {
        let queue = self.expiry_queue.lock();
        let now = self.clock.now();
        queue
            .iter()
            .filter(|(expiry, key)| *expiry > now && self.entries.expiry(key) == Some(*expiry))
            .map(|(expiry, key)| LiveNonce { nonce: key.to_string(), remaining: expiry.duration_since(now) })
            .collect()
    }

    /// Records the nonces of a [`snapshot`](Self::snapshot), each live for the time it had left
    /// (capped at the TTL; entries with nothing left are skipped). A nonce already live keeps
    /// its own expiry. Meant for a fresh ledger at start-up; into a busy one it
    /// is still correct, but eviction of the restored entries may lag (they can sit behind
    /// later expiries in the queue). A full ledger drops what does not fit, and says how many.
    pub fn restore(&self, nonces: impl IntoIterator<Item = LiveNonce>) -> Restored {
        let now = self.clock.now();
        let mut incoming: Vec<LiveNonce> = nonces.into_iter().filter(|n| !n.remaining.is_zero()).collect();
        incoming.sort_by_key(|n| n.remaining);
        let mut out = Restored::default();
        let mut queue = self.expiry_queue.lock();
        for n in incoming {
            let expiry = now.checked_add(n.remaining.min(self.ttl)).unwrap_or(now);
            match self.entries.insert_unless_live(&n.nonce, now, expiry, || self.reserve_slot()) {
                Insert::Stored(key) => {
                    queue.push_back((expiry, key));
                    out.restored += 1;
                }
                Insert::Live => out.already_live += 1,
                Insert::NoRoom => out.dropped_full += 1,
            }
        }
        out
    }

    #[cfg(test)]
    fn queue_len(&self) -> usize {
        self.expiry_queue.lock().len()
    }
}

impl fmt::Debug for NonceLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceLedger")
            .field("len", &self.len())
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(ttl_s: u64, capacity: usize) -> (NonceLedger, Arc<quanta::Mock>) {
        let (clock, mock) = Clock::mock();
        (NonceLedger::new(Duration::from_secs(ttl_s), capacity, clock), mock)
    }

    #[test]
    fn a_snapshot_restored_in_a_new_ledger_keeps_each_nonce_for_the_time_it_had_left() {
        let (before, mock) = ledger(300, 10);
        assert_eq!(before.try_register("old"), Registration::Registered);
        mock.increment(Duration::from_secs(200));
        assert_eq!(before.try_register("new"), Registration::Registered);
        assert_eq!(before.try_register("gone"), Registration::Registered);
        mock.increment(Duration::from_secs(50));
        let snap = before.snapshot();
        assert_eq!(
            snap.iter().map(|n| (n.nonce.as_str(), n.remaining.as_secs())).collect::<Vec<_>>(),
            [("old", 50), ("new", 250), ("gone", 250)]
        );
        // A restart: another ledger on another clock.
        let (after, mock2) = ledger(300, 10);
        let snap: Vec<LiveNonce> = snap.into_iter().filter(|n| n.nonce != "gone").collect();
        assert_eq!(after.restore(snap), Restored { restored: 2, already_live: 0, dropped_full: 0 });
        assert_eq!(after.try_register("old"), Registration::Replayed);
        assert_eq!(after.try_register("new"), Registration::Replayed);
        assert_eq!(after.try_register("gone"), Registration::Registered);
        mock2.increment(Duration::from_secs(50));
        assert_eq!(after.try_register("old"), Registration::Registered, "its 50 s are over");
        assert_eq!(after.try_register("new"), Registration::Replayed);
        mock2.increment(Duration::from_secs(200));
        assert_eq!(after.try_register("new"), Registration::Registered);
    }

    #[test]
    fn restore_skips_spent_entries_caps_at_the_ttl_and_reports_what_did_not_fit() {
        let (l, mock) = ledger(10, 2);
        assert_eq!(l.try_register("live"), Registration::Registered);
        let out = l.restore([
            LiveNonce { nonce: "live".into(), remaining: Duration::from_secs(5) },
            LiveNonce { nonce: "spent".into(), remaining: Duration::ZERO },
            LiveNonce { nonce: "long".into(), remaining: Duration::from_secs(3600) },
            LiveNonce { nonce: "extra".into(), remaining: Duration::from_secs(4) },
        ]);
        assert_eq!(out, Restored { restored: 1, already_live: 1, dropped_full: 1 });
        assert!(!l.is_live("spent"));
        assert!(l.is_live("extra") && !l.is_live("long"), "the shorter one fitted first");
        mock.increment(Duration::from_secs(4));
        assert!(!l.is_live("extra"));
        assert!(l.snapshot().iter().all(|n| n.remaining <= Duration::from_secs(10)));
    }

    #[test]
    fn a_renewed_nonce_appears_once_in_a_snapshot() {
        let (l, mock) = ledger(10, 4);
        assert_eq!(l.try_register("a"), Registration::Registered);
        mock.increment(Duration::from_secs(10));
        assert_eq!(l.try_register("a"), Registration::Registered);
        let snap = l.snapshot();
        assert_eq!(snap, [LiveNonce { nonce: "a".into(), remaining: Duration::from_secs(10) }]);
    }

    #[test]
    fn replay_within_ttl_and_reuse_after() {
        let (ledger, mock) = ledger(300, 10);
        assert_eq!(ledger.try_register("a"), Registration::Registered);
        assert_eq!(ledger.try_register("a"), Registration::Replayed);
        mock.increment(Duration::from_secs(299));
        assert_eq!(ledger.try_register("a"), Registration::Replayed);
        assert!(ledger.is_live("a"));
        mock.increment(Duration::from_secs(1));
        assert!(!ledger.is_live("a"));
        assert_eq!(ledger.try_register("a"), Registration::Registered);
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger.try_register("a"), Registration::Replayed);
    }

    #[test]
    fn full_ledger_refuses_until_entries_expire() {
        let (ledger, mock) = ledger(10, 3);
        for id in ["a", "b", "c"] {
            assert_eq!(ledger.try_register(id), Registration::Registered);
        }
        assert_eq!(ledger.try_register("d"), Registration::Full { capacity: 3 });
        assert_eq!(ledger.try_register("a"), Registration::Replayed);
        assert_eq!(ledger.len(), 3);
        mock.increment(Duration::from_secs(10));
        assert_eq!(ledger.try_register("d"), Registration::Registered);
        assert_eq!(ledger.len(), 1);
    }

    #[test]
    fn re_registered_entry_survives_its_old_queue_item() {
        let (ledger, mock) = ledger(10, 10);
        assert_eq!(ledger.try_register("a"), Registration::Registered);
        mock.increment(Duration::from_secs(10));
        // Expired "a" is swept by this call, then registered again.
        assert_eq!(ledger.try_register("a"), Registration::Registered);
        mock.increment(Duration::from_secs(5));
        assert_eq!(ledger.purge_expired(), 0);
        assert!(ledger.is_live("a"));
        mock.increment(Duration::from_secs(5));
        assert_eq!(ledger.purge_expired(), 1);
        assert!(ledger.is_empty());
        assert_eq!(ledger.queue_len(), 0);
    }

    #[test]
    fn eviction_per_call_is_bounded_and_drains_the_backlog() {
        let (ledger, mock) = ledger(1, 10_000);
        for i in 0..1000 {
            assert_eq!(ledger.try_register(&format!("n{i}")), Registration::Registered);
        }
        mock.increment(Duration::from_secs(1));
        assert_eq!(ledger.try_register("fresh"), Registration::Registered);
        assert_eq!(ledger.len(), 1000 - SWEEP_PER_CALL + 1);
        for i in 0..40 {
            assert_eq!(ledger.try_register(&format!("m{i}")), Registration::Registered);
        }
        assert_eq!(ledger.len(), 41);
        assert_eq!(ledger.queue_len(), 41);
    }
}
