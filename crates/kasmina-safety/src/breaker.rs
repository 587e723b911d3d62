//! A thread-safe circuit breaker over [`leyline::CircuitBreakerState`] (decisions D7).
//!
//! CLOSED admits every call; `failure_threshold` consecutive failures open it. OPEN denies until
//! `open_timeout` has elapsed; the next `allow` then moves it to HALF_OPEN and admits that caller
//! as the one probe. HALF_OPEN admits **one probe at a time**; the first failure re-opens it and
//! `success_threshold` successes close it. Every state change is returned as a [`BreakerEvent`].
//!
//! The closed path (`allow` + `record_success` with no failure pending) reads two atomics and
//! takes no lock; every other path takes a short mutex.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use leyline::CircuitBreakerState as State;
use quanta::{Clock, Instant};

use crate::sync::{AtomicU8, AtomicU32, AtomicU64, Mutex, Ordering};
use crate::{Error, Result};

/// Reason of the HALF_OPEN event when the open timeout has elapsed.
pub const REASON_COOLDOWN_ELAPSED: &str = "cooldown_elapsed";
/// Reason of the CLOSED event after the success streak in HALF_OPEN.
pub const REASON_STABILISED: &str = "stabilised";
/// Reason of a denial while OPEN.
pub const REASON_BREAKER_OPEN: &str = "breaker_open";
/// Reason of a denial in HALF_OPEN while another probe is in flight.
pub const REASON_PROBE_IN_FLIGHT: &str = "probe_in_flight";

/// Thresholds and timeouts of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (≥ 1).
    pub failure_threshold: u32,
    /// How long the breaker stays OPEN before it admits a probe.
    pub open_timeout: Duration,
    /// Successful probes in HALF_OPEN that close it (≥ 1).
    pub success_threshold: u32,
    /// How long a probe may stay unresolved before another one is admitted, so a probe whose
    /// caller never reports back cannot wedge the breaker (> 0).
    pub probe_timeout: Duration,
}

impl BreakerConfig {
    /// The defaults of D7: 3 failures, 60 s open, 2 successes; 60 s probe timeout.
    pub const DEFAULT: Self = Self {
        failure_threshold: 3,
        open_timeout: Duration::from_secs(60),
        success_threshold: 2,
        probe_timeout: Duration::from_secs(60),
    };

    /// The isolation breaker of D7: 3 failures, 30 s open, 2 successes; 30 s probe timeout.
    pub const fn isolation() -> Self {
        Self { open_timeout: Duration::from_secs(30), probe_timeout: Duration::from_secs(30), ..Self::DEFAULT }
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero threshold or a zero probe timeout.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.failure_threshold == 0 {
            return invalid("failure_threshold", "must be at least 1");
        }
        if self.success_threshold == 0 {
            return invalid("success_threshold", "must be at least 1");
        }
        if self.probe_timeout.is_zero() {
            return invalid("probe_timeout", "must be positive");
        }
        Ok(())
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What happened to a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerEventKind {
    /// It opened (failure threshold reached, or a failure in HALF_OPEN).
    Opened,
    /// The open timeout elapsed and it admits a probe.
    HalfOpened,
    /// The probes succeeded and it closed.
    Closed,
    /// An operator forced its state.
    Forced,
    /// A failure while OPEN pushed the end of the open period back.
    Extended,
    /// A call was denied.
    Denied,
}

impl BreakerEventKind {
    /// The telemetry event name: `breaker_open`, `breaker_half_open`, `breaker_closed`,
    /// `breaker_forced`, `breaker_extended` or `breaker_denied`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Opened => "breaker_open",
            Self::HalfOpened => "breaker_half_open",
            Self::Closed => "breaker_closed",
            Self::Forced => "breaker_forced",
            Self::Extended => "breaker_extended",
            Self::Denied => "breaker_denied",
        }
    }
}

/// A change (or a denial) of one breaker, for the runtime to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerEvent {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// What happened.
    pub kind: BreakerEventKind,
    /// The state before.
    pub from: State,
    /// The state after.
    pub state: State,
    /// Why (the failure reason, the operator's reason, or one of the `REASON_*` constants).
    pub reason: Cow<'static, str>,
    /// When, on the breaker's clock.
    pub at: Instant,
    /// When the open period ends, if the breaker is OPEN.
    pub open_until: Option<Instant>,
}

/// How a call was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermitKind {
    /// Normal traffic through a closed breaker.
    Normal,
    /// The single HALF_OPEN probe: its outcome decides the breaker's state, so report it with
    /// `record_success`, `record_failure` or `release_probe`.
    Probe,
}

