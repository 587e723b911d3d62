//! The command verifier on arbitrary input: no input may panic, and nothing unsigned is accepted.
//!
//! Run: `cargo xtask fuzz --target verify_envelope` (or by hand: `fuzz/README.md`).
#![no_main]

use std::sync::LazyLock;

use kasmina_security::{CommandVerifier, FixedWallClock, KeyRing, sign};
use leyline::{Message, SignedCommand};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "kasmina-fuzz-secret";

static KEYS: LazyLock<KeyRing> = LazyLock::new(|| KeyRing::with_key("default", SECRET).expect("valid key"));

fuzz_target!(|data: &[u8]| {
    // A fresh verifier per input, so the nonce ledger does not make outcomes depend on history.
    let verifier = CommandVerifier::new(KEYS.clone())
        .with_wall_clock(FixedWallClock::at_unix(1_790_000_000))
        .with_monotonic_clock(quanta::Clock::mock().0);

    // Arbitrary bytes as an encoded envelope and as a legacy command: without the secret they
    // cannot carry a valid signature.
    if let Ok(verified) = verifier.verify_envelope_bytes(data) {
        panic!("unsigned envelope accepted: {verified:?}");
    }
    if let Ok(verified) = verifier.verify_legacy_bytes(data) {
        panic!("unsigned legacy command accepted: {verified:?}");
    }

    // The same bytes correctly signed: they reach the decoder and every later check, and if
    // accepted they decode to what the verifier returns.
    let signed =
        SignedCommand { command: data.to_vec(), signature: sign(SECRET.as_bytes(), data), key_id: "default".into() };
    match verifier.verify_envelope_bytes(&signed.encode_to_vec()) {
        Ok(verified) => {
            let decoded = leyline::AdaptationCommand::decode(data).expect("accepted bytes decode");
            // Compared by encoding: a float field may hold a NaN, which `==` never finds equal.
            // Peer encodings: canonical even for a `Struct` payload (a HashMap in prost).
            assert_eq!(leyline::encode_peer(verified.command()), leyline::encode_peer(&decoded));
            assert_eq!(verifier.verify_signed(&signed).unwrap_err().reason(), "nonce_replayed");
        }
        Err(rejection) => assert_ne!(rejection.reason(), "invalid_signature"),
    }
});
