//! Reference Leyline messages, built the same way as the Python prototype's benchmark fixtures.

use std::collections::BTreeMap;

use leyline::{
    AdaptationCommand, CommandSeedOperation, CommandType, MetricPoint, SeedLifecycleStage, SeedOperation, SeedState,
    SystemStatePacket, TelemetryEvent, TelemetryLevel, TelemetryPacket, adaptation_command::Payload,
};
use pbjson_types::Timestamp;

/// A fixed, non-zero timestamp (2026-09-21T14:13:20Z).
pub fn timestamp() -> Timestamp {
    Timestamp { seconds: 1_790_000_000, nanos: 123_456_789 }
}

/// A UUID-shaped command id (36 characters, like the prototype's `uuid4()` ids), unique per `n`.
pub fn command_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{:012x}", n)
}

/// GERMINATE of `BP001` with 3 float parameters, `issued_at` and 2 annotations: 214 bytes on the
/// wire (the peer's encoding), as the prototype's fixture.
pub fn adaptation_command() -> AdaptationCommand {
    AdaptationCommand {
        version: 1,
        command_id: command_id(1),
        command_type: CommandType::CommandSeed as i32,
        target_seed_id: "seed-layer2-0001".into(),
        execution_deadline_ms: 250,
        issued_at: Some(timestamp()),
        issued_by: "tamiyo".into(),
        payload: Some(Payload::SeedOperation(CommandSeedOperation {
            operation: SeedOperation::SeedOpGerminate as i32,
            blueprint_id: "BP001".into(),
            parameters: BTreeMap::from([("alpha".to_owned(), 0.5), ("lr".to_owned(), 0.001), ("rank".to_owned(), 8.0)]),
        })),
        annotations: BTreeMap::from([
            ("slot".to_owned(), "layer2.hidden".to_owned()),
            ("reason".to_owned(), "loss plateau over the last 5 epochs at layer".to_owned()),
        ]),
    }
}

/// A `SystemStatePacket` with `seeds` seed states (every field set) of `metrics` metrics each,
/// plus its 11 scalar fields (no hardware context, no training metrics). `(8, 4)` is 946 bytes on
/// the wire, as the prototype's fixture.
pub fn system_state_packet(seeds: usize, metrics: usize) -> SystemStatePacket {
    let names = ["alpha", "loss", "grad_norm", "isolation_dot", "latency_ms", "risk"];
    SystemStatePacket {
        version: 1,
        current_epoch: 42,
        validation_accuracy: 0.8731,
        validation_loss: 0.4127,
        timestamp_ns: 1_790_000_000_123_456_789,
        hardware_context: None,
        training_metrics: BTreeMap::new(),
        seed_states: (0..seeds)
            .map(|i| SeedState {
                seed_id: format!("seed-{i:04}"),
                stage: SeedLifecycleStage::SeedStageBlending as i32,
                gradient_norm: 0.25 + i as f32,
                learning_rate: 0.001,
                layer_depth: i as u32 + 1,
                metrics: names.iter().take(metrics).map(|n| ((*n).to_owned(), 0.5 + i as f32)).collect(),
                age_epochs: 3 + i as u32,
                risk_score: 0.1,
            })
            .collect(),
        packet_id: "kasmina-state-42".into(),
        global_step: 123_456,
        training_loss: 0.3911,
        source_subsystem: "tolaria".into(),
        training_run_id: "run-2026-11-26".into(),
        experiment_name: "kasmina-bench: the prototype's reference system state packet".into(),
    }
}

/// A `TelemetryPacket` with `metrics` metric points (1 attribute each) and `events` events
/// (2 attributes each), timestamp, source and level (no spans, no health). `(10, 5)` is 1010 bytes
/// on the wire, as the prototype's fixture.
pub fn telemetry_packet(metrics: usize, events: usize) -> TelemetryPacket {
    TelemetryPacket {
        packet_id: "kasmina-telemetry-00000000000000000017".into(),
        timestamp: Some(timestamp()),
        source_subsystem: "kasmina".into(),
        level: TelemetryLevel::Warning as i32,
        metrics: (0..metrics)
            .map(|i| MetricPoint {
                name: format!("kasmina.metric.{i}"),
                value: 1.5 * i as f64,
                unit: "count".into(),
                attributes: BTreeMap::from([("seed_id".to_owned(), format!("seed-{i}"))]),
            })
            .collect(),
        events: (0..events)
            .map(|i| TelemetryEvent {
                event_id: format!("evt-{}", i + 1),
                description: "gate_event".into(),
                level: TelemetryLevel::Info as i32,
                attributes: BTreeMap::from([
                    ("gate".to_owned(), "SEED_GATE_G1_GRADIENT_HEALTH".to_owned()),
                    ("seed_id".to_owned(), format!("seed-{i}")),
                ]),
            })
            .collect(),
        spans: Vec::new(),
        system_health: None,
    }
}

