//! Every telemetry metric and event name Kasmina emits, in one place (decisions D9).
//!
//! The catalogue serves two audiences: the Python prototype's packet metrics and events, so existing
//! dashboards keep working, and the names the implementation plan asks for (`seed_state`, `pause`,
//! `kasmina.cache.hit_rate`, `isolation.violation`, ...); `docs/runbook.md` lists them all. Each
//! [`EventName`] carries the level it is emitted at by default; a few events are raised or lowered
//! by their context (a failed `gate_event` is WARNING, an `isolation_breaker` event for an OPEN
//! breaker is CRITICAL) and the emitter then uses [`EventName::event_at`]. Each [`MetricName`]
//! carries its unit and whether it is a gauge or a cumulative counter. [`ALL_EVENTS`] and
//! [`ALL_METRICS`] list the whole catalogue.

use std::collections::BTreeMap;

use leyline::{MetricPoint, SeedLifecycleGate, TelemetryEvent, TelemetryLevel};

/// The name of a telemetry event (the Leyline `TelemetryEvent.description`) and its default level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventName {
    name: &'static str,
    level: TelemetryLevel,
}

impl EventName {
    /// A catalogue entry (only this module defines entries; see [`ALL_EVENTS`]).
    const fn new(name: &'static str, level: TelemetryLevel) -> Self {
        Self { name, level }
    }

    /// The event's name, as written into `TelemetryEvent.description`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The level the event carries unless its context raises or lowers it.
    pub const fn level(&self) -> TelemetryLevel {
        self.level
    }

    /// An event with this name, its default level and no attributes (the id is set at assembly).
    pub fn event(&self) -> TelemetryEvent {
        TelemetryEvent {
            event_id: String::new(),
            description: self.name.to_owned(),
            level: self.level as i32,
            attributes: BTreeMap::new(),
        }
    }

    /// An event with this name, its default level and the given attributes.
    pub fn event_with<I, K, V>(&self, attributes: I) -> TelemetryEvent
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.event_at(self.level, attributes)
    }

    /// An event with this name at an explicit level (for events whose level depends on context).
    pub fn event_at<I, K, V>(&self, level: TelemetryLevel, attributes: I) -> TelemetryEvent
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        TelemetryEvent {
            event_id: String::new(),
            description: self.name.to_owned(),
            level: level as i32,
            attributes: attributes.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }
}

/// How a metric is exported to systems that distinguish instruments (OpenTelemetry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A value sampled at packet time (sizes, ratios, latencies, states).
    Gauge,
    /// A cumulative total that only grows until its source is reset (violations, evictions, drops).
    Counter,
}

/// The name of a telemetry metric (the Leyline `MetricPoint.name`), its unit and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricName {
    name: &'static str,
    unit: &'static str,
    kind: MetricKind,
}

impl MetricName {
    /// A catalogue entry (only this module defines entries; see [`ALL_METRICS`]).
    const fn new(name: &'static str, unit: &'static str, kind: MetricKind) -> Self {
        Self { name, unit, kind }
    }

    /// The metric's name, as written into `MetricPoint.name`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The metric's unit, as written into `MetricPoint.unit` (`count`, `ms`, `ratio`, `state`, `1`).
    pub const fn unit(&self) -> &'static str {
        self.unit
    }

    /// Whether the metric is a gauge or a cumulative counter.
    pub const fn kind(&self) -> MetricKind {
        self.kind
    }

    /// A point of this metric with no attributes.
    pub fn point(&self, value: f64) -> MetricPoint {
        MetricPoint { name: self.name.to_owned(), value, unit: self.unit.to_owned(), attributes: BTreeMap::new() }
    }

    /// A point of this metric with attributes (e.g. `seed_id`, `breaker`).
    pub fn point_with<I, K, V>(&self, value: f64, attributes: I) -> MetricPoint
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        MetricPoint {
            name: self.name.to_owned(),
            value,
            unit: self.unit.to_owned(),
            attributes: attributes.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }
}

use MetricKind::{Counter, Gauge};
use TelemetryLevel::{Critical, Error, Info, Warning};

// ---------------------------------------------------------------------------------------------
// Metrics: the prototype's packet metrics, in the order its packets carry them.
// ---------------------------------------------------------------------------------------------

