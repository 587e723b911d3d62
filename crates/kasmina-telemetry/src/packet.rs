//! Packet assembly: header, level, event ids, health (decisions D9) and the priority indicator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use kasmina_clock::{SystemWallClock, WallClock};
use leyline::wkt::Timestamp;
use leyline::{
    HealthStatus, MessagePriority, MetricPoint, SystemHealth, TelemetryEvent, TelemetryLevel, TelemetryPacket,
};

/// The `source_subsystem` of every packet Kasmina emits.
pub const SOURCE_SUBSYSTEM: &str = "kasmina";

/// The `system_health.indicators` key holding the packet's priority name.
pub const PRIORITY_INDICATOR: &str = "priority";

/// The `system_health.indicators` key holding the live seed count.
pub const SEEDS_INDICATOR: &str = "seeds";

/// The `system_health.indicators` key holding the global violation count.
pub const VIOLATIONS_INDICATOR: &str = "violations";

/// Converts a wall-clock time to a protobuf `Timestamp` (times before the epoch become the epoch).
pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// What the health of the system is computed from (decisions D9). The runtime fills it from its
/// own state; assembly only reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthInputs {
    /// A seed was culled for an isolation violation within the current health window.
    pub isolation_cull_in_window: bool,
    /// The isolation breaker is OPEN.
    pub isolation_breaker_open: bool,
    /// Isolation violations of live seeds (not culled, within the window).
    pub violations: u64,
    /// Any breaker (kernel fetch, blending, isolation, telemetry flush) is OPEN.
    pub any_breaker_open: bool,
    /// A fallback kernel is in use.
    pub fallback_used: bool,
    /// A latency budget (kernel fetch, hook) was breached in the window.
    pub latency_breach: bool,
    /// Live seeds, reported as the `seeds` indicator.
    pub live_seeds: u32,
    /// Rejected commands arrive faster than their events are published (a flood, perhaps an
    /// attack on the control plane).
    pub command_flood: bool,
}

/// Health status and summary by decisions D9, first matching rule wins:
///
/// | condition | status | summary |
/// |---|---|---|
/// | isolation cull in window | CRITICAL | `isolation_cull` |
/// | isolation breaker open | CRITICAL | `isolation_breaker_open` |
/// | violations > 0 | UNHEALTHY | `violations` |
/// | any breaker open | UNHEALTHY | `breaker_open` |
/// | fallback used | DEGRADED | `fallback` |
/// | latency breach | DEGRADED | `latency_high` |
/// | command flood | DEGRADED | `command_flood` |
/// | otherwise | HEALTHY | `nominal` |
pub fn health_status(inputs: &HealthInputs) -> (HealthStatus, &'static str) {
    if inputs.isolation_cull_in_window {
        (HealthStatus::Critical, "isolation_cull")
    } else if inputs.isolation_breaker_open {
        (HealthStatus::Critical, "isolation_breaker_open")
    } else if inputs.violations > 0 {
        (HealthStatus::Unhealthy, "violations")
    } else if inputs.any_breaker_open {
        (HealthStatus::Unhealthy, "breaker_open")
    } else if inputs.fallback_used {
        (HealthStatus::Degraded, "fallback")
    } else if inputs.latency_breach {
        (HealthStatus::Degraded, "latency_high")
    } else if inputs.command_flood {
        (HealthStatus::Degraded, "command_flood")
    } else {
        (HealthStatus::Healthy, "nominal")
    }
}

/// The full `SystemHealth` message: status and summary by [`health_status`], indicators `seeds`,
/// `violations` and `priority` (the priority's protobuf name).
pub fn system_health(inputs: &HealthInputs, priority: MessagePriority) -> SystemHealth {
    let (status, summary) = health_status(inputs);
    let mut indicators = BTreeMap::new();
    indicators.insert(SEEDS_INDICATOR.to_owned(), inputs.live_seeds.to_string());
    indicators.insert(VIOLATIONS_INDICATOR.to_owned(), inputs.violations.to_string());
    indicators.insert(PRIORITY_INDICATOR.to_owned(), priority.as_str_name().to_owned());
    SystemHealth { status: status as i32, summary: summary.to_owned(), indicators }
}

/// The highest level among the events, INFO when there are none (an UNSPECIFIED or unknown event
/// level counts as INFO).
pub fn packet_level(events: &[TelemetryEvent]) -> TelemetryLevel {
    events.iter().map(event_level).max().unwrap_or(TelemetryLevel::Info)
}

/// An event's level, with UNSPECIFIED and unknown numbers read as INFO.
pub(crate) fn event_level(event: &TelemetryEvent) -> TelemetryLevel {
    match TelemetryLevel::try_from(event.level) {
        Ok(TelemetryLevel::Unspecified) | Err(_) => TelemetryLevel::Info,
        Ok(level) => level,
    }
}

