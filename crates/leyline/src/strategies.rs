//! proptest strategies for Leyline messages, shared by the unit tests of [`crate::fast`] and
//! [`crate::view`]: maps with prefix keys and default values, negative numbers, oneofs.

use proptest::prelude::*;

use crate::*;

pub(crate) fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "a", "ab", "abc", "alpha", "alpha_target", "b", "lr"]).prop_map(str::to_owned)
}

pub(crate) fn float() -> impl Strategy<Value = f32> {
    // Not -0.0: the rewrite oracle cannot tell it from 0.0 (prost drops it), the peer keeps
    // it (checked against upb's bytes below).
    prop_oneof![Just(0.0f32), any::<f32>(), -1e6f32..1e6].prop_map(|f| if f == 0.0 { 0.0 } else { f })
}

pub(crate) fn seed_state() -> impl Strategy<Value = SeedState> {
    (
        ".{0,12}",
        -3i32..15,
        float(),
        float(),
        any::<u32>(),
        prop::collection::btree_map(key(), float(), 0..5),
        any::<u32>(),
    )
        .prop_map(|(seed_id, stage, gradient_norm, learning_rate, layer_depth, metrics, age_epochs)| SeedState {
            seed_id,
            stage,
            gradient_norm,
            learning_rate,
            layer_depth,
            metrics,
            age_epochs,
            risk_score: gradient_norm,
        })
}

pub(crate) fn system_state_packet() -> impl Strategy<Value = SystemStatePacket> {
    (
        prop::collection::vec(seed_state(), 0..5),
        prop::collection::btree_map(key(), float(), 0..4),
        any::<u64>(),
        ".{0,8}",
    )
        .prop_map(|(seed_states, training_metrics, global_step, packet_id)| SystemStatePacket {
            version: 1,
            seed_states,
            training_metrics,
            global_step,
            timestamp_ns: global_step / 3,
            packet_id,
            hardware_context: (global_step % 2 == 0).then(|| HardwareContext {
                device_type: "cpu".into(),
                total_memory_gb: 1.5,
                ..Default::default()
            }),
            ..Default::default()
        })
}

pub(crate) fn adaptation_command() -> impl Strategy<Value = AdaptationCommand> {
    (
        prop::collection::btree_map(key(), key(), 0..4),
        prop::collection::btree_map(key(), float(), 0..4),
        any::<i64>(),
        any::<i32>(),
        0..3u8,
    )
        .prop_map(|(annotations, parameters, seconds, nanos, which)| AdaptationCommand {
            version: 1,
            command_id: "id".into(),
            command_type: 1,
            issued_at: Some(wkt::Timestamp { seconds, nanos }),
            annotations,
            payload: match which {
                0 => Some(adaptation_command::Payload::SeedOperation(CommandSeedOperation {
                    operation: 1,
                    blueprint_id: "BP".into(),
                    parameters,
                })),
                1 => Some(adaptation_command::Payload::CircuitBreaker(CommandCircuitBreaker::default())),
                _ => None,
            },
            ..Default::default()
        })
}

pub(crate) fn telemetry_packet() -> impl Strategy<Value = TelemetryPacket> {
    (
        prop::collection::btree_map(key(), key(), 0..3),
        any::<f64>().prop_map(|f| if f == 0.0 { 0.0 } else { f }),
        0..4usize,
    )
        .prop_map(|(attributes, value, n)| TelemetryPacket {
            packet_id: "p".into(),
            level: 2,
            metrics: (0..n)
                .map(|i| MetricPoint {
                    name: format!("m{i}"),
                    value,
                    unit: String::new(),
                    attributes: attributes.clone(),
                })
                .collect(),
            events: (0..n)
                .map(|i| TelemetryEvent {
                    event_id: format!("e{i}"),
                    attributes: attributes.clone(),
                    ..Default::default()
                })
                .collect(),
            spans: vec![TraceSpan {
                name: "s".into(),
                start_time: Some(wkt::Timestamp { seconds: -5, nanos: 7 }),
                ..Default::default()
            }],
            system_health: Some(SystemHealth { status: 1, summary: String::new(), indicators: attributes }),
            ..Default::default()
        })
}
