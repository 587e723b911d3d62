//! The envelope's accept path allocates nothing (issue 20): `verify_envelope_view` on the wire
//! bytes, and the nonce ledger it registers into, counted by a counting global allocator
//! (`allocation-counter`, per thread, so tests running beside this one do not count).

use std::time::Duration;

use kasmina_security::{Registration, Verified, sign_command};
use leyline::{CommandForm, Message};

use crate::{Fixture, command};

/// Commands signed ahead (signing and encoding allocate; verifying must not).
fn signed(fixture: &Fixture, prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| sign_command(&command(&format!("{prefix}-{i:04}")), "default", &fixture.keys).unwrap().encode_to_vec())
        .collect()
}

#[test]
fn accepting_an_envelope_on_its_view_allocates_nothing_at_steady_state() {
    let fixture = Fixture::default_key();
    // Warm up: the ledger's table and queue grow to their steady size (one live nonce per TTL
    // step here), which allocates once.
    for bytes in signed(&fixture, "warm", 64) {
        fixture.verifier.verify_envelope_view(&bytes).unwrap();
        fixture.mono.increment(Duration::from_secs(300));
    }
    let inputs = signed(&fixture, "count", 256);
    // The counter sees this thread's allocations (so a zero below is a measurement).
    let owned = allocation_counter::measure(|| {
        let probe = signed(&fixture, "probe", 1);
        let verified = fixture.verifier.verify_envelope_view(&probe[0]).unwrap();
        std::hint::black_box(verified.into_owned());
    });
    assert!(owned.count_total > 5, "signing and the owned command allocate: {}", owned.count_total);
    let mut accepted = 0;
    let info = allocation_counter::measure(|| {
        for bytes in &inputs {
            // Each call also evicts the nonce before it (its TTL ran out).
            fixture.mono.increment(Duration::from_secs(300));
            let verified = fixture.verifier.verify_envelope_view(bytes).unwrap();
            assert!(matches!(verified, Verified::View { .. }));
            assert_eq!((verified.form(), verified.key_id()), (CommandForm::Envelope, "default"));
            accepted += usize::from(verified.command_id().starts_with("count-"));
        }
    });
    assert_eq!(accepted, inputs.len());
    assert_eq!(
        info.count_total, 0,
        "{} allocations over {} accepts ({} bytes)",
        info.count_total, accepted, info.bytes_total
    );
}

#[test]
fn the_ledger_registers_and_evicts_without_allocating_at_steady_state() {
    let fixture = Fixture::default_key();
    let ledger = fixture.verifier.ledger();
    let ids: Vec<String> = (0..2000).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect();
    // 1000 live nonces: each registration evicts the one a TTL older.
    let step = Duration::from_millis(300);
    for id in &ids[..1000] {
        assert_eq!(ledger.try_register(id), Registration::Registered);
        fixture.mono.increment(step);
    }
    let info = allocation_counter::measure(|| {
        for id in &ids[1000..] {
            assert_eq!(ledger.try_register(id), Registration::Registered);
            assert_eq!(ledger.try_register(id), Registration::Replayed);
            fixture.mono.increment(step);
        }
    });
    assert!(ledger.len() <= 1001 + 32, "steady state: {}", ledger.len());
    assert_eq!(info.count_total, 0, "{} allocations ({} bytes)", info.count_total, info.bytes_total);
}
