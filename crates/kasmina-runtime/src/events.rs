//! Telemetry events the runtime emits, built from `kasmina_telemetry::names` (the one place
//! where names and levels live).

use kasmina_telemetry::names;
use leyline::{GateEvent, SeedLifecycleGate, SeedLifecycleStage as Stage, TelemetryEvent, TelemetryLevel};

/// `gate_event`: INFO on a pass, WARNING on a failure; attributes `seed_id`, `gate` (enum name),
/// `passed`, the gate's own attributes, `reason` when non-empty, `from_stage`, `to_stage`.
pub(crate) fn gate_event(e: &GateEvent) -> TelemetryEvent {
    let gate = SeedLifecycleGate::try_from(e.gate).unwrap_or(SeedLifecycleGate::SeedGateUnknown);
    let mut attrs: Vec<(String, String)> = e.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    attrs.push(("seed_id".into(), e.seed_id.clone()));
    attrs.push(("gate".into(), gate.as_str_name().into()));
    attrs.push(("passed".into(), e.passed.to_string()));
    attrs.push(("from_stage".into(), stage_name(e.from_stage).into()));
    attrs.push(("to_stage".into(), stage_name(e.to_stage).into()));
    if !e.reason.is_empty() {
        attrs.push(("reason".into(), e.reason.clone()));
    }
    let level = if e.passed { TelemetryLevel::Info } else { TelemetryLevel::Warning };
    names::GATE_EVENT.event_at(level, attrs)
}

/// `gate_failure` (WARNING): seed_id, gate, reason.
pub(crate) fn gate_failure(e: &GateEvent) -> TelemetryEvent {
    let gate = SeedLifecycleGate::try_from(e.gate).unwrap_or(SeedLifecycleGate::SeedGateUnknown);
    names::GATE_FAILURE.event_with([
        ("seed_id", e.seed_id.clone()),
        ("gate", gate.as_str_name().to_owned()),
        ("reason", e.reason.clone()),
    ])
}

/// `seed_state` (plan) and `seed_stage` (prototype dashboards): seed_id, stage, alpha.
pub(crate) fn seed_state(seed_id: &str, slot: &str, stage: Stage, alpha: f64) -> [TelemetryEvent; 2] {
    let attrs = [
        ("seed_id", seed_id.to_owned()),
        ("slot", slot.to_owned()),
        ("stage", stage.as_str_name().to_owned()),
        ("alpha", format!("{alpha:.4}")),
    ];
    [names::SEED_STATE.event_with(attrs.clone()), names::SEED_STAGE.event_with(attrs)]
}

pub(crate) fn parameter_violation(v: &kasmina_registry::Violation) -> TelemetryEvent {
    names::PARAMETER_VIOLATION.event_with([
        ("seed_id", v.seed_id.clone()),
        ("reason", v.reason.code().to_owned()),
        ("count", v.count.to_string()),
        ("threshold_reached", v.threshold_reached.to_string()),
    ])
}

pub(crate) fn stage_name(stage: i32) -> &'static str {
    Stage::try_from(stage).map(|s| s.as_str_name()).unwrap_or("SEED_STAGE_UNKNOWN")
}

/// `illegal_transition` (ERROR): a move the table or the gates' evidence does not allow.
pub(crate) fn illegal_transition(
    seed_id: &str,
    from: Stage,
    to: Stage,
    error: &kasmina_lifecycle::Error,
) -> TelemetryEvent {
    names::ILLEGAL_TRANSITION.event_with([
        ("seed_id", seed_id.to_owned()),
        ("from", from.as_str_name().to_owned()),
        ("to", to.as_str_name().to_owned()),
        ("error", error.to_string()),
    ])
}

/// `command_receipt`: the final receipt of a command (decisions D14), with its provenance.
pub(crate) fn command_receipt(r: &leyline::CommandReceipt) -> TelemetryEvent {
    let provenance = r.provenance.clone().unwrap_or_default();
    let level = if r.accepted { TelemetryLevel::Info } else { TelemetryLevel::Warning };
    names::COMMAND_RECEIPT.event_at(
        level,
        [
            ("command_id", r.command_id.clone()),
            ("accepted", r.accepted.to_string()),
            ("reason", r.reason.clone()),
            ("status", r.status().as_str_name().to_owned()),
            ("seed_id", r.seed_id.clone()),
            ("stage", stage_name(r.stage).to_owned()),
            ("key_id", provenance.key_id.clone()),
            ("form", provenance.form().as_str_name().to_owned()),
            ("transport", provenance.transport().as_str_name().to_owned()),
        ],
    )
}
