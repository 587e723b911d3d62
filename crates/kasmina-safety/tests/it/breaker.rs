//! Every breaker path on a fake clock, and the single HALF_OPEN probe under contention.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use kasmina_safety::breaker::{
    REASON_BREAKER_OPEN, REASON_COOLDOWN_ELAPSED, REASON_PROBE_IN_FLIGHT, REASON_STABILISED,
};
use kasmina_safety::{BreakerConfig, BreakerEventKind, CircuitBreaker, Error, PermitKind};
use leyline::CircuitBreakerState as State;
use quanta::{Clock, Mock};
use rstest::rstest;

fn breaker(config: BreakerConfig) -> (CircuitBreaker, Arc<Mock>) {
    let (clock, mock) = Clock::mock();
    (CircuitBreaker::new("kernel_fetch", config, clock).unwrap(), mock)
}

fn trip(b: &CircuitBreaker) {
    for _ in 0..b.config().failure_threshold {
        b.record_failure("fetch_error");
    }
    assert_eq!(b.state(), State::CircuitStateOpen);
}

#[test]
fn presets_follow_d7() {
    let d = BreakerConfig::default();
    assert_eq!((d.failure_threshold, d.open_timeout, d.success_threshold), (3, Duration::from_secs(60), 2));
    let i = BreakerConfig::isolation();
    assert_eq!((i.failure_threshold, i.open_timeout, i.success_threshold), (3, Duration::from_secs(30), 2));
}

#[rstest]
#[case(BreakerConfig { failure_threshold: 0, ..BreakerConfig::DEFAULT }, "failure_threshold")]
#[case(BreakerConfig { success_threshold: 0, ..BreakerConfig::DEFAULT }, "success_threshold")]
#[case(BreakerConfig { probe_timeout: Duration::ZERO, ..BreakerConfig::DEFAULT }, "probe_timeout")]
fn invalid_configs_are_refused(#[case] config: BreakerConfig, #[case] field: &str) {
    let err = CircuitBreaker::new("x", config, Clock::mock().0).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { field: f, .. } if f == field), "{err:?}");
}

#[test]
fn closed_admits_and_counts_consecutive_failures() {
    let (b, _) = breaker(BreakerConfig::default());
    let permit = b.allow().unwrap();
    assert_eq!((permit.kind, permit.event), (PermitKind::Normal, None));
    assert_eq!(b.record_success(), None);
    assert_eq!(b.record_failure("fetch_error"), None);
    assert_eq!(b.record_failure("fetch_error"), None);
    assert_eq!(b.snapshot().failures, 2);
    // A success resets the streak.
    assert_eq!(b.record_success(), None);
    assert_eq!(b.snapshot().failures, 0);
    assert_eq!(b.record_failure("fetch_error"), None);
    assert_eq!(b.record_failure("fetch_error"), None);
    assert_eq!(b.state(), State::CircuitStateClosed);
}

#[test]
fn the_threshold_opens_it_and_open_denies_until_the_timeout() {
    let (b, mock) = breaker(BreakerConfig::default());
    b.record_failure("fetch_error");
    b.record_failure("fetch_error");
    let t0 = b.snapshot().open_until;
    assert_eq!(t0, None);
    let event = b.record_failure("latency_budget_exceeded").unwrap();
    assert_eq!(event.kind, BreakerEventKind::Opened);
    assert_eq!(event.kind.name(), "breaker_open");
    assert_eq!((event.from, event.state), (State::CircuitStateClosed, State::CircuitStateOpen));
    assert_eq!(event.reason, "latency_budget_exceeded");
    assert_eq!(&*event.breaker, "kernel_fetch");
    assert_eq!(event.open_until, Some(event.at + Duration::from_secs(60)));

    mock.increment(Duration::from_secs(59));
    let denied = b.allow().unwrap_err();
    assert_eq!((denied.state, denied.reason), (State::CircuitStateOpen, REASON_BREAKER_OPEN));
    assert_eq!(denied.retry_after, Duration::from_secs(1));
    assert_eq!(denied.to_string(), "breaker kernel_fetch denied the call (breaker_open), retry in 1000 ms");
    let ev = denied.event();
    assert_eq!(
        (ev.kind, ev.kind.name(), ev.state),
        (BreakerEventKind::Denied, "breaker_denied", State::CircuitStateOpen)
    );
    assert_eq!(ev.open_until, event.open_until);
    let snap = b.snapshot();
    assert_eq!((snap.opened_total, snap.denied_total, snap.failures), (1, 1, 3));
}

