//! Breakers, the pause pool and a pause in progress survive a restart (decisions D13): saved as
//! counts and durations, taken back on another clock, they resume with the time they had left.

use std::time::Duration;

use kasmina_safety::{
    BreakerConfig, CircuitBreaker, PausePasses, PauseQuota, PauseQuotaConfig, QuotaGrant, SavedBreaker, SavedQuota,
};
use leyline::CircuitBreakerState as State;
use quanta::Clock;

fn config() -> BreakerConfig {
    BreakerConfig { failure_threshold: 2, open_timeout: Duration::from_secs(30), ..BreakerConfig::default() }
}

#[test]
fn an_open_breaker_restored_elsewhere_stays_open_for_the_time_it_had_left() {
    let (clock, mock) = Clock::mock();
    let before = CircuitBreaker::new("kernel_fetch", config(), clock).unwrap();
    let _ = before.record_failure("slow");
    let _ = before.record_failure("slow");
    assert!(before.allow().is_err());
    mock.increment(Duration::from_secs(10));
    let saved = before.saved();
    assert_eq!(saved.state, State::CircuitStateOpen);
    assert_eq!(saved.open_remaining, Some(Duration::from_secs(20)));
    assert_eq!((saved.failures, saved.opened_total, saved.denied_total), (2, 1, 1));

    let (clock2, mock2) = Clock::mock();
    mock2.increment(Duration::from_secs(1_000));
    let after = CircuitBreaker::new("kernel_fetch", config(), clock2).unwrap();
    after.restore(&saved).unwrap();
    assert_eq!(after.state(), State::CircuitStateOpen);
    assert_eq!(after.saved(), saved);
    mock2.increment(Duration::from_secs(19));
    assert!(after.allow().is_err(), "one second of the open period is left");
    mock2.increment(Duration::from_secs(1));
    assert!(after.allow().is_ok(), "the probe is admitted once the 20 s are over");
    assert_eq!(after.state(), State::CircuitStateHalfOpen);
}

#[test]
fn a_closed_breaker_keeps_its_failure_count_and_unknown_is_refused() {
    let (clock, _) = Clock::mock();
    let before = CircuitBreaker::new("isolation", config(), clock.clone()).unwrap();
    let _ = before.record_failure("violation");
    let after = CircuitBreaker::new("isolation", config(), clock).unwrap();
    after.restore(&before.saved()).unwrap();
    let _ = after.record_failure("violation");
    assert_eq!(after.state(), State::CircuitStateOpen, "the second failure of two trips it");
    let bad = SavedBreaker { state: State::CircuitStateUnknown, ..before.saved() };
    assert!(after.restore(&bad).is_err());
    assert_eq!(after.state(), State::CircuitStateOpen, "a refused restore changes nothing");
}

#[test]
fn the_pause_pool_resumes_its_window_and_a_pause_its_passes() {
    let cfg = PauseQuotaConfig { passes_per_pause: 5, server_quota: 8, reset_interval: Duration::from_secs(60) };
    let (clock, mock) = Clock::mock();
    let pool = PauseQuota::new(cfg, clock).unwrap();
    assert!(matches!(pool.request(6).grant, QuotaGrant::Full { passes: 6 }));
    mock.increment(Duration::from_secs(45));
    let saved = pool.saved();
    assert_eq!(saved, SavedQuota { used: 6, window_elapsed: Duration::from_secs(45) });

    let (clock2, mock2) = Clock::mock();
    mock2.increment(Duration::from_secs(1_000));
    let pool2 = PauseQuota::new(cfg, clock2).unwrap();
    pool2.restore(&saved);
    assert_eq!(pool2.remaining().0, 2);
    mock2.increment(Duration::from_secs(15));
    assert_eq!(pool2.remaining().0, 8, "the window the checkpoint was in ended 15 s later");

    let passes = PausePasses::resumed(5, 3, Duration::from_millis(700), quanta::Clock::mock().0.now());
    assert_eq!((passes.granted(), passes.used(), passes.remaining()), (5, 3, 2));
    let overspent = PausePasses::resumed(5, 9, Duration::ZERO, quanta::Clock::mock().0.now());
    assert_eq!(overspent.remaining(), 0);
}
