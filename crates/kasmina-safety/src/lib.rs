//! Circuit breakers, monotonic timers, deadline guards and pause quotas for Kasmina.
//!
//! Layer L1 (a domain crate): it depends only on `leyline` and small external crates (`quanta`
//! for the injected monotonic clock, `parking_lot`, `thiserror`), never on another Kasmina crate.
//! It emits no telemetry: breaker transitions, denials, deadline violations and quota resets are
//! returned as values for the runtime to publish.
//!
//! - [`CircuitBreaker`] (decisions D7): failure threshold, open timeout, one probe at a time in
//!   HALF_OPEN, the first HALF_OPEN failure re-opens; `Send + Sync`, lock-free on the closed path;
//!   each transition is a [`BreakerEvent`].
//! - [`MonotonicTimer`], [`Stopwatch`] and [`Deadline`]: time operations in ms and report a
//!   [`DeadlineViolation`] when one passes its budget.
//! - [`PauseQuota`] and [`PausePasses`]: identity passes per pause and a server-wide pool that
//!   refills every 60 s.
//!
//! ```
//! use std::time::Duration;
//! use kasmina_safety::{BreakerConfig, BreakerEventKind, CircuitBreaker};
//! use leyline::CircuitBreakerState as State;
//!
//! let (clock, mock) = quanta::Clock::mock();
//! let breaker = CircuitBreaker::new("kernel_fetch", BreakerConfig::default(), clock).unwrap();
//! assert!(breaker.allow().is_ok());
//! breaker.record_failure("fetch_error");
//! breaker.record_failure("fetch_error");
//! let opened = breaker.record_failure("fetch_error").unwrap();
//! assert_eq!(opened.kind.name(), "breaker_open");
//! assert!(breaker.allow().is_err());
//!
//! mock.increment(Duration::from_secs(60));
//! let probe = breaker.allow().unwrap();
//! assert!(probe.is_probe());
//! assert_eq!(probe.event.unwrap().kind, BreakerEventKind::HalfOpened);
//! assert!(breaker.allow().is_err()); // one probe at a time
//! breaker.record_success();
//! breaker.allow().unwrap();
//! assert_eq!(breaker.record_success().unwrap().state, State::CircuitStateClosed);
//! ```
//!
//! The breaker's atomics and lock are model-checked with loom (`tests/loom.rs`: one probe at a
//! time, one trip per threshold, counters consistent with the state):
//! `RUSTFLAGS="--cfg loom" cargo test -p kasmina-safety --test loom --release`. A success is not
//! tied to the permit that produced it: a call admitted while CLOSED that succeeds after the
//! breaker opened and half-opened counts as the probe's success.

pub mod breaker;
mod error;
pub mod pause;
mod sync;
pub mod timer;

pub use breaker::{
    BreakerConfig, BreakerEvent, BreakerEventKind, BreakerSnapshot, CircuitBreaker, Denied, Permit, PermitKind,
    SavedBreaker,
};
pub use error::{Error, Result};
pub use pause::{PausePasses, PauseQuota, PauseQuotaConfig, QuotaDecision, QuotaGrant, QuotaReset, SavedQuota};
pub use timer::{Deadline, DeadlineViolation, MonotonicTimer, Stopwatch};
