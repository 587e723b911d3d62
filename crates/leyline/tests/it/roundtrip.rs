//! Every message round-trips through protobuf bytes and through canonical JSON.

use std::collections::BTreeMap;

use leyline::wkt::{Duration, Struct, Timestamp, Value, value::Kind};
use leyline::*;
use proptest::prelude::*;
use serde::{Serialize, de::DeserializeOwned};

fn ts() -> Option<Timestamp> {
    Some(Timestamp { seconds: 1_790_000_000, nanos: 5_000 })
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn roundtrip<M>(msg: M)
where
    M: Message
        + Name
        + leyline::fast::FastEncode
        + Default
        + PartialEq
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let bytes = msg.encode_to_vec();
    assert_eq!(M::decode(bytes.as_slice()).unwrap(), msg, "binary round trip");
    let peer = encode_peer(&msg);
    assert_eq!(M::decode(peer.as_slice()).unwrap(), msg, "peer-encoding round trip");
    let json = serde_json::to_string(&msg).unwrap();
    let back: M = serde_json::from_str(&json).unwrap();
    assert_eq!(back, msg, "JSON round trip of {json}");
}

#[test]
fn every_message_round_trips() {
    let seed_state = SeedState {
        seed_id: "seed-1".into(),
        stage: SeedLifecycleStage::SeedStageBlending as i32,
        gradient_norm: 0.5,
        learning_rate: 1e-3,
        layer_depth: 2,
        metrics: [("alpha".to_owned(), 0.25f32)].into(),
        age_epochs: 4,
        risk_score: 0.1,
    };
    let hw = HardwareContext {
        device_type: "cuda".into(),
        device_id: "0".into(),
        total_memory_gb: 80.0,
        available_memory_gb: 60.0,
        temperature_celsius: 51.0,
        utilization_percent: 93.5,
        compute_capability: 90,
    };
    roundtrip(hw.clone());
    roundtrip(seed_state.clone());
    roundtrip(SystemStatePacket {
        version: 1,
        current_epoch: 7,
        validation_accuracy: 0.9,
        validation_loss: 0.3,
        timestamp_ns: u64::MAX,
        hardware_context: Some(hw),
        training_metrics: [("lr".to_owned(), 0.01f32)].into(),
        seed_states: vec![seed_state.clone(), seed_state],
        packet_id: "p".into(),
        global_step: 1 << 40,
        training_loss: 0.2,
        source_subsystem: "tolaria".into(),
        training_run_id: "run".into(),
        experiment_name: "exp".into(),
    });
    let seed_op = CommandSeedOperation {
        operation: SeedOperation::SeedOpGerminate as i32,
        blueprint_id: "BP001".into(),
        parameters: [("alpha".to_owned(), 0.5f32)].into(),
    };
    roundtrip(seed_op.clone());
    let opt =
        CommandOptimizerAdjustment { optimizer_id: "seed".into(), hyperparameters: [("lr".to_owned(), 0.1f32)].into() };
    roundtrip(opt.clone());
    let cb =
        CommandCircuitBreaker { desired_state: CircuitBreakerState::CircuitStateOpen as i32, rationale: "ops".into() };
    roundtrip(cb.clone());
    let rollback = Struct {
        fields: [
            ("seed_id".to_owned(), Value { kind: Some(Kind::StringValue("seed-1".into())) }),
            ("step".to_owned(), Value { kind: Some(Kind::NumberValue(12.0)) }),
        ]
        .into(),
    };
    for payload in [
        adaptation_command::Payload::SeedOperation(seed_op),
        adaptation_command::Payload::OptimizerAdjustment(opt),
        adaptation_command::Payload::CircuitBreaker(cb),
        adaptation_command::Payload::RollbackPayload(rollback),
    ] {
        roundtrip(AdaptationCommand {
            version: 1,
            command_id: "c-1".into(),
            command_type: CommandType::CommandSeed as i32,
            target_seed_id: "seed-1".into(),
            execution_deadline_ms: 250,
            issued_at: ts(),
            issued_by: "tamiyo".into(),
            payload: Some(payload),
            annotations: map(&[("slot", "layer2"), ("signature", "abc=")]),
        });
    }
    roundtrip(MitigationAction { action_type: "cull".into(), rationale: "regression".into() });
    roundtrip(FieldReport {
        version: 1,
        report_id: "r".into(),
        command_id: "c".into(),
        training_run_id: "run".into(),
        seed_id: "s".into(),
        blueprint_id: "BP001".into(),
        outcome: FieldReportOutcome::Regression as i32,
        metrics: [("acc".to_owned(), 0.5f32)].into(),
        observation_window_epochs: 3,
        issued_at: ts(),
        tamiyo_policy_version: "v3".into(),
        follow_up_actions: vec![MitigationAction { action_type: "a".into(), rationale: "b".into() }],
        notes: "n".into(),
    });
    roundtrip(BlueprintParameterBounds { min_value: -1.0, max_value: 1.0 });
    roundtrip(BlueprintDescriptor {
        blueprint_id: "BP002".into(),
        name: "low-rank".into(),
        tier: BlueprintTier::Experimental as i32,
        allowed_parameters: [("rank".to_owned(), BlueprintParameterBounds { min_value: 1.0, max_value: 64.0 })].into(),
        risk: 0.2,
        stage: 1,
        quarantine_only: true,
        approval_required: true,
        description: "d".into(),
    });
    roundtrip(BusEnvelope {
        message_type: BusMessageType::Telemetry as i32,
        payload: vec![0, 1, 2, 255],
        attributes: map(&[("k", "v")]),
    });
    roundtrip(PolicyUpdate {
        version: 1,
        policy_id: "p".into(),
        training_run_id: "r".into(),
        issued_at: ts(),
        tamiyo_policy_version: "v".into(),
        payload: vec![9; 16],
    });
    let metric = MetricPoint {
        name: "kasmina.seeds.active".into(),
        value: 2.0,
        unit: "count".into(),
        attributes: map(&[("a", "b")]),
    };
    roundtrip(metric.clone());
    let event = TelemetryEvent {
        event_id: "evt-1".into(),
        description: "gate_event".into(),
        level: TelemetryLevel::Warning as i32,
        attributes: map(&[("gate", "SEED_GATE_G1_GRADIENT_HEALTH")]),
    };
    roundtrip(event.clone());
    let span = TraceSpan {
        span_id: "s".into(),
        parent_span_id: "p".into(),
        name: "step".into(),
        start_time: ts(),
        end_time: ts(),
        attributes: map(&[]),
    };
    roundtrip(span.clone());
    let health = SystemHealth {
        status: HealthStatus::Degraded as i32,
        summary: "fallback".into(),
        indicators: map(&[("priority", "MESSAGE_PRIORITY_HIGH")]),
    };
    roundtrip(health.clone());
    roundtrip(TelemetryPacket {
        packet_id: "kasmina-telemetry-0".into(),
        timestamp: ts(),
        source_subsystem: "kasmina".into(),
        level: TelemetryLevel::Warning as i32,
        metrics: vec![metric],
        events: vec![event],
        spans: vec![span],
        system_health: Some(health),
    });
    roundtrip(EventEnvelope {
        event_id: "e".into(),
        event_type: "t".into(),
        source_subsystem: "kasmina".into(),
        created_at: ts(),
        processing_deadline: Some(Duration { seconds: 1, nanos: 0 }),
        ttl: Some(Duration { seconds: 300, nanos: 0 }),
        payload: vec![1, 2, 3],
        payload_type: "x".into(),
        content_encoding: "proto".into(),
        priority: MessagePriority::Critical as i32,
        routing_keys: vec!["a".into(), "b".into()],
        correlation_id: "c".into(),
        delivery_guarantee: DeliveryGuarantee::AtLeastOnce as i32,
        max_attempts: 3,
        current_attempt: 1,
    });
    roundtrip(constants::PERFORMANCE_BUDGETS);
    roundtrip(constants::MEMORY_BUDGETS);
    roundtrip(constants::SYSTEM_LIMITS);
    roundtrip(GateEvent {
        gate: SeedLifecycleGate::SeedGateG2Stability as i32,
        passed: false,
        reason: "loss variance above threshold".into(),
        seed_id: "seed-1".into(),
        attributes: map(&[("variance", "0.31")]),
        timestamp: ts(),
        from_stage: SeedLifecycleStage::SeedStageBlending as i32,
        to_stage: SeedLifecycleStage::SeedStageShadowing as i32,
    });
    roundtrip(SignedCommand { command: vec![8, 1], signature: "sig=".into(), key_id: "default".into() });
    roundtrip(CommandReceipt {
        command_id: "c".into(),
        accepted: true,
        reason: "ok".into(),
        seed_id: "seed-1".into(),
        stage: SeedLifecycleStage::SeedStageGerminated as i32,
        status: ReceiptStatus::Applied as i32,
        provenance: Some(Provenance {
            key_id: "default".into(),
            form: CommandForm::Envelope as i32,
            transport: CommandTransport::Grpc as i32,
        }),
    });
    roundtrip(CommandReceipt {
        command_id: "q".into(),
        accepted: true,
        reason: "queued".into(),
        status: ReceiptStatus::Queued as i32,
        provenance: Some(Provenance::default()),
        ..Default::default()
    });
    roundtrip(ReceiptRequest { command_id: "c".into() });
    roundtrip(SystemStateRequest {});
    roundtrip(TelemetryRequest { min_level: TelemetryLevel::Error as i32 });
    roundtrip(HealthRequest {});
}

