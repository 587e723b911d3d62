//! Leyline serialisation latency and size on the reference messages (the design's budgets:
//! serialisation < 80 µs, message < 280 B; issue 9).
//!
//! The fixtures mirror the Python prototype's (`shared/perf/python-prototype.md`): the reported
//! size (criterion's `Bytes` throughput) is the length of [`leyline::encode_peer`], the exact
//! bytes Esper's Python peer writes for the same content (214 / 946 / 1010 B for the prototype's
//! three fixtures). `encode` is prost's encoder (what Kasmina sends; for these fixtures its bytes
//! equal the peer's), `encode_peer` the peer-exact encoder (signatures, golden vectors), `decode`
//! prost's decoder into owned structs, `build` constructing the message (the prototype's "build").
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kasmina_benches::fixtures;
use leyline::{Message, Name, SystemStatePacket};

fn bench_message<M: Message + Name + Default>(c: &mut Criterion, name: &str, build: impl Fn() -> M) {
    let msg = build();
    let peer = leyline::encode_peer(&msg);
    let mut group = c.benchmark_group(format!("cpu/leyline/{name}"));
    group.throughput(Throughput::Bytes(peer.len() as u64));
    let mut buf = Vec::with_capacity(peer.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&msg).encode(&mut buf).ok();
            black_box(buf.len())
        })
    });
    group.bench_function("encode_peer", |b| b.iter(|| leyline::encode_peer(black_box(&msg))));
    group.bench_function("decode", |b| b.iter(|| M::decode(black_box(peer.as_slice())).ok()));
    group.bench_function("build", |b| b.iter(|| black_box(build())));
    group.finish();
}

fn leyline(c: &mut Criterion) {
    bench_message(c, "adaptation_command", fixtures::adaptation_command);
    bench_message(c, "system_state_8x4", || fixtures::system_state_packet(8, 4));
    bench_message(c, "system_state_10x5", || fixtures::system_state_packet(10, 5));
    bench_message(c, "telemetry_10m_5e", || fixtures::telemetry_packet(10, 5));
    bench_message(c, "telemetry_12m_5e", || fixtures::telemetry_packet(12, 5));
    // The peer's own 10 × 5 packet (same content as the peer, 933 B).
    let peer = fixtures::peer_system_state_10x5();
    let msg = SystemStatePacket::decode(peer.as_slice()).expect("the peer vector decodes");
    assert_eq!(leyline::encode_peer(&msg), peer, "peer bytes round-trip");
    bench_message(c, "system_state_10x5_peer_vector", || msg.clone());
}

criterion_group!(benches, leyline);
criterion_main!(benches);
