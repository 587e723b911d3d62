//! Leyline serialisation latency and size on the reference messages (the design's budgets:
//! serialisation < 80 µs, message < 280 B; issues 9 and 20).
//!
//! The fixtures mirror the Python prototype's (`shared/perf/python-prototype.md`): the reported
//! size (criterion's `Bytes` throughput) is the length of the peer's bytes ([`leyline::encode_peer`])
//! for the same content (214 / 946 / 1010 B for the prototype's three fixtures).
//!
//! - `encode`: the generated one-pass encoder ([`leyline::fast::Encoder`], reused), prost's bytes;
//!   `encode_peer`: the same encoder in the peer's form; `encode_prost`: prost's own encoder into
//!   a reused `Vec`.
//! - `decode`: [`leyline::view`] parse (the whole message checked, nothing allocated);
//!   `decode_read`: parse plus reading every field (`kasmina_benches::read_all`);
//!   `decode_owned`: prost's decoding into owned structs.
//! - `build`: constructing the owned message (the prototype's "build").
//!
//! `cargo xtask bench --peer` runs the three codec fixtures interleaved with the peer's upb.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kasmina_benches::{fixtures, read_all};
use leyline::fast::{Encoder, FastEncode};
use leyline::view::ViewError;
use leyline::{Message, Name, SystemStatePacket};

type ReadAll = fn(&[u8]) -> Result<u64, ViewError>;

fn bench_message<M: Message + Name + FastEncode + Default>(
    c: &mut Criterion,
    name: &str,
    build: impl Fn() -> M,
    read: Option<ReadAll>,
) {
    let msg = build();
    let peer = leyline::encode_peer(&msg);
    let mut group = c.benchmark_group(format!("cpu/leyline/{name}"));
    group.throughput(Throughput::Bytes(peer.len() as u64));
    let mut encoder = Encoder::new();
    group.bench_function("encode", |b| b.iter(|| encoder.encode(black_box(&msg)).len()));
    group.bench_function("encode_peer", |b| b.iter(|| encoder.encode_peer(black_box(&msg)).len()));
    let mut buf = Vec::with_capacity(peer.len());
    group.bench_function("encode_prost", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&msg).encode(&mut buf).ok();
            black_box(buf.len())
        })
    });
    if let Some(read) = read {
        // The view of this fixture: parse alone, then parse and read every field.
        let parse = |bytes: &[u8]| read_all::parse_only(name, bytes);
        group.bench_function("decode", |b| b.iter(|| parse(black_box(peer.as_slice()))));
        group.bench_function("decode_read", |b| b.iter(|| read(black_box(peer.as_slice())).ok()));
    }
    group.bench_function("decode_owned", |b| b.iter(|| M::decode(black_box(peer.as_slice())).ok()));
    group.bench_function("build", |b| b.iter(|| black_box(build())));
    group.finish();
}

fn leyline(c: &mut Criterion) {
    bench_message(c, "adaptation_command", fixtures::adaptation_command, Some(read_all::adaptation_command));
    bench_message(c, "system_state_8x4", || fixtures::system_state_packet(8, 4), Some(read_all::system_state_packet));
    bench_message(c, "system_state_10x5", || fixtures::system_state_packet(10, 5), None);
    bench_message(c, "telemetry_10m_5e", || fixtures::telemetry_packet(10, 5), Some(read_all::telemetry_packet));
    bench_message(c, "telemetry_12m_5e", || fixtures::telemetry_packet(12, 5), None);
    // The peer's own 10 × 5 packet (same content as the peer, 933 B).
    let peer = fixtures::peer_system_state_10x5();
    let msg = SystemStatePacket::decode(peer.as_slice()).expect("the peer vector decodes");
    assert_eq!(leyline::encode_peer(&msg), peer, "peer bytes round-trip");
    bench_message(c, "system_state_10x5_peer_vector", || msg.clone(), Some(read_all::system_state_packet));
}

criterion_group!(benches, leyline);
criterion_main!(benches);
