//! Timers and deadlines on a fake clock.

use std::time::Duration;

use kasmina_safety::timer::{DEADLINE_VIOLATION, duration_ms};
use kasmina_safety::{DeadlineViolation, Error, MonotonicTimer};
use leyline::TelemetryLevel;
use quanta::Clock;

#[test]
fn measure_and_stopwatch_report_milliseconds() {
    let (clock, mock) = Clock::mock();
    let timer = MonotonicTimer::new(clock);
    let (value, took) = timer.measure(|| {
        mock.increment(Duration::from_micros(2_500));
        7
    });
    assert_eq!((value, took), (7, Duration::from_micros(2_500)));
    assert_eq!(duration_ms(took), 2.5);
    let watch = timer.start();
    mock.increment(Duration::from_millis(18));
    assert_eq!(watch.elapsed_ms(), 18.0);
    assert_eq!(watch.elapsed(), timer.now().duration_since(watch.started_at()));
}

#[test]
fn a_deadline_within_budget_passes_even_at_the_budget() {
    let (clock, mock) = Clock::mock();
    let d = MonotonicTimer::new(clock).deadline("kernel_fetch", Duration::from_millis(10));
    assert_eq!((d.operation(), d.budget()), ("kernel_fetch", Duration::from_millis(10)));
    mock.increment(Duration::from_millis(4));
    assert_eq!(d.check(), Ok(Duration::from_millis(4)));
    assert_eq!(d.remaining(), Duration::from_millis(6));
    mock.increment(Duration::from_millis(6));
    assert!(!d.is_expired());
    assert_eq!(d.finish(), Ok(Duration::from_millis(10)));
}

#[test]
fn an_overrun_reports_the_violation() {
    let (clock, mock) = Clock::mock();
    let d = MonotonicTimer::new(clock.clone()).deadline("execution_deadline", Duration::from_millis(20));
    assert_eq!(d.expires_at(), clock.now() + Duration::from_millis(20));
    mock.increment(Duration::from_millis(25));
    assert!(d.is_expired());
    assert_eq!(d.remaining(), Duration::ZERO);
    let v = d.check().unwrap_err();
    assert_eq!(
        v,
        DeadlineViolation {
            operation: "execution_deadline".into(),
            budget_ms: 20.0,
            elapsed_ms: 25.0,
            overrun_ms: 5.0
        }
    );
    assert_eq!(v.level(), TelemetryLevel::Warning);
    assert_eq!(v.to_string(), "execution_deadline took 25.000 ms, 5.000 ms over its 20.000 ms budget");
    assert_eq!(DEADLINE_VIOLATION, "deadline_violation");
    mock.increment(Duration::from_millis(20));
    let v = d.finish().unwrap_err();
    assert_eq!((v.overrun_ms, v.level()), (25.0, TelemetryLevel::Error));
    let e: Error = v.clone().into();
    assert_eq!(e.to_string(), v.to_string());
}
