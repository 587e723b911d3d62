//! Reading every field of the codec fixtures' views: the work a consumer that uses the whole
//! message does, and what the peer's `parse_read` measures on its side (`cargo xtask bench
//! --peer`). Each returns a value that depends on every field (an XOR of them, which cannot
//! overflow), so nothing is optimised away.

use leyline::view::{AdaptationCommandView, SystemStatePacketView, TelemetryPacketView, View, ViewError};

fn s(x: &str) -> u64 {
    x.len() as u64
}

/// Parses an `AdaptationCommand` view and reads every field.
pub fn adaptation_command(bytes: &[u8]) -> Result<u64, ViewError> {
    let v = AdaptationCommandView::parse(bytes)?;
    let mut n = u64::from(v.version) ^ s(v.command_id) ^ v.command_type as u64 ^ s(v.target_seed_id);
    n ^= u64::from(v.execution_deadline_ms) ^ s(v.issued_by);
    if let Some(t) = v.issued_at {
        n ^= t.seconds as u64 ^ t.nanos as u64;
    }
    if let Some(op) = v.seed_operation {
        n ^= op.operation as u64 ^ s(op.blueprint_id);
        n ^= op.parameters.iter().map(|(k, x)| s(k) ^ x.to_bits() as u64).fold(0, |a, b| a ^ b);
    }
    n ^= v.annotations.iter().map(|(k, x)| s(k) ^ s(x)).fold(0, |a, b| a ^ b);
    Ok(n)
}

/// Parses a `SystemStatePacket` view and reads every field.
pub fn system_state_packet(bytes: &[u8]) -> Result<u64, ViewError> {
    let v = SystemStatePacketView::parse(bytes)?;
    let mut n = u64::from(v.version) ^ u64::from(v.current_epoch) ^ u64::from(v.validation_accuracy.to_bits());
    n ^= u64::from(v.validation_loss.to_bits()) ^ v.timestamp_ns ^ s(v.packet_id) ^ v.global_step;
    n ^= u64::from(v.training_loss.to_bits()) ^ s(v.source_subsystem) ^ s(v.training_run_id) ^ s(v.experiment_name);
    if let Some(h) = v.hardware_context {
        n ^= s(h.device_type)
            ^ s(h.device_id)
            ^ u64::from(h.total_memory_gb.to_bits())
            ^ u64::from(h.compute_capability);
        n ^= u64::from(
            h.available_memory_gb.to_bits() ^ h.temperature_celsius.to_bits() ^ h.utilization_percent.to_bits(),
        );
    }
    n ^= v.training_metrics.iter().map(|(k, x)| s(k) ^ u64::from(x.to_bits())).fold(0, |a, b| a ^ b);
    for seed in v.seed_states {
        n ^= s(seed.seed_id) ^ seed.stage as u64 ^ u64::from(seed.gradient_norm.to_bits());
        n ^= u64::from(seed.learning_rate.to_bits()) ^ u64::from(seed.layer_depth) ^ u64::from(seed.age_epochs);
        n ^= u64::from(seed.risk_score.to_bits());
        n ^= seed.metrics.iter().map(|(k, x)| s(k) ^ u64::from(x.to_bits())).fold(0, |a, b| a ^ b);
    }
    Ok(n)
}

/// Parses a `TelemetryPacket` view and reads every field.
pub fn telemetry_packet(bytes: &[u8]) -> Result<u64, ViewError> {
    let v = TelemetryPacketView::parse(bytes)?;
    let mut n = s(v.packet_id) ^ s(v.source_subsystem) ^ v.level as u64;
    if let Some(t) = v.timestamp {
        n ^= t.seconds as u64 ^ t.nanos as u64;
    }
    for m in v.metrics {
        n ^= s(m.name) ^ m.value.to_bits() ^ s(m.unit);
        n ^= m.attributes.iter().map(|(k, x)| s(k) ^ s(x)).fold(0, |a, b| a ^ b);
    }
    for e in v.events {
        n ^= s(e.event_id) ^ s(e.description) ^ e.level as u64;
        n ^= e.attributes.iter().map(|(k, x)| s(k) ^ s(x)).fold(0, |a, b| a ^ b);
    }
    for sp in v.spans {
        n ^= s(sp.span_id) ^ s(sp.parent_span_id) ^ s(sp.name);
        n ^= sp.start_time.map_or(0, |t| t.seconds as u64) ^ sp.end_time.map_or(0, |t| t.nanos as u64);
        n ^= sp.attributes.iter().map(|(k, x)| s(k) ^ s(x)).fold(0, |a, b| a ^ b);
    }
    if let Some(h) = v.system_health {
        n ^= h.status as u64 ^ s(h.summary) ^ h.indicators.iter().map(|(k, x)| s(k) ^ s(x)).fold(0, |a, b| a ^ b);
    }
    Ok(n)
}

/// Parses the view of fixture `name` (one of [`crate::fixtures::codec_fixtures`]'s names, or a
/// `system_state_*` one) without reading it; `false` when the bytes do not parse.
pub fn parse_only(name: &str, bytes: &[u8]) -> bool {
    if name.starts_with("adaptation_command") {
        AdaptationCommandView::parse(bytes).is_ok()
    } else if name.starts_with("system_state") {
        SystemStatePacketView::parse(bytes).is_ok()
    } else {
        TelemetryPacketView::parse(bytes).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn every_fixture_parses_and_reads() {
        for (name, bytes) in fixtures::codec_fixtures() {
            assert!(parse_only(name, &bytes), "{name}");
        }
        assert!(adaptation_command(&fixtures::codec_fixtures()[0].1).unwrap() > 0);
        assert!(system_state_packet(&fixtures::codec_fixtures()[1].1).unwrap() > 0);
        assert!(telemetry_packet(&fixtures::codec_fixtures()[2].1).unwrap() > 0);
        assert!(system_state_packet(b"\xff").is_err());
    }
}
