//! Telemetry: packet assembly and enqueue throughput of the normal queue and the emergency bypass
//! (issue 7; target ≥ 1 M events/s for enqueue).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kasmina_telemetry::{HealthInputs, JsonLinesSink, NullSink, Telemetry, TelemetryAssembler, TelemetryConfig, names};
use leyline::{SeedLifecycleGate, TelemetryLevel, TelemetryPacket};

/// Packets emitted per timed chunk; the queue is drained (untimed) between chunks.
const CHUNK: u64 = 8_192;

fn inputs() -> (Vec<leyline::MetricPoint>, Vec<leyline::TelemetryEvent>, HealthInputs) {
    let metrics = names::ALL_METRICS[..12].iter().enumerate().map(|(i, m)| m.point(i as f64 * 1.5)).collect();
    let events = vec![
        names::SEED_OPERATION.event_with([
            ("command_type", "COMMAND_SEED"),
            ("operation", "SEED_OP_GERMINATE"),
            ("seed_id", "seed-1"),
            ("blueprint_id", "BP001"),
        ]),
        names::gate_event("seed-1", SeedLifecycleGate::SeedGateG0Sanity, true, ""),
        names::SEED_STATE.event_with([("seed_id", "seed-1"), ("stage", "SEED_STAGE_GERMINATED"), ("alpha", "0.0000")]),
        names::SEED_STATE.event_with([("seed_id", "seed-2"), ("stage", "SEED_STAGE_TRAINING"), ("alpha", "0.0000")]),
        names::FALLBACK_APPLIED.event_with([("lat", "12.5")]),
    ];
    let health = HealthInputs { fallback_used: true, live_seeds: 2, ..Default::default() };
    (metrics, events, health)
}

fn one_event_packet(level: TelemetryLevel) -> TelemetryPacket {
    TelemetryAssembler::default().assemble(
        &[],
        &[names::SEED_STATE.event_at(level, [("seed_id", "seed-1")])],
        &HealthInputs::default(),
    )
}

/// Emits `iters` copies of `template`, timing only the `emit` calls.
fn enqueue(telemetry: &Telemetry, template: &TelemetryPacket, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let packets: Vec<_> = (0..n).map(|_| template.clone()).collect();
        let start = Instant::now();
        for packet in packets {
            black_box(telemetry.emit(packet));
        }
        total += start.elapsed();
        telemetry.drain().ok();
        left -= n;
    }
    total
}

fn telemetry(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu/telemetry");
    let assembler = TelemetryAssembler::default();
    let (metrics, events, health) = inputs();
    group.throughput(Throughput::Elements(1));
    group.bench_function("assemble_12m_5e", |b| {
        b.iter(|| assembler.assemble(black_box(&metrics), black_box(&events), black_box(&health)))
    });
    let packet = assembler.assemble(&metrics, &events, &health);
    group.bench_function("jsonl_encode_12m_5e", |b| b.iter(|| JsonLinesSink::encode(black_box(&packet)).ok()));

    let config = TelemetryConfig { queue_capacity: CHUNK as usize, ..Default::default() };
    let transport = Telemetry::new(NullSink, config).expect("valid config");
    let normal = one_event_packet(TelemetryLevel::Info);
    group.bench_function("enqueue_normal", |b| b.iter_custom(|iters| enqueue(&transport, &normal, iters)));
    let critical = one_event_packet(TelemetryLevel::Critical);
    group.bench_function("enqueue_critical", |b| b.iter_custom(|iters| enqueue(&transport, &critical, iters)));
    group.finish();
}

criterion_group!(benches, telemetry);
criterion_main!(benches);