/// The priority of a set of events, the prototype's mapping: any CRITICAL event gives CRITICAL, otherwise any
/// WARNING or ERROR gives HIGH, otherwise NORMAL. LOW is never produced.
pub fn priority_of(events: &[TelemetryEvent]) -> MessagePriority {
    priority_for_level(packet_level(events))
}

/// The priority that a packet of the given level carries (see [`priority_of`]).
pub fn priority_for_level(level: TelemetryLevel) -> MessagePriority {
    match level {
        TelemetryLevel::Critical => MessagePriority::Critical,
        TelemetryLevel::Warning | TelemetryLevel::Error => MessagePriority::High,
        TelemetryLevel::Info | TelemetryLevel::Unspecified => MessagePriority::Normal,
    }
}

/// Assembles Leyline `TelemetryPacket`s: source `kasmina`, ids `kasmina-telemetry-{n}` (n counts
/// the packets this assembler built, from 0), timestamps from the injected [`WallClock`], level =
/// highest event level, event ids `evt-{i}` from 1, `system_health` by decisions D9 with the
/// `priority` indicator.
///
/// Assembly reads its inputs through shared references and changes nothing but the assembler's
/// own packet counter.
#[derive(Debug)]
pub struct TelemetryAssembler {
    clock: Arc<dyn WallClock>,
    source: String,
    next: AtomicU64,
}

impl Default for TelemetryAssembler {
    fn default() -> Self {
        Self::new(SystemWallClock)
    }
}

impl TelemetryAssembler {
    /// An assembler stamping packets with `clock`.
    pub fn new(clock: impl WallClock + 'static) -> Self {
        Self { clock: Arc::new(clock), source: SOURCE_SUBSYSTEM.to_owned(), next: AtomicU64::new(0) }
    }