/// Admission of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a probe's outcome must be recorded"]
pub struct Permit {
    /// Normal call or probe.
    pub kind: PermitKind,
    /// The HALF_OPEN event, when this call moved the breaker out of OPEN.
    pub event: Option<BreakerEvent>,
}

impl Permit {
    /// Whether this call is the HALF_OPEN probe.
    pub fn is_probe(&self) -> bool {
        self.kind == PermitKind::Probe
    }
}

/// A refused call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("breaker {breaker} denied the call ({reason}), retry in {} ms", retry_after.as_millis())]
pub struct Denied {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// Its state (OPEN or HALF_OPEN).
    pub state: State,
    /// [`REASON_BREAKER_OPEN`] or [`REASON_PROBE_IN_FLIGHT`].
    pub reason: &'static str,
    /// When the denial happened.
    pub at: Instant,
    /// Time until the breaker may admit a call again.
    pub retry_after: Duration,
}

impl Denied {
    /// The denial as a [`BreakerEventKind::Denied`] event.
    pub fn event(&self) -> BreakerEvent {
        BreakerEvent {
            breaker: Arc::clone(&self.breaker),
            kind: BreakerEventKind::Denied,
            from: self.state,
            state: self.state,
            reason: Cow::Borrowed(self.reason),
            at: self.at,
            open_until: (self.state == State::CircuitStateOpen).then(|| self.at + self.retry_after),
        }
    }
}

/// A point-in-time view of a breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSnapshot {
    /// The breaker's name.
    pub name: Arc<str>,
    /// Its state.
    pub state: State,
    /// Consecutive failures counted (CLOSED) or the threshold (OPEN after a trip).
    pub failures: u32,
    /// Successful probes counted in HALF_OPEN.
    pub successes: u32,
    /// When the open period ends, while OPEN.
    pub open_until: Option<Instant>,
    /// Whether a HALF_OPEN probe is in flight.
    pub probe_in_flight: bool,
    /// How many times it opened.
    pub opened_total: u64,
    /// How many calls it denied.
    pub denied_total: u64,
    /// Its settings.
    pub config: BreakerConfig,
}

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
    successes: u32,
    open_until: Option<Instant>,
    probe_started: Option<Instant>,
    opened_total: u64,
}

/// A [`CircuitBreaker`] as a checkpoint keeps it: durations, never instants, so that another
/// process (another clock) can take it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedBreaker {
    /// Its state.
    pub state: State,
    /// Consecutive failures counted.
    pub failures: u32,
    /// Successes counted in HALF_OPEN.
    pub successes: u32,
    /// OPEN: how long until a probe is allowed.
    pub open_remaining: Option<Duration>,
    /// HALF_OPEN: how long its probe had been in flight.
    pub probe_age: Option<Duration>,
    /// Times it opened.
    pub opened_total: u64,
    /// Calls it denied.
    pub denied_total: u64,
}

/// A circuit breaker shared between threads (`Send + Sync`; wrap it in an `Arc`).
#[derive(Debug)]
pub struct CircuitBreaker {
    name: Arc<str>,
    config: BreakerConfig,
    clock: Clock,
    /// Mirror of `inner.state` (as its wire number) for the lock-free closed path.
    state: AtomicU8,
    /// Mirror of `inner.failures`, so a success with nothing to reset takes no lock.
    failures: AtomicU32,
    denied_total: AtomicU64,
    inner: Mutex<Inner>,
}

const CLOSED: u8 = State::CircuitStateClosed as u8;

fn decode(raw: u8) -> State {
    State::try_from(i32::from(raw)).unwrap_or(State::CircuitStateUnknown)
}