/// The peer's own `SystemStatePacket` with 10 seeds × 5 metrics (`system_state_10_seeds_5_metrics`
/// of `shared/vectors/leyline_messages.json`, written by Esper's Python peer): 933 bytes.
const PEER_SYSTEM_STATE_10X5_HEX: &[&str] = &[
    "0801100c1d0000603f253d0ad73e288080cc9fc2f0d6eb1832100a04637564611201301d0000a042385a3a090a026c72156f",
    "12833a42500a06736565642d301003320a0a036163631500000000320c0a05616c706861150000000032100a09677261645f",
    "6e6f726d1500000000320b0a046c6f73731500000000320b0a047269736b150000000042520a06736565642d311004320a0a",
    "0361636315cdcccc3d320c0a05616c70686115cdcccc3d32100a09677261645f6e6f726d15cdcccc3d320b0a046c6f737315",
    "cdcccc3d320b0a047269736b15cdcccc3d380142520a06736565642d321005320a0a0361636315cdcc4c3e320c0a05616c70",
    "686115cdcc4c3e32100a09677261645f6e6f726d15cdcc4c3e320b0a046c6f737315cdcc4c3e320b0a047269736b15cdcc4c",
    "3e380242520a06736565642d331006320a0a03616363159a99993e320c0a05616c706861159a99993e32100a09677261645f",
    "6e6f726d159a99993e320b0a046c6f7373159a99993e320b0a047269736b159a99993e380342520a06736565642d34100732",
    "0a0a0361636315cdcccc3e320c0a05616c70686115cdcccc3e32100a09677261645f6e6f726d15cdcccc3e320b0a046c6f73",
    "7315cdcccc3e320b0a047269736b15cdcccc3e380442520a06736565642d351003320a0a03616363150000003f320c0a0561",
    "6c706861150000003f32100a09677261645f6e6f726d150000003f320b0a046c6f7373150000003f320b0a047269736b1500",
    "00003f380542520a06736565642d361004320a0a03616363159a99193f320c0a05616c706861159a99193f32100a09677261",
    "645f6e6f726d159a99193f320b0a046c6f7373159a99193f320b0a047269736b159a99193f380642520a06736565642d3710",
    "05320a0a03616363153333333f320c0a05616c706861153333333f32100a09677261645f6e6f726d153333333f320b0a046c",
    "6f7373153333333f320b0a047269736b153333333f380742520a06736565642d381006320a0a0361636315cdcc4c3f320c0a",
    "05616c70686115cdcc4c3f32100a09677261645f6e6f726d15cdcc4c3f320b0a046c6f737315cdcc4c3f320b0a047269736b",
    "15cdcc4c3f380842520a06736565642d391007320a0a03616363156666663f320c0a05616c706861156666663f32100a0967",
    "7261645f6e6f726d156666663f320b0a046c6f7373156666663f320b0a047269736b156666663f38094a077373702d702d31",
    "50c0255d14aec73e6207746f6c617269616a0572756e2d707207766563746f7273",
];

/// The bytes of the peer's 10 seeds × 5 metrics `SystemStatePacket` (the same content as the
/// peer, so its size is the peer's by construction).
pub fn peer_system_state_10x5() -> Vec<u8> {
    let hex: String = PEER_SYSTEM_STATE_10X5_HEX.concat();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("the embedded vector is valid hex"))
        .collect()
}

/// The three codec fixtures of the prototype and the peer comparison (`cargo xtask bench
/// --peer`), by name, as the peer's bytes.
pub fn codec_fixtures() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("adaptation_command", leyline::encode_peer(&adaptation_command())),
        ("system_state_8x4", leyline::encode_peer(&system_state_packet(8, 4))),
        ("telemetry_10m_5e", leyline::encode_peer(&telemetry_packet(10, 5))),
    ]
}

#[cfg(test)]
mod tests {
    use leyline::{Message, SystemStatePacket};

    use super::*;

    #[test]
    fn peer_sizes_equal_the_prototype_fixtures() {
        assert_eq!(leyline::encode_peer(&adaptation_command()).len(), 214);
        assert_eq!(leyline::encode_peer(&system_state_packet(8, 4)).len(), 946);
        assert_eq!(leyline::encode_peer(&telemetry_packet(10, 5)).len(), 1010);
        // No default-valued map entries: prost's own bytes are the peer's.
        assert_eq!(adaptation_command().encode_to_vec(), leyline::encode_peer(&adaptation_command()));
        assert_eq!(system_state_packet(8, 4).encode_to_vec(), leyline::encode_peer(&system_state_packet(8, 4)));
        assert_eq!(telemetry_packet(10, 5).encode_to_vec(), leyline::encode_peer(&telemetry_packet(10, 5)));
    }

    #[test]
    fn fixtures_have_the_prototype_shapes() {
        let cmd = adaptation_command();
        let Some(Payload::SeedOperation(op)) = &cmd.payload else { panic!("not a seed operation") };
        assert_eq!(
            (op.operation(), op.blueprint_id.as_str(), op.parameters.len()),
            (SeedOperation::SeedOpGerminate, "BP001", 3)
        );
        assert!(cmd.issued_at.is_some());
        assert_eq!(cmd.annotations.len(), 2);
        assert_eq!(command_id(7).len(), 36);
        let ssp = system_state_packet(8, 4);
        assert_eq!(ssp.seed_states.len(), 8);
        assert!(ssp.seed_states.iter().all(|s| s.metrics.len() == 4));
        let tel = telemetry_packet(10, 5);
        assert!(tel.metrics.iter().all(|m| m.attributes.len() == 1) && tel.metrics.len() == 10);
        assert!(tel.events.iter().all(|e| e.attributes.len() == 2) && tel.events.len() == 5);
    }

    #[test]
    fn the_peer_vector_reencodes_to_the_peer_bytes() {
        let bytes = peer_system_state_10x5();
        assert_eq!(bytes.len(), 933);
        let msg = SystemStatePacket::decode(bytes.as_slice()).unwrap();
        assert_eq!(msg.seed_states.len(), 10);
        assert_eq!(leyline::encode_peer(&msg), bytes);
    }
}