/// Live seeds (count).
pub const SEEDS_ACTIVE: MetricName = MetricName::new("kasmina.seeds.active", "count", Gauge);
/// Isolation violations, global and cumulative (count).
pub const ISOLATION_VIOLATIONS: MetricName = MetricName::new("kasmina.isolation.violations", "count", Counter);
/// Latency of the last kernel fetch that did not fall back (ms; omitted for a 0 ms cache hit).
pub const KERNEL_FETCH_LATENCY_MS: MetricName = MetricName::new("kasmina.kernel.fetch_latency_ms", "ms", Gauge);
/// A breaker's state as its `CircuitBreakerState` number (`state`).
pub const BREAKER_STATE: MetricName = MetricName::new("kasmina.breaker.state", "state", Gauge);
/// A breaker's current consecutive failure count (count).
pub const BREAKER_FAILURES: MetricName = MetricName::new("kasmina.breaker.failures", "count", Gauge);
/// Entries in the kernel TTL cache (count).
pub const CACHE_KERNEL_SIZE: MetricName = MetricName::new("kasmina.cache.kernel_size", "count", Gauge);
/// Hit rate of the kernel TTL cache (ratio).
pub const CACHE_KERNEL_HIT_RATE: MetricName = MetricName::new("kasmina.cache.kernel_hit_rate", "ratio", Gauge);
/// Entries in the GPU kernel cache (count; only while the GPU cache is on).
pub const CACHE_GPU_SIZE: MetricName = MetricName::new("kasmina.cache.gpu_size", "count", Gauge);
/// Capacity of the GPU kernel cache (count).
pub const CACHE_GPU_CAPACITY: MetricName = MetricName::new("kasmina.cache.gpu_capacity", "count", Gauge);
/// Hit rate of the GPU kernel cache (ratio).
pub const CACHE_GPU_HIT_RATE: MetricName = MetricName::new("kasmina.cache.gpu_hit_rate", "ratio", Gauge);
/// Evictions from the GPU kernel cache, cumulative (count).
pub const CACHE_GPU_EVICTIONS: MetricName = MetricName::new("kasmina.cache.gpu_evictions", "count", Counter);
/// Entries in the telemetry cache (count).
pub const CACHE_TELEMETRY_SIZE: MetricName = MetricName::new("kasmina.cache.telemetry_size", "count", Gauge);

// Metrics the plan asks for (where the prototype has none or another name) and this
// implementation adds.

/// Hit rate of the kernel cache under the plan's name (ratio).
pub const CACHE_HIT_RATE: MetricName = MetricName::new("kasmina.cache.hit_rate", "ratio", Gauge);
/// Kernel cache evictions under the plan's name, cumulative (count).
pub const CACHE_EVICTIONS: MetricName = MetricName::new("kasmina.cache.evictions", "count", Counter);
/// Dot product of host and probe gradients over shared variables (must stay ≤ 1e-6, decisions D6).
pub const ISOLATION_DOT_PRODUCT: MetricName = MetricName::new("isolation.dot_product", "1", Gauge);
/// Time spent by the isolation probe (ms, decisions D6).
pub const ISOLATION_HOOK_LATENCY_MS: MetricName = MetricName::new("isolation.hook_latency_ms", "ms", Gauge);
/// Packets the telemetry transport dropped under back-pressure, cumulative (count).
pub const TELEMETRY_DROPPED: MetricName = MetricName::new("kasmina.telemetry.dropped", "count", Counter);

/// System health as its `HealthStatus` number (`state`; exported by sinks that carry no
/// `system_health` message, such as OpenTelemetry, with the summary as attribute).
pub const HEALTH_STATUS: MetricName = MetricName::new("kasmina.health.status", "state", Gauge);

/// Every metric name, prototype names first in packet order, then the plan's and this crate's.
pub const ALL_METRICS: &[MetricName] = &[
    SEEDS_ACTIVE,
    ISOLATION_VIOLATIONS,
    KERNEL_FETCH_LATENCY_MS,
    BREAKER_STATE,
    BREAKER_FAILURES,
    CACHE_KERNEL_SIZE,
    CACHE_KERNEL_HIT_RATE,
    CACHE_GPU_SIZE,
    CACHE_GPU_CAPACITY,
    CACHE_GPU_HIT_RATE,
    CACHE_GPU_EVICTIONS,
    CACHE_TELEMETRY_SIZE,
    CACHE_HIT_RATE,
    CACHE_EVICTIONS,
    ISOLATION_DOT_PRODUCT,
    ISOLATION_HOOK_LATENCY_MS,
    TELEMETRY_DROPPED,
    HEALTH_STATUS,
];