#[test]
fn json_uses_the_canonical_mapping() {
    let event = TelemetryEvent {
        event_id: "evt-1".into(),
        description: "breaker_open".into(),
        level: TelemetryLevel::Critical as i32,
        attributes: BTreeMap::new(),
    };
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["eventId"], "evt-1");
    assert_eq!(json["level"], "TELEMETRY_LEVEL_CRITICAL");
    let packet = SystemStatePacket { timestamp_ns: 5, ..Default::default() };
    // 64-bit integers are strings in protobuf's JSON mapping.
    assert_eq!(serde_json::to_value(&packet).unwrap()["timestampNs"], "5");
    // Proto field names are accepted on input as well.
    let parsed: SeedState = serde_json::from_str(r#"{"seed_id":"s","stage":"SEED_STAGE_TRAINING"}"#).unwrap();
    assert_eq!(parsed.stage(), SeedLifecycleStage::SeedStageTraining);
}

#[test]
fn unknown_enum_values_survive_a_round_trip() {
    // A newer peer may send a stage this build does not know; it must decode and re-encode.
    let state = SeedState { stage: 42, ..Default::default() };
    let back = SeedState::decode(state.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.stage, 42);
    assert_eq!(back.stage(), SeedLifecycleStage::SeedStageUnknown);
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = AdaptationCommand::decode(bytes.as_slice());
        let _ = SignedCommand::decode(bytes.as_slice());
        let _ = TelemetryPacket::decode(bytes.as_slice());
        let _ = SystemStatePacket::decode(bytes.as_slice());
    }

    #[test]
    fn adaptation_commands_round_trip(
        id in "[a-z0-9-]{0,24}",
        ty in 0i32..8,
        deadline in any::<u32>(),
        secs in 0i64..4_000_000_000,
        ann in proptest::collection::btree_map("[a-z]{1,8}", "[ -~]{0,16}", 0..4),
        params in proptest::collection::btree_map("[a-z]{1,8}", -1e6f32..1e6, 0..4),
    ) {
        let cmd = AdaptationCommand {
            version: 1,
            command_id: id,
            command_type: ty,
            execution_deadline_ms: deadline,
            issued_at: Some(Timestamp { seconds: secs, nanos: 0 }),
            payload: Some(adaptation_command::Payload::SeedOperation(CommandSeedOperation {
                operation: SeedOperation::SeedOpGerminate as i32,
                blueprint_id: "BP001".into(),
                parameters: params,
            })),
            annotations: ann,
            ..Default::default()
        };
        let back = AdaptationCommand::decode(cmd.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(&back, &cmd);
        let json: AdaptationCommand = serde_json::from_str(&serde_json::to_string(&cmd).unwrap()).unwrap();
        prop_assert_eq!(json, cmd);
    }
}