#[test]
fn after_the_timeout_one_probe_is_admitted_and_success_closes() {
    let (b, mock) = breaker(BreakerConfig::default());
    trip(&b);
    mock.increment(Duration::from_secs(60));
    let probe = b.allow().unwrap();
    assert_eq!(probe.kind, PermitKind::Probe);
    let ev = probe.event.unwrap();
    assert_eq!(
        (ev.kind, ev.from, ev.state),
        (BreakerEventKind::HalfOpened, State::CircuitStateOpen, State::CircuitStateHalfOpen)
    );
    assert_eq!((ev.kind.name(), &*ev.reason), ("breaker_half_open", REASON_COOLDOWN_ELAPSED));
    // A second caller is refused while the probe is in flight.
    let denied = b.allow().unwrap_err();
    assert_eq!((denied.state, denied.reason), (State::CircuitStateHalfOpen, REASON_PROBE_IN_FLIGHT));
    assert!(b.snapshot().probe_in_flight);

    assert_eq!(b.record_success(), None);
    assert_eq!(b.snapshot().successes, 1);
    assert!(!b.snapshot().probe_in_flight);
    let second = b.allow().unwrap();
    assert!(second.is_probe() && second.event.is_none());
    let closed = b.record_success().unwrap();
    assert_eq!(
        (closed.kind, closed.state, &*closed.reason),
        (BreakerEventKind::Closed, State::CircuitStateClosed, REASON_STABILISED)
    );
    assert_eq!(closed.kind.name(), "breaker_closed");
    let snap = b.snapshot();
    assert_eq!((snap.state, snap.failures, snap.successes, snap.open_until), (State::CircuitStateClosed, 0, 0, None));
    assert_eq!(b.allow().unwrap().kind, PermitKind::Normal);
}

#[test]
fn the_first_failure_in_half_open_reopens() {
    let (b, mock) = breaker(BreakerConfig::default());
    trip(&b);
    mock.increment(Duration::from_secs(61));
    let _probe = b.allow().unwrap();
    b.record_success();
    let _probe = b.allow().unwrap();
    let ev = b.record_failure("fetch_error").unwrap();
    assert_eq!(
        (ev.kind, ev.from, ev.state),
        (BreakerEventKind::Opened, State::CircuitStateHalfOpen, State::CircuitStateOpen)
    );
    assert_eq!(ev.open_until, Some(ev.at + Duration::from_secs(60)));
    assert_eq!(b.snapshot().successes, 0);
    assert_eq!(b.snapshot().opened_total, 2);
    assert!(b.allow().is_err());
}

#[test]
fn a_failure_while_open_extends_and_a_success_is_ignored() {
    let (b, mock) = breaker(BreakerConfig::default());
    trip(&b);
    let first_until = b.snapshot().open_until.unwrap();
    mock.increment(Duration::from_secs(50));
    let ev = b.record_failure("late_fetch_error").unwrap();
    assert_eq!(
        (ev.kind, ev.kind.name(), ev.state),
        (BreakerEventKind::Extended, "breaker_extended", State::CircuitStateOpen)
    );
    let until = b.snapshot().open_until.unwrap();
    assert_eq!(until, ev.at + Duration::from_secs(60));
    assert!(until > first_until);
    assert_eq!(b.record_success(), None);
    assert_eq!(b.state(), State::CircuitStateOpen);
    mock.increment(Duration::from_secs(20)); // past the first deadline, not the extended one
    assert!(b.allow().is_err());
    mock.increment(Duration::from_secs(40));
    assert!(b.allow().unwrap().is_probe());
}

