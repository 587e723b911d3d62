//! The JSON-lines sink: one valid canonical-JSON packet per line that parses back to the packet.

use std::io::BufRead;

use kasmina_telemetry::{
    HealthInputs, JsonLinesSink, Telemetry, TelemetryAssembler, TelemetryConfig, TelemetrySink, names,
};
use leyline::{SeedLifecycleGate, TelemetryLevel, TelemetryPacket};
use proptest::prelude::*;

fn sample(assembler: &TelemetryAssembler, i: usize) -> TelemetryPacket {
    let metrics = [
        names::SEEDS_ACTIVE.point(i as f64),
        names::KERNEL_FETCH_LATENCY_MS.point_with(3.25, [("seed_id", "seed-1")]),
        names::ISOLATION_DOT_PRODUCT.point(1e-9),
    ];
    let events = [
        names::gate_event("seed-1", SeedLifecycleGate::SeedGateG2Stability, false, "loss \"oscillates\"\n"),
        names::EMERGENCY_CLEANUP.event_with([("include_teacher", "true")]),
    ];
    assembler.assemble(&metrics, &events, &HealthInputs { violations: 2, live_seeds: 3, ..Default::default() })
}

#[test]
fn file_sink_writes_one_parseable_packet_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telemetry.jsonl");
    let assembler = TelemetryAssembler::default();
    let sent: Vec<_> = (0..5).map(|i| sample(&assembler, i)).collect();
    {
        let telemetry = Telemetry::new(JsonLinesSink::create(&path).unwrap(), TelemetryConfig::default()).unwrap();
        for p in &sent {
            telemetry.emit(p.clone());
        }
        telemetry.flush().unwrap();
    }
    let file = std::fs::File::open(&path).unwrap();
    let lines: Vec<String> = std::io::BufReader::new(file).lines().map(Result::unwrap).collect();
    assert_eq!(lines.len(), sent.len());
    let mut back: Vec<TelemetryPacket> = Vec::new();
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        // Canonical JSON: lowerCamelCase fields, enums by name, RFC 3339 timestamps.
        assert_eq!(value["sourceSubsystem"], "kasmina");
        assert_eq!(value["level"], "TELEMETRY_LEVEL_CRITICAL");
        assert_eq!(value["systemHealth"]["status"], "HEALTH_STATUS_UNHEALTHY");
        assert_eq!(value["systemHealth"]["indicators"]["priority"], "MESSAGE_PRIORITY_CRITICAL");
        let ts = value["timestamp"].as_str().unwrap();
        assert!(ts.contains('T') && (ts.ends_with('Z') || ts.ends_with("+00:00")), "{ts}");
        back.push(serde_json::from_str(line).unwrap());
    }
    // All packets are CRITICAL, so they all took the bypass, in emission order.
    assert_eq!(back, sent);
}

#[test]
fn append_mode_keeps_earlier_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("append.jsonl");
    let assembler = TelemetryAssembler::default();
    for i in 0..2 {
        let sink = JsonLinesSink::append_to(&path).unwrap();
        sink.send(&sample(&assembler, i)).unwrap();
        sink.flush().unwrap();
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
}

#[test]
fn opening_a_missing_directory_is_a_typed_error() {
    let err = JsonLinesSink::create("/nonexistent-dir/x/telemetry.jsonl").unwrap_err();
    assert!(matches!(err, kasmina_telemetry::Error::Open { .. }), "{err}");
}

fn level() -> impl Strategy<Value = TelemetryLevel> {
    prop::sample::select(TelemetryLevel::ALL.to_vec())
}

proptest! {
    #[test]
    fn jsonl_round_trips_any_packet(
        values in prop::collection::vec(-1e12f64..1e12, 0..12),
        events in prop::collection::vec((level(), "[a-z_.]{1,16}", "\\PC{0,12}"), 0..6),
        violations in 0u64..5,
    ) {
        let names = names::ALL_METRICS;
        let metrics: Vec<_> = values.iter().enumerate().map(|(i, v)| names[i % names.len()].point(*v)).collect();
        let events: Vec<_> = events
            .into_iter()
            .map(|(level, key, value)| names::SEED_STATE.event_at(level, [(key, value)]))
            .collect();
        let packet = TelemetryAssembler::default().assemble(&metrics, &events, &HealthInputs { violations, ..Default::default() });
        let line = JsonLinesSink::encode(&packet).unwrap();
        prop_assert!(!line.contains('\n'));
        let back: TelemetryPacket = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(back, packet);
    }
}