impl CircuitBreaker {
    /// A closed breaker named `name` (the runtime's operation name, e.g. `kernel_fetch`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `config` does not validate.
    pub fn new(name: impl Into<Arc<str>>, config: BreakerConfig, clock: Clock) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            name: name.into(),
            config,
            clock,
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            denied_total: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                state: State::CircuitStateClosed,
                failures: 0,
                successes: 0,
                open_until: None,
                probe_started: None,
                opened_total: 0,
            }),
        })
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state (lock-free). An OPEN breaker whose timeout has elapsed still reads OPEN
    /// until the next [`allow`](Self::allow) moves it to HALF_OPEN.
    #[inline]
    pub fn state(&self) -> State {
        decode(self.state.load(Ordering::Acquire))
    }

    /// Asks to run one protected call.
    ///
    /// # Errors
    /// [`Denied`] while OPEN before the timeout, and in HALF_OPEN while another probe is in flight.
    #[inline]
    pub fn allow(&self) -> Result<Permit, Denied> {
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Ok(Permit { kind: PermitKind::Normal, event: None });
        }
        self.allow_slow()
    }

    #[cold]
    #[inline(never)]
    fn allow_slow(&self) -> Result<Permit, Denied> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        match inner.state {
            State::CircuitStateOpen => {
                let until = inner.open_until.unwrap_or(now);
                if now < until {
                    drop(inner);
                    return Err(self.deny(State::CircuitStateOpen, REASON_BREAKER_OPEN, now, until - now));
                }
                inner.failures = 0;
                inner.successes = 0;
                inner.open_until = None;
                inner.probe_started = Some(now);
                let event = self.set_state(
                    &mut inner,
                    State::CircuitStateHalfOpen,
                    BreakerEventKind::HalfOpened,
                    REASON_COOLDOWN_ELAPSED.into(),
                    now,
                );
                Ok(Permit { kind: PermitKind::Probe, event: Some(event) })
            }
            State::CircuitStateHalfOpen => {
                if let Some(started) = inner.probe_started {
                    let age = now.saturating_duration_since(started);
                    if age < self.config.probe_timeout {
                        drop(inner);
                        let retry = self.config.probe_timeout - age;
                        return Err(self.deny(State::CircuitStateHalfOpen, REASON_PROBE_IN_FLIGHT, now, retry));
                    }
                }
                inner.probe_started = Some(now);
                Ok(Permit { kind: PermitKind::Probe, event: None })
            }
            _ => Ok(Permit { kind: PermitKind::Normal, event: None }),
        }
    }

    /// Records a successful call. Returns the CLOSED event when it ends the HALF_OPEN streak.
    /// Ignored while OPEN (a late success of a call admitted before the trip).
    #[inline]
    pub fn record_success(&self) -> Option<BreakerEvent> {
        if self.state.load(Ordering::Acquire) == CLOSED && self.failures.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.record_success_slow()
    }

    #[cold]
    #[inline(never)]
    fn record_success_slow(&self) -> Option<BreakerEvent> {
        let mut inner = self.inner.lock();
        match inner.state {
            State::CircuitStateClosed => {
                inner.failures = 0;
                self.failures.store(0, Ordering::Release);
                None
            }
            State::CircuitStateHalfOpen => {
                inner.probe_started = None;
                inner.successes += 1;
                if inner.successes < self.config.success_threshold {
                    return None;
                }
                self.reset_counts(&mut inner);
                let now = self.clock.now();
                Some(self.set_state(
                    &mut inner,
                    State::CircuitStateClosed,
                    BreakerEventKind::Closed,
                    REASON_STABILISED.into(),
                    now,
                ))
            }
            _ => None,
        }
    }

    /// Records a failed call. Returns the OPEN event when it trips the breaker (the threshold in
    /// CLOSED, the first failure in HALF_OPEN), or the EXTENDED event when the breaker is already
    /// OPEN (the open period restarts from now).
    pub fn record_failure(&self, reason: impl Into<Cow<'static, str>>) -> Option<BreakerEvent> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        match inner.state {
            State::CircuitStateClosed => {
                inner.failures = inner.failures.saturating_add(1);
                inner.successes = 0;
                self.failures.store(inner.failures, Ordering::Release);
                (inner.failures >= self.config.failure_threshold).then(|| self.trip(&mut inner, reason.into(), now))
            }
            State::CircuitStateHalfOpen => Some(self.trip(&mut inner, reason.into(), now)),
            State::CircuitStateOpen => {
                let until = now + self.config.open_timeout;
                inner.open_until = Some(until);
                let state = State::CircuitStateOpen;
                Some(self.event(BreakerEventKind::Extended, state, state, reason.into(), now, Some(until)))
            }
            State::CircuitStateUnknown => None,
        }
    }

    /// Gives up the HALF_OPEN probe without an outcome (the call was abandoned), so the next
    /// `allow` admits a new probe. No effect in any other state.
    pub fn release_probe(&self) {
        let mut inner = self.inner.lock();
        if inner.state == State::CircuitStateHalfOpen {
            inner.probe_started = None;
        }
    }

    /// Forces the state (operator command). CLOSED resets every count; OPEN starts a fresh open
    /// period with the failure count at the threshold; HALF_OPEN resets the counts and admits the
    /// next caller as the probe.
    ///
    /// # Errors
    /// [`Error::UnsupportedState`] for UNKNOWN.
    pub fn force_state(&self, state: State, reason: impl Into<Cow<'static, str>>) -> Result<BreakerEvent> {
        if state == State::CircuitStateUnknown {
            return Err(Error::UnsupportedState { state });
        }
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        self.reset_counts(&mut inner);
        if state == State::CircuitStateOpen {
            inner.failures = self.config.failure_threshold;
            inner.open_until = Some(now + self.config.open_timeout);
            inner.opened_total += 1;
        }
        self.failures.store(inner.failures, Ordering::Release);
        Ok(self.set_state(&mut inner, state, BreakerEventKind::Forced, reason.into(), now))
    }

    /// A consistent view of the breaker.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let inner = self.inner.lock();
        BreakerSnapshot {
            name: Arc::clone(&self.name),
            state: inner.state,
            failures: inner.failures,
            successes: inner.successes,
            open_until: inner.open_until,
            probe_in_flight: inner.probe_started.is_some(),
            opened_total: inner.opened_total,
            denied_total: self.denied_total.load(Ordering::Relaxed),
            config: self.config,
        }
    }

    /// The breaker as a checkpoint keeps it: counts, and time left or spent instead of
    /// instants.
    pub fn saved(&self) -> SavedBreaker {
        let now = self.clock.now();
        let inner = self.inner.lock();
        SavedBreaker {
            state: inner.state,
            failures: inner.failures,
            successes: inner.successes,
            open_remaining: inner.open_until.map(|t| t.saturating_duration_since(now)),
            probe_age: inner.probe_started.map(|t| now.saturating_duration_since(t)),
            opened_total: inner.opened_total,
            denied_total: self.denied_total.load(Ordering::Relaxed),
        }
    }

    /// Takes a [`saved`](Self::saved) breaker back (no event: this is a restart, not a
    /// transition). An OPEN breaker stays open for the time it had left.
    ///
    /// # Errors
    /// [`Error::UnsupportedState`] for UNKNOWN; nothing changes.
    pub fn restore(&self, saved: &SavedBreaker) -> Result<()> {
        if saved.state == State::CircuitStateUnknown {
            return Err(Error::UnsupportedState { state: saved.state });
        }
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.state = saved.state;
        inner.failures = saved.failures;
        inner.successes = saved.successes;
        inner.open_until = saved.open_remaining.map(|d| now.checked_add(d).unwrap_or(now));
        inner.probe_started = saved.probe_age.map(|d| now.checked_sub(d).unwrap_or(now));
        inner.opened_total = saved.opened_total;
        self.denied_total.store(saved.denied_total, Ordering::Relaxed);
        self.failures.store(saved.failures, Ordering::Release);
        self.state.store(saved.state as u8, Ordering::Release);
        Ok(())
    }

    fn trip(&self, inner: &mut Inner, reason: Cow<'static, str>, now: Instant) -> BreakerEvent {
        inner.successes = 0;
        inner.probe_started = None;
        inner.failures = inner.failures.max(self.config.failure_threshold);
        inner.open_until = Some(now + self.config.open_timeout);
        inner.opened_total += 1;
        self.failures.store(inner.failures, Ordering::Release);
        self.set_state(inner, State::CircuitStateOpen, BreakerEventKind::Opened, reason, now)
    }

    fn reset_counts(&self, inner: &mut Inner) {
        inner.failures = 0;
        inner.successes = 0;
        inner.open_until = None;
        inner.probe_started = None;
        self.failures.store(0, Ordering::Release);
    }

    fn set_state(
        &self,
        inner: &mut Inner,
        state: State,
        kind: BreakerEventKind,
        reason: Cow<'static, str>,
        now: Instant,
    ) -> BreakerEvent {
        let from = inner.state;
        inner.state = state;
        self.state.store(state as u8, Ordering::Release);
        self.event(kind, from, state, reason, now, inner.open_until)
    }

    fn event(
        &self,
        kind: BreakerEventKind,
        from: State,
        state: State,
        reason: Cow<'static, str>,
        at: Instant,
        open_until: Option<Instant>,
    ) -> BreakerEvent {
        BreakerEvent { breaker: Arc::clone(&self.name), kind, from, state, reason, at, open_until }
    }

    fn deny(&self, state: State, reason: &'static str, at: Instant, retry_after: Duration) -> Denied {
        self.denied_total.fetch_add(1, Ordering::Relaxed);
        Denied { breaker: Arc::clone(&self.name), state, reason, at, retry_after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_the_atomic_word() {
        for &s in State::ALL {
            assert_eq!(decode(s as u8), s);
        }
        assert_eq!(decode(200), State::CircuitStateUnknown);
    }

    #[test]
    fn breakers_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<CircuitBreaker>();
        check::<BreakerEvent>();
    }
}
