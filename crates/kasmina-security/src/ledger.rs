//! The nonce ledger: command ids accepted within the last TTL, on the injected monotonic clock.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use hashbrown::{HashTable, hash_table};
use quanta::{Clock, Instant};

use crate::nonce::{NonceHasher, NonceKey};
use crate::sync::{AtomicUsize, Mutex, Ordering};

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
/// A hash table of `(nonce, expiry, registration number)`, plus a FIFO of
/// `(expiry, hash, registration number)` in registration order, both behind one mutex (decision
/// D25). The TTL is fixed, so the FIFO is ordered by expiry: each registration evicts up to 32
/// expired entries from its front (all of them when the ledger is full), and
/// [`purge_expired`](Self::purge_expired) evicts all of them. A registration is one critical
/// section (look up, insert, queue, evict), so of two threads registering the same nonce at once
/// exactly one gets [`Registration::Registered`] and the other [`Registration::Replayed`]. Memory
/// is bounded by `capacity` entries: a full ledger refuses new nonces rather than forget live
/// ones, and a replay or a renewal takes no slot. A nonce of up to 46 bytes (a UUID is 36) is
/// stored inline, so registering it allocates nothing, and it is hashed once (foldhash, under a
/// random seed of the ledger's own). The FIFO holds 24 bytes per item, not the nonce: an item
/// finds its entry by the hash and the registration number, so evicting compares no nonce bytes
/// and hashes nothing.
pub struct NonceLedger {
    state: Mutex<State>,
    /// `state.entries.len()`, written under the lock, so that [`len`](Self::len) takes none.
    held: AtomicUsize,
    ttl: Duration,
    capacity: usize,
    clock: Clock,
}

/// One nonce of the ledger's table.
struct Slot {
    key: NonceKey,
    expiry: Instant,
    /// The registration that stored `expiry` (unique within the ledger): the one queue item that
    /// may evict this entry carries it.
    seq: u64,
}

/// One item of the expiry queue: when the registration numbered `seq` expires, and the hash of
/// its nonce (to find its entry).
#[derive(Clone, Copy)]
struct Queued {
    expiry: Instant,
    hash: u64,
    seq: u64,
}

/// What the ledger's mutex guards.
struct State {
    /// Hashes each nonce once, when its key is made.
    hasher: NonceHasher,
    /// At most `capacity` entries, expired ones included until evicted.
    entries: HashTable<Slot>,
    /// In registration order. An entry renewed since keeps its old item here until that item
    /// reaches the front; the item's `seq` then no longer matches the entry's and it is dropped.
    queue: VecDeque<Queued>,
    /// The next registration number.
    next_seq: u64,
}

/// Outcome of [`State::insert_unless_live`].
enum Insert {
    /// The expiry is stored (a new entry, or an expired one renewed) and queued.
    Stored,
    /// The nonce is live: nothing changed.
    Live,
    /// The nonce is absent and the table holds `capacity` entries: nothing changed.
    NoRoom,
}

impl State {
    fn new() -> Self {
        Self { hasher: NonceHasher::default(), entries: HashTable::new(), queue: VecDeque::new(), next_seq: 0 }
    }

    /// Stores `expiry` for `nonce` and queues it, unless the nonce is live at `now` or it is new
    /// and the table is full. An expired entry is renewed in place (it takes no new slot).
    fn insert_unless_live(&mut self, nonce: &str, now: Instant, expiry: Instant, capacity: usize) -> Insert {
        let key = self.hasher.key(nonce);
        self.insert_key(key, now, expiry, capacity)
    }

