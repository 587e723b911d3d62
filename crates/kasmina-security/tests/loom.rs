//! Loom model checks of [`NonceLedger`]: every interleaving (up to the preemption bound) of a few
//! threads sharing one ledger, with `src/sync.rs` swapping in loom's mutex (over all the ledger's
//! state) and atomic (its lock-free copy of the entry count).
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" cargo test -p kasmina-security --test loom --release
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS` overrides the default bound of 3. The ledger's clock is a quanta mock
//! that only the set-up and the final checks advance, so every thread of one model sees the same
//! instant.
//!
//! The separate target directory keeps the normal build's artefacts (`--cfg loom` rebuilds every
//! dependency). Under `cfg(loom)` run only this target: the other tests and the doc tests create
//! loom objects outside a model, which loom rejects.
#![cfg(loom)]
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use kasmina_security::{NonceLedger, Registration};
use loom::sync::Arc;
use loom::thread;

const TTL: Duration = Duration::from_secs(10);

/// The mock clock's handle (a `std` `Arc`, as quanta returns it).
type Mock = std::sync::Arc<quanta::Mock>;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    builder.check(f);
}

fn ledger(capacity: usize) -> (Arc<NonceLedger>, Mock) {
    let (clock, mock) = quanta::Clock::mock();
    (Arc::new(NonceLedger::new(TTL, capacity, clock)), mock)
}

/// Runs `f` on each of `n` threads (thread `i` gets `i`) and returns their results in order.
fn run<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = Arc::clone(&f);
            thread::spawn(move || f(i))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn count(outcomes: &[Registration], which: Registration) -> usize {
    outcomes.iter().filter(|o| **o == which).count()
}

/// Once the threads are joined: `len()` is the number of entries the ledger really holds. Every
/// entry left is live here (each registration sweeps the expired ones queued before it), so that
/// is the number of live `nonces`; once they expire, a purge evicts exactly `len()` entries and
/// leaves the ledger empty, and the whole capacity is free again.
fn assert_len_is_entries_held(ledger: &NonceLedger, mock: &Mock, nonces: &[&str]) {
    let live = nonces.iter().filter(|n| ledger.is_live(n)).count();
    assert_eq!(ledger.len(), live, "len() is not the number of entries held");
    assert!(live <= ledger.capacity());
    mock.increment(TTL);
    assert_eq!(ledger.purge_expired(), live, "the purge evicted a different number of entries than len()");
    assert!(ledger.is_empty(), "len() is {} with every entry purged", ledger.len());
    for i in 0..ledger.capacity() {
        assert_eq!(ledger.try_register(&format!("refill-{i}")), Registration::Registered);
    }
    assert_eq!(ledger.try_register("one-too-many"), Registration::Full { capacity: ledger.capacity() });
}

/// Three threads register the same nonce: exactly one `Registered`, the other two `Replayed`.
#[test]
fn same_nonce_from_three_threads_registers_once() {
    model(|| {
        let (ledger, mock) = ledger(4);
        let l = Arc::clone(&ledger);
        let outcomes = run(3, move |_| l.try_register("n"));

        assert_eq!(count(&outcomes, Registration::Registered), 1, "{outcomes:?}");
        assert_eq!(count(&outcomes, Registration::Replayed), 2, "{outcomes:?}");
        assert_len_is_entries_held(&ledger, &mock, &["n"]);
    });
}

/// A nonce whose entry has expired (still held, not yet evicted), registered again by two threads
/// while a third purges: exactly one `Registered`, the other `Replayed`, and the renewed entry
/// survives the purge of its old queue item.
#[test]
fn expired_nonce_re_registered_while_purging_registers_once() {
    model(|| {
        let (ledger, mock) = ledger(4);
        assert_eq!(ledger.try_register("n"), Registration::Registered);
        mock.increment(TTL);
        let l = Arc::clone(&ledger);
        let outcomes = run(3, move |i| {
            if i == 2 {
                let _ = l.purge_expired();
                return None;
            }
            Some(l.try_register("n"))
        });

        let outcomes: Vec<Registration> = outcomes.into_iter().flatten().collect();
        assert_eq!(count(&outcomes, Registration::Registered), 1, "{outcomes:?}");
        assert_eq!(count(&outcomes, Registration::Replayed), 1, "{outcomes:?}");
        assert!(ledger.is_live("n"));
        assert_len_is_entries_held(&ledger, &mock, &["n"]);
    });
}

/// The same nonce from two threads at capacity 1: exactly one `Registered`, the other `Replayed`
/// (never `Full`: the winner's slot is taken in the same step as its insert, so the loser cannot
/// find the slot taken and the nonce absent).
#[test]
fn same_nonce_at_capacity_registers_once_and_replays_once() {
    model(|| {
        let (ledger, mock) = ledger(1);
        let l = Arc::clone(&ledger);
        let outcomes = run(2, move |_| l.try_register("n"));

        assert_eq!(count(&outcomes, Registration::Registered), 1, "{outcomes:?}");
        assert_eq!(count(&outcomes, Registration::Replayed), 1, "{outcomes:?}");
        assert_len_is_entries_held(&ledger, &mock, &["n"]);
    });
}

/// Three distinct nonces into a ledger of capacity 2: exactly two `Registered`, one `Full`; the
/// ledger never holds more than its capacity and `len()` matches the entries held.
#[test]
fn distinct_nonces_at_capacity_never_exceed_it() {
    model(|| {
        let (ledger, mock) = ledger(2);
        let l = Arc::clone(&ledger);
        let nonces = ["a", "b", "c"];
        let outcomes = run(3, move |i| l.try_register(nonces[i]));

        assert_eq!(count(&outcomes, Registration::Registered), 2, "{outcomes:?}");
        assert_eq!(count(&outcomes, Registration::Full { capacity: 2 }), 1, "{outcomes:?}");
        for (nonce, outcome) in nonces.iter().zip(&outcomes) {
            assert_eq!(ledger.is_live(nonce), *outcome == Registration::Registered, "{nonce}: {outcomes:?}");
        }
        assert_len_is_entries_held(&ledger, &mock, &nonces);
    });
}

/// A full ledger whose entries have all expired: a new nonce and one of the expired nonces are
/// registered while a third thread purges. Both registrations succeed (expired entries never make
/// the ledger refuse), and `len()` ends equal to the entries held.
#[test]
fn registrations_racing_a_purge_after_the_ttl_keep_len_exact() {
    model(|| {
        let (ledger, mock) = ledger(2);
        assert_eq!(ledger.try_register("a"), Registration::Registered);
        assert_eq!(ledger.try_register("b"), Registration::Registered);
        mock.increment(TTL);
        let l = Arc::clone(&ledger);
        let outcomes = run(3, move |i| match i {
            0 => Some(l.try_register("c")),
            1 => Some(l.try_register("a")),
            _ => {
                let _ = l.purge_expired();
                None
            }
        });

        assert_eq!(outcomes[..2], [Some(Registration::Registered); 2], "{outcomes:?}");
        assert!(!ledger.is_live("b"));
        assert_len_is_entries_held(&ledger, &mock, &["a", "b", "c"]);
    });
}

/// A ledger of capacity 2 holding one live nonce: a replay of it races the registration of a new
/// nonce. The replay is `Replayed` and the new nonce `Registered`: a replay takes no slot, so it
/// never makes a ledger with room look full. (Regression: the ledger used to reserve a slot before
/// looking the nonce up and give it back on a replay; in that window the new nonce was refused as
/// `Full` with one of its two slots used.)
#[test]
fn a_replay_never_makes_the_ledger_look_full() {
    model(|| {
        let (ledger, mock) = ledger(2);
        assert_eq!(ledger.try_register("a"), Registration::Registered);
        let l = Arc::clone(&ledger);
        let nonces = ["a", "b"];
        let outcomes = run(2, move |i| l.try_register(nonces[i]));

        assert_eq!(outcomes, [Registration::Replayed, Registration::Registered]);
        assert_len_is_entries_held(&ledger, &mock, &nonces);
    });
}
