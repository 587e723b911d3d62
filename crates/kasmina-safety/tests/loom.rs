//! Loom model checks of [`CircuitBreaker`]: every interleaving (up to the preemption bound) of a
//! few threads sharing one breaker, with `src/sync.rs` swapping in loom's atomics and mutex.
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" cargo test -p kasmina-safety --test loom --release
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS` overrides the default bound of 3. The breaker's clock is a quanta mock
//! that only the set-up advances, so every thread of one model sees the same instant.
//!
//! The separate target directory keeps the normal build's artefacts (`--cfg loom` rebuilds every
//! dependency). Under `cfg(loom)` run only this target: the other tests and the doc tests create
//! loom objects outside a model, which loom rejects.
#![cfg(loom)]
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use kasmina_safety::breaker::{REASON_BREAKER_OPEN, REASON_PROBE_IN_FLIGHT};
use kasmina_safety::{BreakerConfig, BreakerEvent, BreakerEventKind, CircuitBreaker, Denied, Permit, PermitKind};
use leyline::CircuitBreakerState as State;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

/// Two failures open it, two successful probes close it; the probe timeout never runs out here.
const CONFIG: BreakerConfig = BreakerConfig {
    failure_threshold: 2,
    open_timeout: Duration::from_secs(10),
    success_threshold: 2,
    probe_timeout: Duration::from_secs(60),
};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    builder.check(f);
}

/// The mock clock's handle (a `std` `Arc`, as quanta returns it).
type Mock = std::sync::Arc<quanta::Mock>;

fn breaker() -> (Arc<CircuitBreaker>, Mock) {
    breaker_with(CONFIG)
}

fn breaker_with(config: BreakerConfig) -> (Arc<CircuitBreaker>, Mock) {
    let (clock, mock) = quanta::Clock::mock();
    (Arc::new(CircuitBreaker::new("loom", config, clock).unwrap()), mock)
}

/// A breaker whose open period has just elapsed: the next `allow` takes the probe.
fn open_and_elapsed() -> (Arc<CircuitBreaker>, Mock) {
    let (breaker, mock) = breaker();
    for _ in 0..CONFIG.failure_threshold {
        let _ = breaker.record_failure("setup");
    }
    assert_eq!(breaker.state(), State::CircuitStateOpen);
    mock.increment(CONFIG.open_timeout);
    (breaker, mock)
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

fn count(events: &[Option<BreakerEvent>], kind: BreakerEventKind) -> usize {
    events.iter().flatten().filter(|e| e.kind == kind).count()
}

/// The snapshot's counters agree with its state, and the lock-free state mirror with the locked
/// state. Call it once the threads are joined.
fn assert_consistent(breaker: &CircuitBreaker) {
    let s = breaker.snapshot();
    assert_eq!(breaker.state(), s.state, "state mirror out of step: {s:?}");
    match s.state {
        State::CircuitStateClosed => {
            assert!(s.failures < s.config.failure_threshold, "{s:?}");
            assert_eq!((s.successes, s.open_until, s.probe_in_flight), (0, None, false), "{s:?}");
        }
        State::CircuitStateOpen => {
            assert!(s.failures >= s.config.failure_threshold, "{s:?}");
            assert!(s.open_until.is_some(), "{s:?}");
            assert_eq!((s.successes, s.probe_in_flight), (0, false), "{s:?}");
        }
        State::CircuitStateHalfOpen => {
            assert!(s.successes < s.config.success_threshold, "{s:?}");
            assert_eq!((s.failures, s.open_until), (0, None), "{s:?}");
        }
        State::CircuitStateUnknown => panic!("unknown state: {s:?}"),
    }
    // The failure-count mirror: in CLOSED a success must reset the count (its lock-free fast path
    // skips the reset when the mirror reads 0).
    if s.state == State::CircuitStateClosed {
        assert_eq!(breaker.record_success(), None);
        assert_eq!(breaker.snapshot().failures, 0, "failure mirror out of step: {s:?}");
    }
}

fn denials<T>(outcomes: &[Result<T, Denied>]) -> u64 {
    outcomes.iter().filter(|o| o.is_err()).count() as u64
}

/// HALF_OPEN: of three callers racing out of an elapsed OPEN period, exactly one gets the probe
/// (with the HALF_OPEN event) and the other two are denied as `probe_in_flight`, each denial
/// counted.
#[test]
fn half_open_admits_exactly_one_probe() {
    model(|| {
        let (breaker, _mock) = open_and_elapsed();
        let b = Arc::clone(&breaker);
        let outcomes: Vec<Result<Permit, Denied>> = run(3, move |_| b.allow());

        let probes: Vec<&Permit> = outcomes.iter().flatten().collect();
        assert_eq!(probes.len(), 1, "{outcomes:?}");
        assert_eq!(probes[0].kind, PermitKind::Probe);
        assert_eq!(probes[0].event.as_ref().map(|e| e.kind), Some(BreakerEventKind::HalfOpened));
        for denied in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert_eq!((denied.state, denied.reason), (State::CircuitStateHalfOpen, REASON_PROBE_IN_FLIGHT));
        }
        let s = breaker.snapshot();
        assert_eq!(s.denied_total, 2);
        assert!(s.probe_in_flight);
        assert_consistent(&breaker);
    });
}

/// HALF_OPEN with `success_threshold` 2: each caller that gets the probe reports a success. Two
/// probes are never in flight at once (a probe counter checked on admission, released just before
/// the success is recorded), exactly one CLOSED event ends the streak, and every denial counts.
#[test]
fn probes_never_overlap_and_the_streak_closes_once() {
    model(|| {
        let (breaker, _mock) = open_and_elapsed();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let b = Arc::clone(&breaker);
        let outcomes: Vec<Result<(PermitKind, Option<BreakerEvent>), Denied>> = run(3, move |_| {
            let permit = b.allow()?;
            if !permit.is_probe() {
                return Ok((permit.kind, None));
            }
            assert_eq!(in_flight.fetch_add(1, Ordering::SeqCst), 0, "two probes in flight");
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok((permit.kind, b.record_success()))
        });

        let events: Vec<Option<BreakerEvent>> = outcomes.iter().flatten().map(|(_, e)| e.clone()).collect();
        let probes = outcomes.iter().flatten().filter(|(kind, _)| *kind == PermitKind::Probe).count();
        assert!((1..=2).contains(&probes), "{outcomes:?}");
        assert_eq!(count(&events, BreakerEventKind::Closed), usize::from(probes == 2), "{outcomes:?}");
        let s = breaker.snapshot();
        assert_eq!(s.state, if probes == 2 { State::CircuitStateClosed } else { State::CircuitStateHalfOpen });
        assert_eq!(s.denied_total, denials(&outcomes));
        assert_eq!(s.opened_total, 1);
        assert_consistent(&breaker);
    });
}

/// CLOSED with threshold 2: three callers each ask for a permit and, when admitted, record a
/// failure. The breaker opens exactly once (one OPEN event, `opened_total` 1); a failure after the
/// trip only extends the open period, and a caller arriving after it is denied and counted.
#[test]
fn concurrent_failures_open_the_breaker_exactly_once() {
    model(|| {
        let (breaker, _mock) = breaker();
        let b = Arc::clone(&breaker);
        let outcomes: Vec<Result<Option<BreakerEvent>, Denied>> = run(3, move |i| {
            let _permit = b.allow()?;
            Ok(b.record_failure(if i == 0 { "a" } else { "b" }))
        });

        let events: Vec<Option<BreakerEvent>> = outcomes.iter().flatten().cloned().collect();
        assert_eq!(count(&events, BreakerEventKind::Opened), 1, "{outcomes:?}");
        // The first failure returns nothing; every one after the trip extends the open period.
        assert_eq!(events.iter().filter(|e| e.is_none()).count(), 1, "{outcomes:?}");
        assert_eq!(count(&events, BreakerEventKind::Extended), events.len() - 2, "{outcomes:?}");
        for denied in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert_eq!((denied.state, denied.reason), (State::CircuitStateOpen, REASON_BREAKER_OPEN));
        }
        let s = breaker.snapshot();
        assert_eq!((s.state, s.opened_total), (State::CircuitStateOpen, 1));
        assert_eq!(s.denied_total, denials(&outcomes));
        assert_consistent(&breaker);
    });
}

/// CLOSED with threshold 3 and `initial` failures counted: a success races two failures. With
/// none counted the success may take its lock-free fast path; with one it takes the locked reset,
/// and mostly leaves the breaker CLOSED, where the failure-count mirror is checked. Whatever the
/// order, the counters match the state, the mirrors match the locked values, and `opened_total`
/// matches the OPEN events returned.
#[test]
fn failures_and_successes_racing_keep_the_counts_consistent() {
    for initial in 0..2 {
        model(move || {
            let (breaker, _mock) = breaker_with(BreakerConfig { failure_threshold: 3, ..CONFIG });
            for _ in 0..initial {
                assert_eq!(breaker.record_failure("setup"), None);
            }
            let b = Arc::clone(&breaker);
            let events = run(3, move |i| if i == 1 { b.record_success() } else { b.record_failure("racing") });

            let opened = count(&events, BreakerEventKind::Opened);
            assert!(opened <= 1, "{events:?}");
            let s = breaker.snapshot();
            assert_eq!(s.opened_total, opened as u64);
            assert_eq!(s.state == State::CircuitStateOpen, opened == 1, "{s:?}");
            assert_consistent(&breaker);
        });
    }
}

/// HALF_OPEN with the probe in flight: its success races a late failure and a new caller. The
/// counters stay consistent with the state, the failure re-opens (or extends) rather than being
/// lost, and `opened_total` and `denied_total` match what the callers saw.
#[test]
fn half_open_outcomes_racing_keep_the_counts_consistent() {
    model(|| {
        let (breaker, _mock) = open_and_elapsed();
        assert!(breaker.allow().unwrap().is_probe());
        let b = Arc::clone(&breaker);
        let outcomes = run(3, move |i| match i {
            0 => Ok(b.record_success()),
            1 => Ok(b.record_failure("late")),
            _ => b.allow().map(|_| None),
        });

        let events: Vec<Option<BreakerEvent>> = outcomes.iter().flatten().cloned().collect();
        let opened = count(&events, BreakerEventKind::Opened);
        assert_eq!(opened, 1, "a failure in HALF_OPEN must re-open: {outcomes:?}");
        assert_eq!(count(&events, BreakerEventKind::Closed), 0, "{outcomes:?}");
        let s = breaker.snapshot();
        assert_eq!(s.state, State::CircuitStateOpen);
        assert_eq!(s.opened_total, 2);
        assert_eq!(s.denied_total, denials(&outcomes));
        assert_consistent(&breaker);
    });
}

/// Denials of both kinds (`probe_in_flight`, then `breaker_open` once a failure re-opens it), from
/// two callers asking twice each while a third records a failure: `denied_total` equals the
/// denials the callers received.
#[test]
fn denied_total_counts_every_denial() {
    model(|| {
        let (breaker, _mock) = open_and_elapsed();
        let b = Arc::clone(&breaker);
        let outcomes = run(3, move |i| {
            if i == 2 {
                let _ = b.record_failure("late");
                return Vec::new();
            }
            // A probe stays in flight (it is neither released nor reported).
            vec![b.allow(), b.allow()]
        });

        let outcomes: Vec<Result<Permit, Denied>> = outcomes.into_iter().flatten().collect();
        let permits: Vec<&Permit> = outcomes.iter().flatten().collect();
        assert!(permits.len() <= 1 && permits.iter().all(|p| p.is_probe()), "{outcomes:?}");
        for denied in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            let expected = match denied.state {
                State::CircuitStateOpen => REASON_BREAKER_OPEN,
                _ => REASON_PROBE_IN_FLIGHT,
            };
            assert_eq!(denied.reason, expected, "{denied:?}");
        }
        let s = breaker.snapshot();
        assert_eq!(s.denied_total, denials(&outcomes), "{outcomes:?}");
        assert_eq!(s.state, State::CircuitStateOpen);
        assert_consistent(&breaker);
    });
}
