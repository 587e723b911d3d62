//! Reference Leyline messages, built the same way as the Python prototype's benchmark fixtures.

use std::collections::BTreeMap;

use leyline::{
    AdaptationCommand, CommandSeedOperation, CommandType, HardwareContext, MetricPoint, SeedLifecycleStage,
    SeedOperation, SeedState, SystemHealth, SystemStatePacket, TelemetryEvent, TelemetryLevel, TelemetryPacket,
    adaptation_command::Payload,
};
use pbjson_types::Timestamp;

/// A fixed, non-zero timestamp (2026-09-21T14:13:20Z).
pub fn timestamp() -> Timestamp {
    Timestamp { seconds: 1_790_000_000, nanos: 123_456_789 }
}

/// GERMINATE of `BP001` with 3 float parameters, `issued_at` and 2 annotations.
pub fn adaptation_command() -> AdaptationCommand {
    AdaptationCommand {
        version: 1,
        command_id: "cmd-0000000000000001".into(),
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
            ("slot".to_owned(), "layer2".to_owned()),
            ("policy".to_owned(), "tamiyo-v3".to_owned()),
        ]),
    }
}

/// A `SystemStatePacket` with `seeds` seed states of `metrics` metrics each, plus its scalars.
pub fn system_state_packet(seeds: usize, metrics: usize) -> SystemStatePacket {
    let names = ["alpha", "loss", "grad_norm", "isolation_dot", "latency_ms", "risk"];
    SystemStatePacket {
        version: 1,
        current_epoch: 42,
        validation_accuracy: 0.8731,
        validation_loss: 0.4127,
        timestamp_ns: 1_790_000_000_123_456_789,
        hardware_context: Some(HardwareContext {
            device_type: "cpu".into(),
            device_id: "0".into(),
            total_memory_gb: 24.0,
            available_memory_gb: 17.5,
            ..Default::default()
        }),
        training_metrics: BTreeMap::from([("lr".to_owned(), 0.001), ("throughput".to_owned(), 1234.5)]),
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
        experiment_name: "kasmina-bench".into(),
    }
}

/// A `TelemetryPacket` with `metrics` metric points (1 attribute each) and `events` events
/// (2 attributes each), timestamp, source and level.
pub fn telemetry_packet(metrics: usize, events: usize) -> TelemetryPacket {
    TelemetryPacket {
        packet_id: "kasmina-telemetry-17".into(),
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
        system_health: Some(SystemHealth {
            status: leyline::HealthStatus::Healthy as i32,
            summary: "nominal".into(),
            indicators: BTreeMap::from([("seeds".to_owned(), "1".to_owned())]),
        }),
    }
}
