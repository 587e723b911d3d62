//! The command verifier's legacy form (`annotations["signature"]` inside the command) on
//! arbitrary bytes.
//!
//! Checks, for every input:
//! 1. the bytes as received are never accepted: without the secret they cannot carry a valid
//!    HMAC;
//! 2. the same bytes signed at the wire level — a top-level `annotations` entry
//!    `signature = HMAC(bytes)` appended, which is what the legacy form is — are never refused
//!    for their signature (`invalid_signature`, `missing_signature`) when the bytes are a
//!    well-formed protobuf field sequence; when accepted, the command returned is exactly the
//!    decoding of the original bytes, and a second delivery is `nonce_replayed`; bytes that do
//!    not decode as an `AdaptationCommand` are never accepted;
//! 3. when the bytes decode, the command signed with the public signer (`sign_legacy`, which
//!    re-encodes it with the signature entry in sorted map position) gets exactly the verdict
//!    of a reference model of the checks after the signature (D8: command id, timestamp
//!    validity, freshness, nonce), or `unknown_key` when `annotations["key_id"]` names another
//!    key.
//!
//! Run: `cargo xtask fuzz --target verify_legacy` (or by hand: `fuzz/README.md`).
#![no_main]

use std::sync::LazyLock;

use kasmina_security::{
    CommandVerifier, FixedWallClock, KEY_ID_ANNOTATION, KeyRing, Rejection, SIGNATURE_ANNOTATION, SigningKey,
    VerifiedCommand, sign, sign_legacy,
};
use leyline::prost::encoding::{DecodeContext, decode_key, skip_field};
use leyline::{AdaptationCommand, CommandForm, Message};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "kasmina-fuzz-secret";
const KEY_ID: &str = "default";
/// The injected wall clock (the signed-command vectors were issued around this time).
const NOW_UNIX: i64 = 1_790_000_000;
/// The default freshness window on either side of "now" (`VerifierConfig::default`).
const WINDOW_NANOS: i128 = 60_000_000_000;

static KEYS: LazyLock<KeyRing> = LazyLock::new(|| KeyRing::with_key(KEY_ID, SECRET).expect("valid key"));
static KEY: LazyLock<SigningKey> = LazyLock::new(|| KEYS.get(KEY_ID).expect("the key is in the ring"));

/// A fresh verifier, so the nonce ledger does not make outcomes depend on earlier inputs.
fn verifier() -> CommandVerifier {
    CommandVerifier::new(KEYS.clone())
        .with_wall_clock(FixedWallClock::at_unix(NOW_UNIX))
        .with_monotonic_clock(quanta::Clock::mock().0)
}

fuzz_target!(|data: &[u8]| {
    unsigned_is_refused(data);
    wire_signed(data);
    if let Ok(command) = AdaptationCommand::decode(data) {
        signed_with_sign_legacy(command);
    }
});

fn unsigned_is_refused(data: &[u8]) {
    if let Ok(verified) = verifier().verify_legacy_bytes(data) {
        panic!("unsigned legacy command accepted: {verified:?}");
    }
}

/// Property 2: the bytes with a correct signature entry appended at the wire level.
fn wire_signed(data: &[u8]) {
    let entry = AdaptationCommand {
        annotations: [(SIGNATURE_ANNOTATION.to_owned(), sign(SECRET.as_bytes(), data))].into(),
        ..Default::default()
    };
    let signed = [data, &entry.encode_to_vec()].concat();
    let verifier = verifier();
    let outcome = verifier.verify_legacy_bytes(&signed);
    match &outcome {
        Ok(verified) => {
            let decoded = AdaptationCommand::decode(data).expect("accepted bytes decode");
            assert_same(verified.command(), &decoded);
            assert_eq!((verified.key_id(), verified.form()), (KEY_ID, CommandForm::Legacy));
            let replay = verifier.verify_legacy_bytes(&signed).expect_err("a second delivery is refused");
            assert_eq!(replay.reason(), "nonce_replayed");
        }
        Err(r) if well_formed(data) && signed.len() <= verifier.config().max_command_bytes => {
            assert!(
                !matches!(r, Rejection::InvalidSignature { .. } | Rejection::MissingSignature),
                "a correctly signed legacy command refused for its signature: {r:?}"
            );
        }
        Err(_) => {}
    }
    if AdaptationCommand::decode(data).is_err() {
        assert!(outcome.is_err(), "bytes that do not decode were accepted");
    }
}

/// Property 3: a decoded command signed by the public signer, against the reference model.
fn signed_with_sign_legacy(mut command: AdaptationCommand) {
    sign_legacy(&mut command, &KEY);
    let bytes = command.encode_to_vec();
    let verifier = verifier();
    if bytes.len() > verifier.config().max_command_bytes {
        let r = verifier.verify_legacy_bytes(&bytes).expect_err("oversized");
        assert_eq!(r.reason(), "oversized_command");
        return;
    }
    let outcome = verifier.verify_legacy_bytes(&bytes);
    command.annotations.remove(SIGNATURE_ANNOTATION);
    let named = command.annotations.get(KEY_ID_ANNOTATION).map(String::as_str).unwrap_or_default();
    let expected = if named.is_empty() || named == KEY_ID { expected_reason(&command) } else { "unknown_key" };
    assert_eq!(reason(&outcome), expected, "{command:?} -> {outcome:?}");
    if let Ok(verified) = outcome {
        assert_same(verified.command(), &command);
    }
}

/// D8's checks after the signature, in order, for a verifier that has seen nothing yet.
fn expected_reason(command: &AdaptationCommand) -> &'static str {
    if command.command_id.is_empty() {
        return "missing_command_id";
    }
    let Some(ts) = &command.issued_at else { return "missing_timestamp" };
    // Years 0001 to 9999, nanos within a second (`google.protobuf.Timestamp`).
    if !(0..=999_999_999).contains(&ts.nanos) || !(-62_135_596_800..=253_402_300_799).contains(&ts.seconds) {
        return "malformed_command";
    }
    let issued = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    let now = i128::from(NOW_UNIX) * 1_000_000_000;
    if issued - now > WINDOW_NANOS {
        "issued_in_future"
    } else if now - issued > WINDOW_NANOS {
        "stale_command"
    } else {
        "ok"
    }
}

/// The same command: equal peer encodings. Not `==` (a float field may hold a NaN, never equal
/// to itself), and not prost's `encode_to_vec` (a `google.protobuf.Struct` payload is a
/// `HashMap`, whose entries prost writes in any order): `encode_peer` is canonical.
fn assert_same(a: &AdaptationCommand, b: &AdaptationCommand) {
    assert_eq!(leyline::encode_peer(a), leyline::encode_peer(b), "{a:?} != {b:?}");
}

fn reason(outcome: &Result<VerifiedCommand, Rejection>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(r) => r.reason(),
    }
}

/// Whether `bytes` is a sequence of complete top-level protobuf fields (so a field appended to
/// it is read as a top-level field, not swallowed by a truncated one).
fn well_formed(mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        let Ok((tag, wire_type)) = decode_key(&mut bytes) else { return false };
        if skip_field(wire_type, tag, &mut bytes, DecodeContext::default()).is_err() {
            return false;
        }
    }
    true
}
