//! Fill the normal queue, then emit CRITICAL packets from several threads: every one arrives, in
//! order per producer, and the drop counter equals what was dropped.

use std::collections::HashMap;
use std::sync::Barrier;

use kasmina_telemetry::{EmitOutcome, HealthInputs, MemorySink, Telemetry, TelemetryAssembler, TelemetryConfig, names};
use leyline::{TelemetryLevel, TelemetryPacket};

const CAPACITY: usize = 64;
const PRODUCERS: usize = 4;
const PER_PRODUCER: usize = 500;

fn info_packet(assembler: &TelemetryAssembler) -> TelemetryPacket {
    assembler.assemble(&[names::SEEDS_ACTIVE.point(1.0)], &[names::SEED_STATE.event()], &HealthInputs::default())
}

fn run(telemetry: &Telemetry, sink: &MemorySink) {
    let assembler = TelemetryAssembler::default();
    for _ in 0..CAPACITY {
        assert_eq!(telemetry.emit(info_packet(&assembler)), EmitOutcome::Queued);
    }
    assert_eq!(telemetry.stats().normal_pending, CAPACITY);

    let barrier = Barrier::new(PRODUCERS);
    let dropped_by_producers: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let (telemetry, assembler, barrier) = (telemetry.clone(), &assembler, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let mut dropped = 0;
                    for seq in 0..PER_PRODUCER {
                        let event = names::ISOLATION_VIOLATION
                            .event_with([("producer", producer.to_string()), ("seq", seq.to_string())]);
                        let packet = assembler.assemble(&[], &[event], &HealthInputs::default());
                        assert_eq!(telemetry.emit(packet), EmitOutcome::Bypassed);
                        // Normal traffic keeps coming while the queue is full: all of it is dropped.
                        if telemetry.emit(info_packet(assembler)) == EmitOutcome::Dropped {
                            dropped += 1;
                        }
                    }
                    dropped
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });

    telemetry.flush().unwrap();
    let stats = telemetry.stats();
    assert_eq!(dropped_by_producers, (PRODUCERS * PER_PRODUCER) as u64);
    assert_eq!(stats.dropped, dropped_by_producers);
    assert_eq!(stats.bypassed, (PRODUCERS * PER_PRODUCER) as u64);
    assert_eq!(stats.emitted, stats.queued + stats.bypassed + stats.spilled + stats.dropped);

    let packets = sink.packets();
    assert_eq!(packets.len(), CAPACITY + PRODUCERS * PER_PRODUCER);
    let mut next_seq: HashMap<usize, usize> = HashMap::new();
    let mut critical = 0;
    for packet in &packets {
        if packet.level() != TelemetryLevel::Critical {
            continue;
        }
        critical += 1;
        let attrs = &packet.events[0].attributes;
        let producer: usize = attrs["producer"].parse().unwrap();
        let seq: usize = attrs["seq"].parse().unwrap();
        let expected = next_seq.entry(producer).or_insert(0);
        assert_eq!(seq, *expected, "producer {producer} out of order");
        *expected += 1;
    }
    assert_eq!(critical, PRODUCERS * PER_PRODUCER);
    assert!(next_seq.values().all(|n| *n == PER_PRODUCER));
}

#[test]
fn critical_survives_saturation_with_manual_drain() {
    let sink = MemorySink::new();
    let telemetry =
        Telemetry::new(sink.clone(), TelemetryConfig { queue_capacity: CAPACITY, ..Default::default() }).unwrap();
    run(&telemetry, &sink);
    // With manual delivery the bypass drains first, so every CRITICAL precedes the queued INFO.
    let packets = sink.packets();
    assert!(packets[..PRODUCERS * PER_PRODUCER].iter().all(|p| p.level() == TelemetryLevel::Critical));
}

/// A subscriber that does not read while CRITICAL packets pour in is cut off once its queue of
/// them is full (memory stays bounded); the sink still gets every one of them.
#[test]
fn critical_survives_saturation_with_a_stalled_subscriber() {
    let sink = MemorySink::new();
    let telemetry = Telemetry::new(
        sink.clone(),
        TelemetryConfig { queue_capacity: CAPACITY, subscriber_capacity: 8, ..Default::default() },
    )
    .unwrap();
    let subscription = telemetry.subscribe(TelemetryLevel::Info);
    run(&telemetry, &sink);
    assert!(subscription.evicted(), "a subscriber that never reads is cut off");
    assert!(subscription.pending() <= 16, "bounded: {}", subscription.pending());
    assert_eq!(telemetry.stats().subscribers_evicted, 1);
    let critical = sink.packets().iter().filter(|p| p.level() == TelemetryLevel::Critical).count();
    assert_eq!(critical, PRODUCERS * PER_PRODUCER, "the sink misses nothing");
}
