//! The runtime's circuit breakers (decisions D7): one per protected operation, composed with
//! the operations here and nowhere else.

use std::borrow::Cow;

use kasmina_safety::{BreakerConfig, BreakerEvent, BreakerEventKind, CircuitBreaker};
use kasmina_telemetry::names;
use leyline::{CircuitBreakerState as State, TelemetryEvent, TelemetryLevel};

use crate::error::Result;
use crate::manager::Kasmina;

/// Names of the breakers (`annotations["breaker"]` of a CIRCUIT_BREAKER command).
pub const KERNEL_FETCH: &str = "kernel_fetch";
/// The isolation-verification breaker.
pub const ISOLATION: &str = "isolation";
/// The blending breaker.
pub const BLENDING: &str = "blending";
/// The telemetry-flush breaker.
pub const TELEMETRY_FLUSH: &str = "telemetry_flush";

#[derive(Debug)]
pub(crate) struct Breakers {
    pub(crate) fetch: CircuitBreaker,
    pub(crate) isolation: CircuitBreaker,
    pub(crate) blending: CircuitBreaker,
    pub(crate) telemetry: CircuitBreaker,
}

impl Breakers {
    pub(crate) fn new(clock: quanta::Clock) -> Result<Self> {
        Ok(Self {
            fetch: CircuitBreaker::new(KERNEL_FETCH, BreakerConfig::DEFAULT, clock.clone())?,
            isolation: CircuitBreaker::new(ISOLATION, BreakerConfig::isolation(), clock.clone())?,
            blending: CircuitBreaker::new(BLENDING, BreakerConfig::DEFAULT, clock.clone())?,
            telemetry: CircuitBreaker::new(TELEMETRY_FLUSH, BreakerConfig::DEFAULT, clock)?,
        })
    }

    pub(crate) fn all(&self) -> [&CircuitBreaker; 4] {
        [&self.fetch, &self.isolation, &self.blending, &self.telemetry]
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&CircuitBreaker> {
        self.all().into_iter().find(|b| b.name() == name)
    }

    /// Admission for a kernel fetch; emits the breaker's events.
    pub(crate) fn fetch_allow(&self, kasmina: &Kasmina) -> bool {
        match self.fetch.allow() {
            Ok(permit) => {
                if let Some(e) = permit.event {
                    kasmina.event(breaker_event(&e));
                }
                true
            }
            Err(denied) => {
                kasmina.event(breaker_event(&denied.event()));
                false
            }
        }
    }

    pub(crate) fn fetch_success(&self) -> Vec<TelemetryEvent> {
        self.fetch.record_success().map(|e| breaker_event(&e)).into_iter().collect()
    }

    pub(crate) fn fetch_failure(&self, reason: &'static str) -> Vec<TelemetryEvent> {
        self.fetch.record_failure(reason).map(|e| breaker_event(&e)).into_iter().collect()
    }

    pub(crate) fn fetch_state(&self) -> State {
        self.fetch.state()
    }

    pub(crate) fn isolation_success(&self) -> Vec<TelemetryEvent> {
        if self.isolation.state() == State::CircuitStateClosed {
            return Vec::new();
        }
        // A clean check is the isolation breaker's probe.
        let mut out = Vec::new();
        if let Ok(permit) = self.isolation.allow() {
            out.extend(permit.event.map(|e| breaker_event(&e)));
            out.extend(self.isolation.record_success().map(|e| breaker_event(&e)));
        }
        out
    }

    pub(crate) fn isolation_failure(&self) -> Vec<TelemetryEvent> {
        self.isolation.record_failure("isolation_violation").map(|e| breaker_event(&e)).into_iter().collect()
    }

    pub(crate) fn isolation_open(&self) -> bool {
        self.isolation.state() == State::CircuitStateOpen
    }

    pub(crate) fn any_open(&self) -> bool {
        self.all().iter().any(|b| b.state() == State::CircuitStateOpen)
    }

    /// Forces a breaker's state (CIRCUIT_BREAKER command).
    pub(crate) fn force(
        &self,
        name: &str,
        state: State,
        reason: String,
    ) -> std::result::Result<TelemetryEvent, String> {
        let breaker = self.by_name(name).ok_or_else(|| format!("unknown breaker `{name}`"))?;
        breaker.force_state(state, Cow::Owned(reason)).map(|e| breaker_event(&e)).map_err(|e| e.to_string())
    }
}

/// A breaker event as telemetry: the plan's names for transitions (`breaker_open`,
/// `breaker_half_open`, `breaker_closed`), the prototype's `breaker_event` for the rest; the
/// isolation breaker's events are `isolation_breaker` as well, CRITICAL when it opens.
pub(crate) fn breaker_event(e: &BreakerEvent) -> TelemetryEvent {
    let isolation = &*e.breaker == ISOLATION;
    let name = match e.kind {
        BreakerEventKind::Opened => names::BREAKER_OPEN,
        BreakerEventKind::HalfOpened => names::BREAKER_HALF_OPEN,
        BreakerEventKind::Closed => names::BREAKER_CLOSED,
        _ if isolation => names::ISOLATION_BREAKER,
        _ => names::BREAKER_EVENT,
    };
    let level = if isolation && e.state == State::CircuitStateOpen { TelemetryLevel::Critical } else { name.level() };
    name.event_at(
        level,
        [
            ("breaker", e.breaker.to_string()),
            ("breaker_state", e.state.as_str_name().to_owned()),
            ("from_state", e.from.as_str_name().to_owned()),
            ("action", e.kind.name().to_owned()),
            ("reason", e.reason.to_string()),
        ],
    )
}
