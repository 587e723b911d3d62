//! Pause quotas on a fake clock.

use std::time::Duration;

use kasmina_safety::pause::{DEFAULT_PASSES_PER_PAUSE, DEFAULT_SERVER_QUOTA, PAUSE_QUOTA_RESET};
use kasmina_safety::{Error, PausePasses, PauseQuota, PauseQuotaConfig, QuotaGrant, QuotaReset};
use quanta::Clock;

#[test]
fn defaults_follow_the_design() {
    let c = PauseQuotaConfig::default();
    assert_eq!((c.passes_per_pause, c.server_quota, c.reset_interval), (1000, 10_000, Duration::from_secs(60)));
    assert_eq!((DEFAULT_PASSES_PER_PAUSE, DEFAULT_SERVER_QUOTA), (1000, 10_000));
    assert_eq!(PAUSE_QUOTA_RESET, "pause_quota_reset");
}

#[test]
fn grants_are_full_then_partial_then_denied_until_the_window_resets() {
    let (clock, mock) = Clock::mock();
    let quota = PauseQuota::new(PauseQuotaConfig { server_quota: 2500, ..Default::default() }, clock.clone()).unwrap();
    let d = quota.request_default();
    assert_eq!((d.grant, d.reset), (QuotaGrant::Full { passes: 1000 }, None));
    assert_eq!(quota.request(1000).grant.as_str(), "full");
    let partial = quota.request_default().grant;
    assert_eq!(partial, QuotaGrant::Partial { passes: 500, requested: 1000 });
    assert_eq!((partial.passes(), partial.as_str()), (500, "partial"));
    mock.increment(Duration::from_secs(45));
    let denied = quota.request(1).grant;
    assert_eq!(denied, QuotaGrant::Denied { requested: 1, retry_after: Duration::from_secs(15) });
    assert_eq!((denied.passes(), denied.as_str()), (0, "denied"));
    assert_eq!(quota.remaining(), (0, None));

    mock.increment(Duration::from_secs(15));
    let d = quota.request_default();
    assert_eq!(d.grant, QuotaGrant::Full { passes: 1000 });
    assert_eq!(d.reset, Some(QuotaReset { at: clock.now(), used_in_previous_window: 2500 }));
    assert_eq!(quota.remaining(), (1500, None));
}

#[test]
fn windows_stay_aligned_when_several_intervals_pass() {
    let (clock, mock) = Clock::mock();
    let quota = PauseQuota::new(PauseQuotaConfig::default(), clock).unwrap();
    quota.request(10_000);
    mock.increment(Duration::from_secs(150)); // 2.5 windows
    let (left, reset) = quota.remaining();
    assert_eq!((left, reset.unwrap().used_in_previous_window), (10_000, 10_000));
    quota.request(10_000);
    // The current window started at 120 s, so it ends at 180 s.
    mock.increment(Duration::from_secs(29));
    assert_eq!(quota.request(1).grant, QuotaGrant::Denied { requested: 1, retry_after: Duration::from_secs(1) });
    mock.increment(Duration::from_secs(1));
    assert_eq!(quota.request(1).grant, QuotaGrant::Full { passes: 1 });
}

#[test]
fn a_zero_interval_is_refused() {
    let config = PauseQuotaConfig { reset_interval: Duration::ZERO, ..Default::default() };
    assert!(matches!(
        PauseQuota::new(config, Clock::mock().0),
        Err(Error::InvalidConfig { field: "reset_interval", .. })
    ));
}

#[test]
fn a_pause_counts_its_identity_passes_down() {
    let (clock, mock) = Clock::mock();
    let mut passes = PausePasses::new(2, clock.now());
    assert_eq!(passes.try_pass(), Ok(1));
    assert_eq!(passes.try_pass(), Ok(0));
    let err = passes.try_pass().unwrap_err();
    assert_eq!(err, Error::PauseQuotaExhausted { granted: 2 });
    assert_eq!(err.to_string(), "pause quota of 2 identity passes exhausted");
    assert_eq!((passes.granted(), passes.used(), passes.remaining()), (2, 2, 0));
    mock.increment(Duration::from_millis(1500));
    assert_eq!(passes.duration(clock.now()), Duration::from_millis(1500));
    assert_eq!(passes.started_at() + Duration::from_millis(1500), clock.now());
}
