//! Monotonic timing in milliseconds and deadline guards over an injected `quanta::Clock`.

use std::borrow::Cow;
use std::time::Duration;

use leyline::TelemetryLevel;
use quanta::{Clock, Instant};

/// The telemetry event name of a [`DeadlineViolation`].
pub const DEADLINE_VIOLATION: &str = "deadline_violation";

/// Milliseconds in `d`, with fractions.
pub fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A monotonic timer over an injected clock: reads the time, measures operations, starts
/// deadlines. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MonotonicTimer {
    clock: Clock,
}

impl MonotonicTimer {
    /// A timer reading `clock` (`quanta::Clock::new()` in production, `Clock::mock()` in tests).
    pub fn new(clock: Clock) -> Self {
        Self { clock }
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The current monotonic time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Starts a stopwatch now.
    pub fn start(&self) -> Stopwatch {
        Stopwatch { clock: self.clock.clone(), start: self.clock.now() }
    }

    /// Runs `f` and returns its value with how long it took.
    pub fn measure<T>(&self, f: impl FnOnce() -> T) -> (T, Duration) {
        let start = self.clock.now();
        let value = f();
        (value, self.clock.now().saturating_duration_since(start))
    }

    /// Starts a deadline of `budget` for `operation` now.
    pub fn deadline(&self, operation: impl Into<Cow<'static, str>>, budget: Duration) -> Deadline {
        Deadline::start(self.clock.clone(), operation, budget)
    }
}

/// Time since a start point.
#[derive(Debug, Clone)]
pub struct Stopwatch {
    clock: Clock,
    start: Instant,
}

impl Stopwatch {
    /// When it started.
    pub fn started_at(&self) -> Instant {
        self.start
    }

    /// Time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.start)
    }

    /// Milliseconds elapsed since the start, with fractions.
    pub fn elapsed_ms(&self) -> f64 {
        duration_ms(self.elapsed())
    }
}

/// An operation that passed its budget: the `deadline_violation` event's content.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{operation} took {elapsed_ms:.3} ms, {overrun_ms:.3} ms over its {budget_ms:.3} ms budget")]
pub struct DeadlineViolation {
    /// The operation (e.g. `execution_deadline`, `kernel_fetch`, `step`).
    pub operation: Cow<'static, str>,
    /// Its budget, in ms.
    pub budget_ms: f64,
    /// How long it took (or had taken when checked), in ms.
    pub elapsed_ms: f64,
    /// `elapsed_ms - budget_ms`.
    pub overrun_ms: f64,
}

impl DeadlineViolation {
    /// Severity for telemetry: WARNING up to twice the budget, ERROR beyond.
    pub fn level(&self) -> TelemetryLevel {
        if self.overrun_ms > self.budget_ms { TelemetryLevel::Error } else { TelemetryLevel::Warning }
    }
}

/// A time budget for one operation. [`check`](Self::check) at intermediate points and
/// [`finish`](Self::finish) at the end report a [`DeadlineViolation`] once the budget is passed
/// (an elapsed time equal to the budget is within it).
#[derive(Debug, Clone)]
pub struct Deadline {
    clock: Clock,
    operation: Cow<'static, str>,
    start: Instant,
    budget: Duration,
}

impl Deadline {
    /// Starts a deadline of `budget` for `operation` now.
    pub fn start(clock: Clock, operation: impl Into<Cow<'static, str>>, budget: Duration) -> Self {
        let start = clock.now();
        Self { clock, operation: operation.into(), start, budget }
    }

    /// The operation's name.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The budget.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// When the deadline falls.
    pub fn expires_at(&self) -> Instant {
        self.start + self.budget
    }

    /// Time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.start)
    }

    /// Time left before the deadline (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.budget.saturating_sub(self.elapsed())
    }

    /// Whether the budget has been passed.
    pub fn is_expired(&self) -> bool {
        self.elapsed() > self.budget
    }

    /// # Errors
    /// The [`DeadlineViolation`] when the budget has been passed by now.
    pub fn check(&self) -> Result<Duration, DeadlineViolation> {
        let elapsed = self.elapsed();
        if elapsed <= self.budget {
            return Ok(elapsed);
        }
        let (budget_ms, elapsed_ms) = (duration_ms(self.budget), duration_ms(elapsed));
        Err(DeadlineViolation {
            operation: self.operation.clone(),
            budget_ms,
            elapsed_ms,
            overrun_ms: duration_ms(elapsed - self.budget),
        })
    }

    /// Ends the operation, returning how long it took.
    ///
    /// # Errors
    /// The [`DeadlineViolation`] when it took longer than its budget.
    pub fn finish(self) -> Result<Duration, DeadlineViolation> {
        self.check()
    }
}