// ---------------------------------------------------------------------------------------------
// Events: the prototype's catalogue, with its levels and attributes.
// ---------------------------------------------------------------------------------------------

/// A seed command was accepted (command_type, operation, seed_id, blueprint_id).
pub const SEED_OPERATION: EventName = EventName::new("seed_operation", Info);
/// A gate was evaluated: INFO on pass, WARNING on failure (seed_id, gate, passed, reason, gate attributes).
pub const GATE_EVENT: EventName = EventName::new("gate_event", Info);
/// A gate failed and the seed enters the failure path (seed_id, gate, reason).
pub const GATE_FAILURE: EventName = EventName::new("gate_failure", Warning);
/// A rollback point is ready: WARNING after a gate failure, INFO on retirement (seed_id, stage).
pub const ROLLBACK_READY: EventName = EventName::new("rollback_ready", Warning);
/// A breaker reported an action: WARNING for denied/transition/forced/extend, INFO for count
/// (seed_id, breaker_state, action, reason).
pub const BREAKER_EVENT: EventName = EventName::new("breaker_event", Warning);
/// The isolation breaker reported an action: WARNING, CRITICAL when it is OPEN
/// (component, breaker_state, action, reason, seed_id).
pub const ISOLATION_BREAKER: EventName = EventName::new("isolation_breaker", Warning);
/// An isolation violation was counted: WARNING, CRITICAL while the isolation breaker is OPEN
/// (violations, seed_id).
pub const VIOLATION_RECORDED: EventName = EventName::new("violation_recorded", Warning);
/// An optimizer adjustment was accepted (command_type, optimizer_id).
pub const OPTIMIZER_ADJUST: EventName = EventName::new("optimizer_adjust", Info);
/// Emergency cleanup ran (include_teacher, kernel_cache_cleared, telemetry_cache_cleared, gc_collected).
pub const EMERGENCY_CLEANUP: EventName = EventName::new("emergency_cleanup", Critical);
/// A command type Kasmina does not handle (command_type).
pub const UNSUPPORTED_COMMAND: EventName = EventName::new("unsupported_command", Warning);
/// A circuit-breaker command asked for an invalid state (desired_state, error).
pub const BREAKER_COMMAND_INVALID: EventName = EventName::new("breaker_command_invalid", Warning);
/// A command was rejected by the security envelope or validation (reason, command_id).
pub const COMMAND_REJECTED: EventName = EventName::new("command_rejected", Error);
/// Epoch-aligned garbage collection ran (the GC result keys).
pub const MEMORY_GC: EventName = EventName::new("memory_gc", Info);
/// A teacher model was registered: INFO, WARNING when over budget (memory_gb, budget_gb).
pub const TEACHER_REGISTERED: EventName = EventName::new("teacher_registered", Info);
/// A seed was paused (prototype name; seed_id).
pub const SEED_PAUSED: EventName = EventName::new("seed_paused", Warning);
/// A seed was resumed (prototype name; seed_id, blueprint_id, cache).
pub const SEED_RESUMED: EventName = EventName::new("seed_resumed", Info);
/// A fallback kernel is in use (lat: the last fetch latency in ms).
pub const FALLBACK_APPLIED: EventName = EventName::new("fallback_applied", Warning);
/// The global isolation violation count is non-zero (violations).
pub const ISOLATION_VIOLATIONS_EVENT: EventName = EventName::new("isolation_violations", Warning);
/// One per live seed in every packet (prototype name; seed_id, stage, alpha).
pub const SEED_STAGE: EventName = EventName::new("seed_stage", Info);

// Events the plan asks for (where the prototype has none or another name).