    /// Overrides the `source_subsystem` (default `kasmina`).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// How many packets this assembler has built.
    pub fn packets_assembled(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Builds a packet with a generated id.
    pub fn assemble(
        &self,
        metrics: &[MetricPoint],
        events: &[TelemetryEvent],
        health: &HealthInputs,
    ) -> TelemetryPacket {
        self.assemble_with_id(None, metrics, events, health)
    }

    /// Builds a packet, with `packet_id` when given (the counter still advances, as in the prototype).
    pub fn assemble_with_id(
        &self,
        packet_id: Option<&str>,
        metrics: &[MetricPoint],
        events: &[TelemetryEvent],
        health: &HealthInputs,
    ) -> TelemetryPacket {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let packet_id = match packet_id {
            Some(id) => id.to_owned(),
            None => format!("kasmina-telemetry-{n}"),
        };
        let level = packet_level(events);
        let priority = priority_for_level(level);
        let events = events
            .iter()
            .enumerate()
            .map(|(i, e)| TelemetryEvent {
                event_id: format!("evt-{}", i + 1),
                description: e.description.clone(),
                level: event_level(e) as i32,
                attributes: e.attributes.clone(),
            })
            .collect();
        TelemetryPacket {
            packet_id,
            timestamp: Some(timestamp(self.clock.now())),
            source_subsystem: self.source.clone(),
            level: level as i32,
            metrics: metrics.to_vec(),
            events,
            spans: Vec::new(),
            system_health: Some(system_health(health, priority)),
        }
    }
}

/// The priority a packet carries, read from its `priority` indicator when present, otherwise
/// derived from its level.
pub fn packet_priority(packet: &TelemetryPacket) -> MessagePriority {
    packet
        .system_health
        .as_ref()
        .and_then(|h| h.indicators.get(PRIORITY_INDICATOR))
        .and_then(|name| MessagePriority::from_str_name(name))
        .unwrap_or_else(|| priority_for_level(packet.level()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kasmina_clock::FixedWallClock;
    use rstest::rstest;

    use super::*;
    use crate::names;

    fn inputs() -> HealthInputs {
        HealthInputs::default()
    }

    #[rstest]
    #[case::nominal(inputs(), HealthStatus::Healthy, "nominal")]
    #[case::latency(HealthInputs { latency_breach: true, ..inputs() }, HealthStatus::Degraded, "latency_high")]
    #[case::fallback(HealthInputs { fallback_used: true, latency_breach: true, ..inputs() }, HealthStatus::Degraded, "fallback")]
    #[case::breaker(HealthInputs { any_breaker_open: true, fallback_used: true, ..inputs() }, HealthStatus::Unhealthy, "breaker_open")]
    #[case::violations(HealthInputs { violations: 1, any_breaker_open: true, ..inputs() }, HealthStatus::Unhealthy, "violations")]
    #[case::iso_breaker(HealthInputs { isolation_breaker_open: true, any_breaker_open: true, violations: 3, ..inputs() }, HealthStatus::Critical, "isolation_breaker_open")]
    #[case::iso_cull(HealthInputs { isolation_cull_in_window: true, isolation_breaker_open: true, ..inputs() }, HealthStatus::Critical, "isolation_cull")]
    #[case::iso_cull_alone(HealthInputs { isolation_cull_in_window: true, ..inputs() }, HealthStatus::Critical, "isolation_cull")]
    fn health_rules(#[case] input: HealthInputs, #[case] status: HealthStatus, #[case] summary: &str) {
        assert_eq!(health_status(&input), (status, summary));
        let h = system_health(&input, MessagePriority::Normal);
        assert_eq!(h.status(), status);
        assert_eq!(h.summary, summary);
    }

    fn ev(level: TelemetryLevel) -> TelemetryEvent {
        names::SEED_STATE.event_at(level, [("seed_id", "s")])
    }

    #[rstest]
    #[case::none(&[], MessagePriority::Normal, TelemetryLevel::Info)]
    #[case::info(&[TelemetryLevel::Info, TelemetryLevel::Info], MessagePriority::Normal, TelemetryLevel::Info)]
    #[case::unspecified(&[TelemetryLevel::Unspecified], MessagePriority::Normal, TelemetryLevel::Info)]
    #[case::warning(&[TelemetryLevel::Info, TelemetryLevel::Warning], MessagePriority::High, TelemetryLevel::Warning)]
    #[case::error(&[TelemetryLevel::Error, TelemetryLevel::Info], MessagePriority::High, TelemetryLevel::Error)]
    #[case::critical(&[TelemetryLevel::Warning, TelemetryLevel::Critical, TelemetryLevel::Error], MessagePriority::Critical, TelemetryLevel::Critical)]
    fn priority_rules(
        #[case] levels: &[TelemetryLevel],
        #[case] priority: MessagePriority,
        #[case] level: TelemetryLevel,
    ) {
        let events: Vec<_> = levels.iter().map(|l| ev(*l)).collect();
        assert_eq!(priority_of(&events), priority);
        assert_eq!(packet_level(&events), level);
        let assembler = TelemetryAssembler::new(FixedWallClock::at(UNIX_EPOCH));
        let packet = assembler.assemble(&[], &events, &inputs());
        assert_eq!(packet.level(), level);
        assert_eq!(packet.system_health.as_ref().unwrap().indicators[PRIORITY_INDICATOR], priority.as_str_name());
        assert_eq!(packet_priority(&packet), priority);
    }

    #[test]
    fn unknown_event_level_reads_as_info() {
        let mut e = ev(TelemetryLevel::Info);
        e.level = 42;
        assert_eq!(packet_level(&[e]), TelemetryLevel::Info);
    }

    #[test]
    fn header_ids_and_timestamp() {
        let clock = Arc::new(FixedWallClock::at(UNIX_EPOCH + Duration::from_millis(1_500)));
        let assembler = TelemetryAssembler::new(clock.clone());
        let metrics = vec![names::SEEDS_ACTIVE.point(2.0)];
        let events = vec![ev(TelemetryLevel::Info), ev(TelemetryLevel::Warning)];
        let health = HealthInputs { live_seeds: 2, ..inputs() };
        let before = (metrics.clone(), events.clone(), health);

        let p0 = assembler.assemble(&metrics, &events, &health);
        assert_eq!(p0.packet_id, "kasmina-telemetry-0");
        assert_eq!(p0.source_subsystem, "kasmina");
        assert_eq!(p0.timestamp, Some(Timestamp { seconds: 1, nanos: 500_000_000 }));
        assert_eq!(p0.events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["evt-1", "evt-2"]);
        assert_eq!(p0.metrics, metrics);
        let h = p0.system_health.unwrap();
        assert_eq!(h.indicators[SEEDS_INDICATOR], "2");
        assert_eq!(h.indicators[PRIORITY_INDICATOR], "MESSAGE_PRIORITY_HIGH");
        // Inputs are untouched.
        assert_eq!((metrics.clone(), events.clone(), health), before);

        clock.advance(Duration::from_secs(2));
        let p1 = assembler.assemble_with_id(Some("custom"), &[], &[], &health);
        assert_eq!(p1.packet_id, "custom");
        assert_eq!(p1.timestamp.unwrap().seconds, 3);
        assert_eq!(p1.level(), TelemetryLevel::Info);
        let p2 = assembler.assemble(&[], &[], &health);
        assert_eq!(p2.packet_id, "kasmina-telemetry-2");
        assert_eq!(assembler.packets_assembled(), 3);
    }

    #[test]
    fn source_can_be_overridden() {
        let a = TelemetryAssembler::default().with_source("kasmina-bench");
        assert_eq!(a.assemble(&[], &[], &inputs()).source_subsystem, "kasmina-bench");
    }
}
