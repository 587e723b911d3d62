//! The runtime's circuit breakers (decisions D7): one per protected operation, composed with
//! the operations here and nowhere else.
//!
//! | breaker | protects | a failure is |
//! |---|---|---|
//! | `kernel_fetch` | fetching a kernel artefact | a fetch error or a fetch over its latency budget |
//! | `isolation` | the gradient-isolation verification | an isolation violation |
//! | `blending` | advancing a seed's alpha in BLENDING | a non-finite blended output |
//! | `telemetry_flush` | handing a packet to the telemetry pipeline | a packet dropped under back-pressure |

use std::borrow::Cow;

use kasmina_safety::{BreakerConfig, BreakerEvent, BreakerEventKind, CircuitBreaker};
use kasmina_telemetry::names;
use leyline::{CircuitBreakerState as State, TelemetryEvent, TelemetryLevel};

use crate::error::Result;

/// A breaker of the runtime, by the operation it protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BreakerName {
    /// Kernel fetch and attach.
    KernelFetch,
    /// Isolation verification.
    Isolation,
    /// Alpha blending.
    Blending,
    /// Telemetry flush.
    TelemetryFlush,
}

impl BreakerName {
    /// Every breaker, in a fixed order.
    pub const ALL: [Self; 4] = [Self::KernelFetch, Self::Isolation, Self::Blending, Self::TelemetryFlush];

    /// The name used on the wire (`annotations["breaker"]` of a CIRCUIT_BREAKER command, the
    /// `breaker` attribute of breaker events).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KernelFetch => "kernel_fetch",
            Self::Isolation => "isolation",
            Self::Blending => "blending",
            Self::TelemetryFlush => "telemetry_flush",
        }
    }

    /// The breaker called `name` on the wire.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == name.trim())
    }
}

impl std::fmt::Display for BreakerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four breakers.
#[derive(Debug)]
pub(crate) struct Breakers {
    breakers: [CircuitBreaker; 4],
}

impl Breakers {
    pub(crate) fn new(clock: quanta::Clock) -> Result<Self> {
        let make = |name: BreakerName| {
            let config =
                if name == BreakerName::Isolation { BreakerConfig::isolation() } else { BreakerConfig::DEFAULT };
            CircuitBreaker::new(name.as_str(), config, clock.clone())
        };
        Ok(Self {
            breakers: [
                make(BreakerName::KernelFetch)?,
                make(BreakerName::Isolation)?,
                make(BreakerName::Blending)?,
                make(BreakerName::TelemetryFlush)?,
            ],
        })
    }

    pub(crate) fn get(&self, name: BreakerName) -> &CircuitBreaker {
        &self.breakers[name as usize]
    }

    pub(crate) fn state(&self, name: BreakerName) -> State {
        self.get(name).state()
    }

    /// Every breaker's state, by wire name (G4's evidence).
    pub(crate) fn states(&self) -> [(&'static str, State); 4] {
        BreakerName::ALL.map(|b| (b.as_str(), self.state(b)))
    }

    pub(crate) fn any_open(&self) -> bool {
        BreakerName::ALL.into_iter().any(|b| self.state(b) == State::CircuitStateOpen)
    }

    /// Admission for one protected operation: `Ok` when it may run, `Err` when the breaker
    /// refuses. Either way, the breaker's event (if any) goes to `events`.
    pub(crate) fn admit(&self, name: BreakerName, events: &mut Vec<TelemetryEvent>) -> bool {
        match self.get(name).allow() {
            Ok(permit) => {
                events.extend(permit.event.map(|e| breaker_event(&e)));
                true
            }
            Err(denied) => {
                events.push(breaker_event(&denied.event()));
                false
            }
        }
    }

    pub(crate) fn success(&self, name: BreakerName, events: &mut Vec<TelemetryEvent>) {
        events.extend(self.get(name).record_success().map(|e| breaker_event(&e)));
    }

    pub(crate) fn failure(&self, name: BreakerName, reason: &'static str, events: &mut Vec<TelemetryEvent>) {
        events.extend(self.get(name).record_failure(reason).map(|e| breaker_event(&e)));
    }

    /// A clean run of an operation whose breaker is not CLOSED serves as its probe (HALF_OPEN
    /// after the open time, CLOSED after enough successes). Used for the isolation breaker,
    /// whose operation runs on every check of every monitored seed, and — with no monitored
    /// seed left — on every safe point (decisions D6: it recovers also when no seed is left).
    pub(crate) fn probe_clean(&self, name: BreakerName, events: &mut Vec<TelemetryEvent>) {
        if self.state(name) == State::CircuitStateClosed {
            return;
        }
        if self.admit_quiet(name, events) {
            self.success(name, events);
        }
    }

    /// Admission without a `denied` event (an idle probe that is refused is no news).
    fn admit_quiet(&self, name: BreakerName, events: &mut Vec<TelemetryEvent>) -> bool {
        match self.get(name).allow() {
            Ok(permit) => {
                events.extend(permit.event.map(|e| breaker_event(&e)));
                true
            }
            Err(_) => false,
        }
    }

    /// Forces a breaker's state (CIRCUIT_BREAKER command).
    pub(crate) fn force(
        &self,
        name: BreakerName,
        state: State,
        reason: String,
    ) -> std::result::Result<TelemetryEvent, kasmina_safety::Error> {
        self.get(name).force_state(state, Cow::Owned(reason)).map(|e| breaker_event(&e))
    }
}

/// A breaker event as telemetry: the plan's names for transitions (`breaker_open`,
/// `breaker_half_open`, `breaker_closed`), the prototype's `breaker_event` for the rest; the
/// isolation breaker's other events are `isolation_breaker`, and its opening is CRITICAL.
pub(crate) fn breaker_event(e: &BreakerEvent) -> TelemetryEvent {
    let isolation = &*e.breaker == BreakerName::Isolation.as_str();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn names_round_trip() {
        for b in BreakerName::ALL {
            assert_eq!(BreakerName::parse(b.as_str()), Some(b));
        }
        assert_eq!(BreakerName::parse("nope"), None);
    }

    #[test]
    fn an_idle_probe_closes_an_open_breaker_after_its_open_time() {
        let (clock, mock) = quanta::Clock::mock();
        let b = Breakers::new(clock).unwrap();
        let mut events = Vec::new();
        for _ in 0..3 {
            b.failure(BreakerName::Isolation, "isolation_violation", &mut events);
        }
        assert_eq!(b.state(BreakerName::Isolation), State::CircuitStateOpen);
        b.probe_clean(BreakerName::Isolation, &mut events);
        assert_eq!(b.state(BreakerName::Isolation), State::CircuitStateOpen, "not before the open time");
        mock.increment(Duration::from_secs(31));
        b.probe_clean(BreakerName::Isolation, &mut events);
        b.probe_clean(BreakerName::Isolation, &mut events);
        assert_eq!(b.state(BreakerName::Isolation), State::CircuitStateClosed);
    }
}