#[test]
fn an_abandoned_probe_is_replaced_after_the_probe_timeout_or_on_release() {
    let config = BreakerConfig { probe_timeout: Duration::from_secs(5), ..BreakerConfig::DEFAULT };
    let (b, mock) = breaker(config);
    trip(&b);
    mock.increment(Duration::from_secs(60));
    let _abandoned = b.allow().unwrap();
    mock.increment(Duration::from_secs(4));
    assert_eq!(b.allow().unwrap_err().retry_after, Duration::from_secs(1));
    mock.increment(Duration::from_secs(1));
    assert!(b.allow().unwrap().is_probe());
    b.release_probe();
    assert!(b.allow().unwrap().is_probe());
    assert!(b.allow().is_err());
}

#[rstest]
#[case::closed(State::CircuitStateClosed)]
#[case::open(State::CircuitStateOpen)]
#[case::half_open(State::CircuitStateHalfOpen)]
fn force_state(#[case] target: State) {
    let (b, _) = breaker(BreakerConfig::default());
    b.record_failure("x");
    let ev = b.force_state(target, "operator").unwrap();
    assert_eq!(
        (ev.kind, ev.kind.name(), ev.state, &*ev.reason),
        (BreakerEventKind::Forced, "breaker_forced", target, "operator")
    );
    let snap = b.snapshot();
    assert_eq!(snap.state, target);
    assert_eq!(b.state(), target);
    match target {
        State::CircuitStateOpen => {
            assert_eq!(snap.failures, 3);
            assert_eq!(snap.open_until, Some(ev.at + Duration::from_secs(60)));
            assert!(b.allow().is_err());
        }
        State::CircuitStateHalfOpen => {
            assert_eq!((snap.failures, snap.open_until), (0, None));
            assert!(b.allow().unwrap().is_probe());
        }
        _ => {
            assert_eq!((snap.failures, snap.open_until), (0, None));
            assert_eq!(b.allow().unwrap().kind, PermitKind::Normal);
        }
    }
}

#[test]
fn unknown_cannot_be_forced() {
    let (b, _) = breaker(BreakerConfig::default());
    let err = b.force_state(State::CircuitStateUnknown, "operator").unwrap_err();
    assert_eq!(err, Error::UnsupportedState { state: State::CircuitStateUnknown });
    assert_eq!(err.to_string(), "a breaker cannot be forced to UNKNOWN");
    assert_eq!(b.state(), State::CircuitStateClosed);
}

#[test]
fn concurrent_allow_in_half_open_admits_exactly_one_probe() {
    const THREADS: usize = 8;
    let (clock, mock) = Clock::mock();
    let b = Arc::new(CircuitBreaker::new("isolation", BreakerConfig::isolation(), clock).unwrap());
    for round in 0..20 {
        trip(&b);
        mock.increment(Duration::from_secs(30));
        let barrier = Arc::new(Barrier::new(THREADS));
        let probes = Arc::new(AtomicUsize::new(0));
        let half_open_events = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (b, barrier, probes, events) =
                    (b.clone(), barrier.clone(), probes.clone(), half_open_events.clone());
                thread::spawn(move || {
                    barrier.wait();
                    if let Ok(permit) = b.allow() {
                        assert!(permit.is_probe());
                        probes.fetch_add(1, Ordering::SeqCst);
                        events.fetch_add(usize::from(permit.event.is_some()), Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(probes.load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(half_open_events.load(Ordering::SeqCst), 1, "round {round}");
        // Fail the probe: straight back to OPEN for the next round.
        assert_eq!(b.record_failure("isolation_violation").unwrap().kind, BreakerEventKind::Opened);
        b.force_state(State::CircuitStateClosed, "next_round").unwrap();
    }
}

#[test]
fn concurrent_failures_open_the_breaker_exactly_once() {
    const THREADS: usize = 8;
    let (b, _) = breaker(BreakerConfig::default());
    let b = Arc::new(b);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (b, barrier) = (b.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                b.allow().ok();
                b.record_failure("fetch_error")
            })
        })
        .collect();
    let events: Vec<_> = handles.into_iter().filter_map(|h| h.join().unwrap()).collect();
    let opened = events.iter().filter(|e| e.kind == BreakerEventKind::Opened).count();
    let extended = events.iter().filter(|e| e.kind == BreakerEventKind::Extended).count();
    assert_eq!((opened, extended), (1, THREADS - 3));
    assert_eq!(b.snapshot().opened_total, 1);
}