/// One per live seed in every packet (plan name; seed_id, stage, alpha).
pub const SEED_STATE: EventName = EventName::new("seed_state", Info);
/// A culled seed entered its embargo (seed_id, embargo_ms).
pub const EMBARGO_START: EventName = EventName::new("embargo_start", Warning);
/// A seed's embargo expired and its slot is being reset (seed_id).
pub const EMBARGO_END: EventName = EventName::new("embargo_end", Info);
/// A breaker opened (breaker, reason); the isolation breaker opening is raised to CRITICAL.
pub const BREAKER_OPEN: EventName = EventName::new("breaker_open", Error);
/// A breaker's cooldown elapsed and it admits one probe (breaker).
pub const BREAKER_HALF_OPEN: EventName = EventName::new("breaker_half_open", Warning);
/// A breaker closed again (breaker).
pub const BREAKER_CLOSED: EventName = EventName::new("breaker_closed", Info);
/// An operation overran its deadline (operation, deadline_ms, elapsed_ms, severity).
pub const DEADLINE_VIOLATION: EventName = EventName::new("deadline_violation", Warning);
/// A seed was paused (plan name; seed_id, reason).
pub const PAUSE: EventName = EventName::new("pause", Warning);
/// A seed was resumed (plan name; seed_id, blueprint_id, cache).
pub const RESUME: EventName = EventName::new("resume", Info);
/// A gradient isolation violation was detected (seed_id, variable, dot_product, violations).
pub const ISOLATION_VIOLATION: EventName = EventName::new("isolation.violation", Critical);
/// A seed's parameters were registered (seed_id, parameters).
pub const PARAMETER_REGISTRATION: EventName = EventName::new("parameter.registration", Info);
/// A parameter registration conflicted with the host, another seed or the teacher (seed_id, reason).
pub const PARAMETER_VIOLATION: EventName = EventName::new("parameter.violation", Error);

// Events the runtime needs beyond both catalogues.

/// A command passed the envelope and was accepted (command_id, command_type).
pub const COMMAND_ACCEPTED: EventName = EventName::new("command_accepted", Info);
/// The final receipt of a command (command_id, accepted, reason, status, seed_id, stage, key_id,
/// form, transport; decisions D14).
pub const COMMAND_RECEIPT: EventName = EventName::new("command_receipt", Info);
/// A seed's counterfactual contribution was measured (seed_id, slot, mean, std_error, batches;
/// ERROR with `error` when the evaluation failed; decisions D2).
pub const COUNTERFACTUAL: EventName = EventName::new("counterfactual_contribution", Info);
/// An illegal lifecycle transition was refused (seed_id, from, to; decisions D1).
pub const ILLEGAL_TRANSITION: EventName = EventName::new("illegal_transition", Error);
/// A kernel was fetched for a seed (seed_id, blueprint_id, latency_ms, cache, fallback).
pub const KERNEL_FETCH: EventName = EventName::new("kernel_fetch", Info);
/// The telemetry transport dropped packets under back-pressure (dropped).
pub const TELEMETRY_DROPPED_EVENT: EventName = EventName::new("telemetry_dropped", Warning);
/// A checkpoint was saved (dir, step, bytes, took_ms; decisions D13).
pub const CHECKPOINT_SAVED: EventName = EventName::new("checkpoint_saved", Info);
/// A checkpoint was restored (dir, step; decisions D13).
pub const CHECKPOINT_RESTORED: EventName = EventName::new("checkpoint_restored", Info);
/// A checkpoint could not be saved or restored; nothing changed (dir, error; decisions D13).
pub const CHECKPOINT_FAILED: EventName = EventName::new("checkpoint_failed", Error);
/// A benchmark result, published as telemetry (name, value, unit).
pub const BENCHMARK_RESULT: EventName = EventName::new("benchmark_result", Info);

/// Every event name: the prototype's catalogue, the plan's additions, then the runtime's.
pub const ALL_EVENTS: &[EventName] = &[
    SEED_OPERATION,
    GATE_EVENT,
    GATE_FAILURE,
    ROLLBACK_READY,
    BREAKER_EVENT,
    ISOLATION_BREAKER,
    VIOLATION_RECORDED,
    OPTIMIZER_ADJUST,
    EMERGENCY_CLEANUP,
    UNSUPPORTED_COMMAND,
    BREAKER_COMMAND_INVALID,
    COMMAND_REJECTED,
    MEMORY_GC,
    TEACHER_REGISTERED,
    SEED_PAUSED,
    SEED_RESUMED,
    FALLBACK_APPLIED,
    ISOLATION_VIOLATIONS_EVENT,
    SEED_STAGE,
    SEED_STATE,
    EMBARGO_START,
    EMBARGO_END,
    BREAKER_OPEN,
    BREAKER_HALF_OPEN,
    BREAKER_CLOSED,
    DEADLINE_VIOLATION,
    PAUSE,
    RESUME,
    ISOLATION_VIOLATION,
    PARAMETER_REGISTRATION,
    PARAMETER_VIOLATION,
    COMMAND_ACCEPTED,
    COMMAND_RECEIPT,
    COUNTERFACTUAL,
    ILLEGAL_TRANSITION,
    KERNEL_FETCH,
    TELEMETRY_DROPPED_EVENT,
    CHECKPOINT_SAVED,
    CHECKPOINT_RESTORED,
    CHECKPOINT_FAILED,
    BENCHMARK_RESULT,
];

