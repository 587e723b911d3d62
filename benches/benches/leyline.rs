//! Leyline serialisation latency and size on the reference messages (facts §11, issue: perf).
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kasmina_benches::fixtures;
use prost::Message;

fn bench_message<M: Message + Default>(c: &mut Criterion, name: &str, msg: &M) {
    let bytes = msg.encode_to_vec();
    let mut group = c.benchmark_group(format!("cpu/leyline/{name}"));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    let mut buf = Vec::with_capacity(bytes.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(msg).encode(&mut buf).ok();
            black_box(buf.len())
        })
    });
    group.bench_function("decode", |b| b.iter(|| M::decode(black_box(bytes.as_slice())).ok()));
    group.finish();
}

fn leyline(c: &mut Criterion) {
    bench_message(c, "adaptation_command", &fixtures::adaptation_command());
    bench_message(c, "system_state_8x4", &fixtures::system_state_packet(8, 4));
    bench_message(c, "system_state_10x5", &fixtures::system_state_packet(10, 5));
    bench_message(c, "telemetry_10m_5e", &fixtures::telemetry_packet(10, 5));
    bench_message(c, "telemetry_12m_5e", &fixtures::telemetry_packet(12, 5));
}

criterion_group!(benches, leyline);
criterion_main!(benches);
