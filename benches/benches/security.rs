//! Command verification cost (the design's budgets: HMAC verification < 0.5 ms, > 10 000 commands/s).
//!
//! Each accepted command needs a fresh `command_id` (the nonce), so inputs are signed in batches
//! outside the timed closure (`iter_batched_ref`). Inside it, the ledger's mock monotonic clock
//! advances by `ttl / live_nonces` per command (one atomic add), so the nonce ledger stays at a
//! steady state of that many live nonces, evicting as it goes, instead of growing without bound.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use kasmina_benches::fixtures;
use kasmina_security::{CommandVerifier, FixedWallClock, KeyRing, SigningKey, sign_command, sign_legacy};
use leyline::{AdaptationCommand, Message, SignedCommand};

const SECRET: &str = "kasmina-bench-secret";
const TTL: Duration = Duration::from_secs(300);

fn verifier(keys: &KeyRing) -> (CommandVerifier, Arc<quanta::Mock>) {
    let (clock, mock) = quanta::Clock::mock();
    let verifier = CommandVerifier::new(keys.clone())
        .with_wall_clock(FixedWallClock::at_unix(fixtures::timestamp().seconds))
        .with_monotonic_clock(clock);
    (verifier, mock)
}

/// The reference command (the prototype's 214-byte fixture) with a unique id.
fn command(counter: &mut u64) -> AdaptationCommand {
    *counter += 1;
    AdaptationCommand { command_id: fixtures::command_id(*counter), ..fixtures::adaptation_command() }
}

/// Accepting fresh envelopes with `live` nonces held in the ledger.
fn bench_envelope_accept(c: &mut BenchmarkGroup<'_, WallTime>, name: &str, live: u32) {
    let keys = KeyRing::with_key("default", SECRET).expect("valid key");
    let (verifier, mock) = verifier(&keys);
    let mut counter = 0;
    for _ in 0..live {
        let signed = sign_command(&command(&mut counter), "default", &keys).expect("known key");
        verifier.verify_signed(&signed).expect("fresh command is accepted");
        mock.increment(TTL / live);
    }
    let step = TTL / live;
    c.bench_function(name, |b| {
        b.iter_batched_ref(
            || sign_command(&command(&mut counter), "default", &keys).expect("known key"),
            |signed| {
                mock.increment(step);
                black_box(verifier.verify_signed(signed)).expect("fresh command is accepted")
            },
            BatchSize::SmallInput,
        )
    });
    // The ledger stayed near its steady state.
    assert!(verifier.ledger().len() <= live as usize + 64, "ledger held {}", verifier.ledger().len());
}

fn security(c: &mut Criterion) {
    // Throughput in commands per second.
    let mut group = c.benchmark_group("cpu/security");
    group.throughput(Throughput::Elements(1));
    let c = &mut group;

    bench_envelope_accept(c, "verify_envelope_accept", 1);
    bench_envelope_accept(c, "verify_envelope_accept_10k_nonces", 10_000);

    // The wire path: decode the SignedCommand, then verify.
    {
        let keys = KeyRing::with_key("default", SECRET).expect("valid key");
        let (verifier, mock) = verifier(&keys);
        let mut counter = 0;
        c.bench_function("verify_envelope_bytes_accept", |b| {
            b.iter_batched_ref(
                || sign_command(&command(&mut counter), "default", &keys).expect("known key").encode_to_vec(),
                |bytes| {
                    mock.increment(TTL);
                    black_box(verifier.verify_envelope_bytes(bytes)).expect("fresh command is accepted")
                },
                BatchSize::SmallInput,
            )
        });
    }

    {
        let keys = KeyRing::with_key("default", SECRET).expect("valid key");
        let key = SigningKey::new(SECRET).expect("valid key");
        let (verifier, mock) = verifier(&keys);
        let mut counter = 0;
        c.bench_function("verify_legacy_accept", |b| {
            b.iter_batched_ref(
                || {
                    let mut legacy = command(&mut counter);
                    sign_legacy(&mut legacy, &key);
                    legacy.encode_to_vec()
                },
                |bytes| {
                    mock.increment(TTL);
                    black_box(verifier.verify_legacy_bytes(bytes)).expect("fresh command is accepted")
                },
                BatchSize::SmallInput,
            )
        });
    }

    {
        let keys = KeyRing::with_key("default", SECRET).expect("valid key");
        let (verifier, _mock) = verifier(&keys);
        let good = sign_command(&command(&mut 0), "default", &keys).expect("known key");
        let forged = SignedCommand { signature: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(), ..good };
        c.bench_function("verify_bad_signature", |b| {
            b.iter(|| black_box(verifier.verify_signed(black_box(&forged))).expect_err("forged signature is rejected"))
        });
    }
    group.finish();
}

criterion_group!(benches, security);
criterion_main!(benches);