/// Looks an event up by name.
pub fn event_name(name: &str) -> Option<EventName> {
    ALL_EVENTS.iter().copied().find(|e| e.name == name)
}

/// Looks a metric up by name.
pub fn metric_name(name: &str) -> Option<MetricName> {
    ALL_METRICS.iter().copied().find(|m| m.name == name)
}

/// A `gate_event` for one gate evaluation: INFO on pass, WARNING on failure, with the gate's
/// protobuf name, `passed` as `"true"`/`"false"`, and the reason when it is not empty (the
/// prototype's `gate_event`).
pub fn gate_event(seed_id: &str, gate: SeedLifecycleGate, passed: bool, reason: &str) -> TelemetryEvent {
    let level = if passed { Info } else { Warning };
    let mut event = GATE_EVENT.event_at(
        level,
        [("seed_id", seed_id), ("gate", gate.as_str_name()), ("passed", if passed { "true" } else { "false" })],
    );
    if !reason.is_empty() {
        event.attributes.insert("reason".to_owned(), reason.to_owned());
    }
    event
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_and_levels_are_set() {
        let events: HashSet<_> = ALL_EVENTS.iter().map(|e| e.name()).collect();
        assert_eq!(events.len(), ALL_EVENTS.len());
        let metrics: HashSet<_> = ALL_METRICS.iter().map(|m| m.name()).collect();
        assert_eq!(metrics.len(), ALL_METRICS.len());
        assert!(ALL_EVENTS.iter().all(|e| e.level() != TelemetryLevel::Unspecified));
        assert!(ALL_METRICS.iter().all(|m| !m.unit().is_empty()));
    }

    #[test]
    fn plan_names_are_in_the_catalogue() {
        for name in [
            "seed_state",
            "gate_event",
            "embargo_start",
            "embargo_end",
            "breaker_open",
            "breaker_half_open",
            "breaker_closed",
            "deadline_violation",
            "pause",
            "resume",
            "isolation.violation",
            "parameter.registration",
            "parameter.violation",
        ] {
            assert!(event_name(name).is_some(), "{name} missing");
        }
        for name in [
            "kasmina.cache.hit_rate",
            "kasmina.cache.evictions",
            "isolation.dot_product",
            "isolation.hook_latency_ms",
            "kasmina.isolation.violations",
            "kasmina.kernel.fetch_latency_ms",
            "kasmina.breaker.state",
        ] {
            assert!(metric_name(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn prototype_levels_match_the_catalogue() {
        assert_eq!(EMERGENCY_CLEANUP.level(), Critical);
        assert_eq!(COMMAND_REJECTED.level(), Error);
        assert_eq!(GATE_FAILURE.level(), Warning);
        assert_eq!(SEED_PAUSED.level(), Warning);
        assert_eq!(SEED_RESUMED.level(), Info);
        assert_eq!(SEED_STAGE.level(), Info);
        assert_eq!(FALLBACK_APPLIED.level(), Warning);
    }

    #[test]
    fn gate_event_carries_gate_name_and_level() {
        let pass = gate_event("s1", SeedLifecycleGate::SeedGateG1GradientHealth, true, "");
        assert_eq!(pass.level(), Info);
        assert_eq!(pass.attributes["gate"], "SEED_GATE_G1_GRADIENT_HEALTH");
        assert_eq!(pass.attributes["passed"], "true");
        assert!(!pass.attributes.contains_key("reason"));
        let fail = gate_event("s1", SeedLifecycleGate::SeedGateG2Stability, false, "oscillation");
        assert_eq!(fail.level(), Warning);
        assert_eq!(fail.attributes["reason"], "oscillation");
        assert_eq!(fail.description, "gate_event");
    }

    #[test]
    fn points_carry_name_and_unit() {
        let p = KERNEL_FETCH_LATENCY_MS.point_with(3.5, [("seed_id", "s1")]);
        assert_eq!((p.name.as_str(), p.unit.as_str(), p.value), ("kasmina.kernel.fetch_latency_ms", "ms", 3.5));
        assert_eq!(p.attributes["seed_id"], "s1");
        assert_eq!(SEEDS_ACTIVE.point(2.0).attributes.len(), 0);
    }
}
