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
use kasmina_security::{
    CommandVerifier, FixedWallClock, KeyRing, NonceLedger, Registration, SigningKey, sign_command, sign_legacy,
};
use leyline::view::{AdaptationCommandView, View};
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

    // The same wire bytes verified on the command's borrowed view (nothing decoded into owned
    // types, nothing allocated on accept): issue 20's accept figure.
    {
        let keys = KeyRing::with_key("default", SECRET).expect("valid key");
        let (verifier, mock) = verifier(&keys);
        let mut counter = 0;
        c.bench_function("verify_envelope_view_accept", |b| {
            b.iter_batched_ref(
                || sign_command(&command(&mut counter), "default", &keys).expect("known key").encode_to_vec(),
                |bytes| {
                    mock.increment(TTL);
                    let verified = verifier.verify_envelope_view(bytes).expect("fresh command is accepted");
                    black_box(verified.command_id().len())
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

/// The parts of `verify_envelope_accept`, each alone: the signature check (HMAC-SHA256 of the
/// 214 bytes and the constant-time comparison), the decode into prost's owned struct, and the nonce
/// ledger's registration at a steady state of 1 and 10 000 live nonces. What the accept path adds
/// to their sum is the verifier's own work (key lookup, required fields, freshness, the result).
fn breakdown(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu/security/part");
    group.throughput(Throughput::Elements(1));
    let keys = KeyRing::with_key("default", SECRET).expect("valid key");
    let key = SigningKey::new(SECRET).expect("valid key");
    let signed = sign_command(&command(&mut 0), "default", &keys).expect("known key");
    group.bench_function("hmac_verify", |b| {
        b.iter(|| assert!(key.verify(black_box(&signed.command), black_box(&signed.signature))))
    });
    group.bench_function("decode_command", |b| {
        b.iter(|| AdaptationCommand::decode(black_box(signed.command.as_slice())).expect("decodes"))
    });
    group.bench_function("view_command", |b| {
        b.iter(|| AdaptationCommandView::parse(black_box(signed.command.as_slice())).expect("parses"))
    });
    // A pool of ids twice the steady state, reused round robin: each comes back long after its
    // TTL ran out and it was evicted, so every call registers a new entry (and evicts one), with
    // no allocation or id formatting in the loop.
    for (name, live) in [("ledger_register", 1u32), ("ledger_register_10k_nonces", 10_000)] {
        let (clock, mock) = quanta::Clock::mock();
        let ledger = NonceLedger::new(TTL, 1 << 20, clock);
        let step = TTL / live;
        let ids: Vec<String> = (0..2 * u64::from(live)).map(fixtures::command_id).collect();
        let mut next = 0;
        for _ in 0..2 * live {
            assert_eq!(ledger.try_register(&ids[next % ids.len()]), Registration::Registered);
            next += 1;
            mock.increment(step);
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                mock.increment(step);
                let id = &ids[next % ids.len()];
                next += 1;
                assert_eq!(ledger.try_register(black_box(id)), Registration::Registered);
            })
        });
        assert!(ledger.len() <= live as usize + 64, "ledger held {}", ledger.len());
    }
    group.finish();
}

criterion_group!(benches, security, breakdown);
criterion_main!(benches);