    /// [`insert_unless_live`](Self::insert_unless_live) for a key already made.
    fn insert_key(&mut self, key: NonceKey, now: Instant, expiry: Instant, capacity: usize) -> Insert {
        let full = self.entries.len() >= capacity;
        let (hash, seq) = (key.hash(), self.next_seq);
        // One probe for the lookup and the insert.
        match self.entries.entry(hash, |slot| slot.key == key, |slot| slot.key.hash()) {
            hash_table::Entry::Occupied(stored) if stored.get().expiry > now => return Insert::Live,
            hash_table::Entry::Occupied(mut stored) => {
                let slot = stored.get_mut();
                (slot.expiry, slot.seq) = (expiry, seq);
            }
            hash_table::Entry::Vacant(_) if full => return Insert::NoRoom,
            hash_table::Entry::Vacant(vacant) => {
                vacant.insert(Slot { key, expiry, seq });
            }
        }
        self.next_seq += 1;
        self.queue.push_back(Queued { expiry, hash, seq });
        Insert::Stored
    }

    /// The entry the queue item `item` stands for, unless it was renewed since.
    fn slot_of(&self, item: &Queued) -> Option<&Slot> {
        self.entries.find(item.hash, |slot| slot.seq == item.seq)
    }

    /// Pops up to `max` expired items from the front of the queue and removes their entries. An
    /// entry re-registered since (another registration number in the table) is left alone: its
    /// newer queue item evicts it later. Returns how many entries were removed.
    fn sweep(&mut self, now: Instant, max: usize) -> usize {
        let mut removed = 0;
        for _ in 0..max {
            let Some(item) = self.queue.front().copied().filter(|item| item.expiry <= now) else { break };
            self.queue.pop_front();
            // Found by hash and number: nothing is hashed or compared byte by byte.
            if let Ok(stored) = self.entries.find_entry(item.hash, |slot| slot.seq == item.seq) {
                stored.remove();
                removed += 1;
            }
        }
        removed
    }
}

impl NonceLedger {
    /// A ledger whose nonces live `ttl` on `clock`, holding at most `capacity` (at least 1) entries.
    pub fn new(ttl: Duration, capacity: usize, clock: Clock) -> Self {
        Self { state: Mutex::new(State::new()), held: AtomicUsize::new(0), ttl, capacity: capacity.max(1), clock }
    }

    /// Records `nonce` unless it is live (a replay) or the ledger is full of live nonces.
    pub fn try_register(&self, nonce: &str) -> Registration {
        let now = self.clock.now();
        // Overflow would need 584 years of uptime; an entry expiring at once is the fallback.
        let expiry = now.checked_add(self.ttl).unwrap_or(now);
        let mut state = self.state.lock();
        let mut inserted = state.insert_unless_live(nonce, now, expiry, self.capacity);
        if matches!(inserted, Insert::NoRoom) {
            // No slot free: evict every expired entry and try once more.
            state.sweep(now, usize::MAX);
            inserted = state.insert_unless_live(nonce, now, expiry, self.capacity);
        }
        let outcome = match inserted {
            Insert::Stored => {
                // The new entry is live, so it is never among the evicted.
                state.sweep(now, SWEEP_PER_CALL);
                Registration::Registered
            }
            Insert::Live => Registration::Replayed,
            Insert::NoRoom => Registration::Full { capacity: self.capacity },
        };
        self.held.store(state.entries.len(), Ordering::Release);
        outcome
    }

    /// Whether `nonce` is recorded and not yet expired.
    pub fn is_live(&self, nonce: &str) -> bool {
        let now = self.clock.now();
        let state = self.state.lock();
        let key = state.hasher.key(nonce);
        state.entries.find(key.hash(), |slot| slot.key == key).is_some_and(|slot| slot.expiry > now)
    }

    /// Evicts every expired entry; returns how many were removed. Costs O(expired entries).
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let removed = state.sweep(now, usize::MAX);
        self.held.store(state.entries.len(), Ordering::Release);
        removed
    }

    /// Entries held, including expired ones not yet evicted (never more than the capacity).
    pub fn len(&self) -> usize {
        self.held.load(Ordering::Acquire)
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

    /// Every live nonce and the time it has left, soonest to expire first (for a checkpoint:
    /// a restart must not reopen a replay window). Costs O(entries), under the ledger's lock;
    /// registrations wait for it.
    pub fn snapshot(&self) -> Vec<LiveNonce> {
        let state = self.state.lock();
        let now = self.clock.now();
        state
            .queue
            .iter()
            .filter(|item| item.expiry > now)
            .filter_map(|item| state.slot_of(item))
            .map(|slot| LiveNonce { nonce: slot.key.to_text(), remaining: slot.expiry.duration_since(now) })
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
        let mut state = self.state.lock();
        for n in incoming {
            let expiry = now.checked_add(n.remaining.min(self.ttl)).unwrap_or(now);
            match state.insert_unless_live(&n.nonce, now, expiry, self.capacity) {
                Insert::Stored => out.restored += 1,
                Insert::Live => out.already_live += 1,
                Insert::NoRoom => out.dropped_full += 1,
            }
        }
        self.held.store(state.entries.len(), Ordering::Release);
        out
    }

    #[cfg(test)]
    fn queue_len(&self) -> usize {
        self.state.lock().queue.len()
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

    fn ledger(ttl_s: u64, capacity: usize) -> (NonceLedger, std::sync::Arc<quanta::Mock>) {
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
    fn nonces_longer_than_the_inline_key_behave_the_same() {
        let (l, mock) = ledger(10, 4);
        let long = "n".repeat(200);
        let uuid = "00000000-0000-4000-8000-000000000001";
        for nonce in [long.as_str(), uuid] {
            assert_eq!(l.try_register(nonce), Registration::Registered);
            assert_eq!(l.try_register(nonce), Registration::Replayed);
            assert!(l.is_live(nonce));
        }
        assert!(!l.is_live(&long[..199]), "a prefix is another nonce");
        let snap = l.snapshot();
        assert_eq!(snap.iter().map(|n| n.nonce.as_str()).collect::<Vec<_>>(), [long.as_str(), uuid]);
        let (restored, _) = ledger(10, 4);
        assert_eq!(restored.restore(snap).restored, 2);
        assert_eq!(restored.try_register(&long), Registration::Replayed);
        mock.increment(Duration::from_secs(10));
        assert_eq!(l.purge_expired(), 2);
        assert!(l.is_empty());
        assert_eq!(l.try_register(&long), Registration::Registered);
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
    fn nonces_with_one_hash_stay_apart_and_each_is_evicted_by_its_own_item() {
        // Forced collisions: the table must fall back on comparing the bytes, and eviction on
        // the registration number.
        let (clock, mock) = Clock::mock();
        let mut state = State::new();
        let long = "z".repeat(100);
        let key = |state: &State, nonce: &str| state.hasher.key(nonce).with_hash(7);
        let now = clock.now();
        let later = now + Duration::from_secs(10);
        for nonce in ["a", "b", long.as_str()] {
            assert!(matches!(state.insert_key(key(&state, nonce), now, later, 10), Insert::Stored));
        }
        assert!(matches!(state.insert_key(key(&state, "b"), now, later, 10), Insert::Live));
        assert_eq!(state.entries.len(), 3);
        // "a" expires and is renewed later; its first queue item must not evict the renewal.
        mock.increment(Duration::from_secs(10));
        let now = clock.now();
        assert!(matches!(state.insert_key(key(&state, "a"), now, now + Duration::from_secs(10), 10), Insert::Stored));
        assert_eq!(state.sweep(now, usize::MAX), 2, "b and the long nonce");
        let live: Vec<String> = state.entries.iter().map(|slot| slot.key.to_text()).collect();
        assert_eq!(live, ["a"]);
        mock.increment(Duration::from_secs(10));
        assert_eq!(state.sweep(clock.now(), usize::MAX), 1);
        assert!(state.entries.is_empty() && state.queue.is_empty());
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
