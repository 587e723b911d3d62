//! Property tests: tampering is always caught, arbitrary input never panics, accepted commands
//! round-trip, and legacy commands verify whatever the peer's map order.

use std::collections::BTreeMap;

use kasmina_security::{KeyRing, sign_command, sign_legacy};
use leyline::wkt::Timestamp;
use leyline::{
    AdaptationCommand, CommandCircuitBreaker, CommandOptimizerAdjustment, CommandSeedOperation, Message, SignedCommand,
    adaptation_command::Payload,
};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::{Fixture, NOW, SECRET, command};

fn payload() -> impl Strategy<Value = Option<Payload>> {
    prop_oneof![
        Just(None),
        ("[A-Z0-9]{0,8}", 0..12i32, prop::collection::btree_map("[a-z_]{1,8}", -1e6f32..1e6, 0..4)).prop_map(
            |(blueprint_id, operation, parameters)| Some(Payload::SeedOperation(CommandSeedOperation {
                operation,
                blueprint_id,
                parameters
            }))
        ),
        ("[a-z]{0,8}", prop::collection::btree_map("[a-z_]{1,8}", -1.0f32..1.0, 0..4)).prop_map(
            |(optimizer_id, hyperparameters)| Some(Payload::OptimizerAdjustment(CommandOptimizerAdjustment {
                optimizer_id,
                hyperparameters
            }))
        ),
        (0..4i32, "[ -~]{0,16}").prop_map(|(desired_state, rationale)| Some(Payload::CircuitBreaker(
            CommandCircuitBreaker { desired_state, rationale }
        ))),
    ]
}

/// A command that passes every check at [`NOW`] (issued within ±60 s).
fn valid_command() -> impl Strategy<Value = AdaptationCommand> {
    (
        any::<u32>(),
        "[a-zA-Z0-9_-]{1,24}",
        0..8i32,
        "[a-z0-9-]{0,12}",
        any::<u32>(),
        -60i64..=60,
        0..1_000_000_000i32,
        "[a-z]{0,10}",
        prop::collection::btree_map("[a-z_]{1,10}", "[ -~]{0,20}", 0..5),
        payload(),
    )
        .prop_map(
            |(version, command_id, command_type, target, deadline, offset, nanos, by, annotations, payload)| {
                let seconds = NOW + offset - i64::from(offset == 60 && nanos > 0);
                AdaptationCommand {
                    version,
                    command_id,
                    command_type,
                    target_seed_id: target,
                    execution_deadline_ms: deadline,
                    issued_at: Some(Timestamp { seconds, nanos }),
                    issued_by: by,
                    annotations: annotations.into_iter().filter(|(k, _)| k != "signature").collect(),
                    payload,
                }
            },
        )
}

/// The encoding of `command`'s annotations alone, entries in the given order.
fn annotation_entries(entries: &[(String, String)]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|(k, v)| {
            AdaptationCommand { annotations: BTreeMap::from([(k.clone(), v.clone())]), ..Default::default() }
                .encode_to_vec()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn accepted_envelopes_round_trip(cmd in valid_command()) {
        let fixture = Fixture::default_key();
        let signed = sign_command(&cmd, "default", &fixture.keys).unwrap();
        let verified = fixture.verifier.verify_envelope_bytes(&signed.encode_to_vec()).unwrap();
        prop_assert_eq!(verified.command(), &cmd);
        prop_assert_eq!(verified.key_id(), "default");
    }

    #[test]
    fn the_borrowed_view_path_accepts_and_refuses_as_the_owned_path(
        cmd in valid_command(), at in any::<Index>(), flip in 0..=255u8, cut in any::<Index>(),
    ) {
        // Two verifiers with the same keys and clocks: one takes the bytes path, one the view path.
        let (owned, view) = (Fixture::default_key(), Fixture::default_key());
        let mut bytes = sign_command(&cmd, "default", &owned.keys).unwrap().encode_to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        bytes.truncate(cut.index(bytes.len() + 1).max(i));
        let a = owned.verifier.verify_envelope_bytes(&bytes);
        let b = view.verifier.verify_envelope_view(&bytes).map(kasmina_security::Verified::into_owned);
        match (&a, &b) {
            (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
            (Err(x), Err(y)) => prop_assert_eq!(x.reason(), y.reason()),
            _ => prop_assert!(false, "bytes path {:?}, view path {:?}", a, b),
        }
        prop_assert_eq!(owned.verifier.ledger().len(), view.verifier.ledger().len());
    }

    #[test]
    fn accepted_legacy_commands_round_trip(cmd in valid_command()) {
        let fixture = Fixture::default_key();
        let mut legacy = cmd.clone();
        sign_legacy(&mut legacy, &fixture.keys.get("default").unwrap());
        let verified = fixture.verifier.verify_legacy_bytes(&legacy.encode_to_vec()).unwrap();
        prop_assert_eq!(verified.command(), &cmd);
    }

    /// The peer may emit map entries in any order and the signature entry anywhere among them.
    #[test]
    fn legacy_verifies_in_any_map_order(
        cmd in valid_command(),
        order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
        at in any::<Index>(),
    ) {
        let fixture = Fixture::default_key();
        let mut entries: Vec<(String, String)> = cmd.annotations.clone().into_iter().collect();
        // A deterministic shuffle from the generated seed.
        let mut seed = order | 1;
        for i in (1..entries.len()).rev() {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            entries.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let mut rest = cmd.clone();
        rest.annotations.clear();
        let mut signed_bytes = rest.encode_to_vec();
        signed_bytes.extend(annotation_entries(&entries));
        let signature = kasmina_security::sign(SECRET.as_bytes(), &signed_bytes);
        entries.insert(at.index(entries.len() + 1), ("signature".to_owned(), signature));
        let mut wire = rest.encode_to_vec();
        wire.extend(annotation_entries(&entries));
        let verified = fixture.verifier.verify_legacy_bytes(&wire).unwrap();
        prop_assert_eq!(verified.command(), &cmd);
    }

    #[test]
    fn any_mutation_of_envelope_bytes_is_rejected(
        cmd in valid_command(), at in any::<Index>(), flip in 1..=255u8,
    ) {
        let fixture = Fixture::default_key();
        let mut signed = sign_command(&cmd, "default", &fixture.keys).unwrap();
        let i = at.index(signed.command.len());
        signed.command[i] ^= flip;
        let rejection = fixture.verifier.verify_signed(&signed).unwrap_err();
        prop_assert_eq!(rejection.reason(), "invalid_signature");
        prop_assert!(fixture.verifier.ledger().is_empty());
    }

    #[test]
    fn truncated_or_extended_envelope_bytes_are_rejected(
        cmd in valid_command(), cut in any::<Index>(), extra in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let fixture = Fixture::default_key();
        let signed = sign_command(&cmd, "default", &fixture.keys).unwrap();
        let mut truncated = signed.clone();
        truncated.command.truncate(cut.index(signed.command.len()));
        prop_assert_eq!(fixture.verifier.verify_signed(&truncated).unwrap_err().reason(), "invalid_signature");
        let mut extended = signed.clone();
        extended.command.extend(extra);
        prop_assert_eq!(fixture.verifier.verify_signed(&extended).unwrap_err().reason(), "invalid_signature");
    }

    #[test]
    fn any_other_signature_is_rejected(cmd in valid_command(), forged in "[A-Za-z0-9+/=]{1,60}") {
        let fixture = Fixture::default_key();
        let mut signed = sign_command(&cmd, "default", &fixture.keys).unwrap();
        prop_assume!(forged != signed.signature);
        signed.signature = forged;
        prop_assert_eq!(fixture.verifier.verify_signed(&signed).unwrap_err().reason(), "invalid_signature");
    }

    #[test]
    fn any_single_character_change_of_the_signature_is_rejected(
        cmd in valid_command(), at in any::<Index>(), c in prop::char::range('!', '~'),
    ) {
        let fixture = Fixture::default_key();
        let mut signed = sign_command(&cmd, "default", &fixture.keys).unwrap();
        let i = at.index(signed.signature.len());
        prop_assume!(signed.signature.as_bytes()[i] != c as u8);
        signed.signature.replace_range(i..=i, &c.to_string());
        prop_assert_eq!(fixture.verifier.verify_signed(&signed).unwrap_err().reason(), "invalid_signature");
    }

    #[test]
    fn any_mutation_of_legacy_bytes_is_rejected(
        cmd in valid_command(), at in any::<Index>(), flip in 1..=255u8,
    ) {
        let fixture = Fixture::default_key();
        let mut legacy = cmd.clone();
        sign_legacy(&mut legacy, &fixture.keys.get("default").unwrap());
        let mut bytes = legacy.encode_to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(fixture.verifier.verify_legacy_bytes(&bytes).is_err());
        prop_assert!(fixture.verifier.ledger().is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let fixture = Fixture::default_key();
        let _ = fixture.verifier.verify_envelope_bytes(&bytes);
        let _ = fixture.verifier.verify_legacy_bytes(&bytes);
        // Bytes under a valid signature reach the decoder and the later checks.
        let signature = kasmina_security::sign(SECRET.as_bytes(), &bytes);
        let outcome = fixture.verifier.verify_signed(&SignedCommand { command: bytes, signature, key_id: "default".into() });
        if let Err(rejection) = outcome {
            prop_assert!(rejection.reason() != "invalid_signature");
        }
    }

    #[test]
    fn arbitrary_envelope_fields_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..300), signature in "\\PC{0,50}", key_id in "\\PC{0,20}",
    ) {
        let fixture = Fixture::new(KeyRing::with_key("default", SECRET).unwrap());
        let envelope = SignedCommand { command: bytes, signature, key_id };
        let _ = fixture.verifier.verify_signed(&envelope);
        let _ = fixture.verifier.verify_envelope_bytes(&envelope.encode_to_vec());
    }
}

#[test]
fn fixture_command_is_valid() {
    let fixture = Fixture::default_key();
    let signed = sign_command(&command("fixture"), "default", &fixture.keys).unwrap();
    assert!(fixture.verifier.verify_signed(&signed).is_ok());
}

/// The envelope's signature is read as bytes (its UTF-8 is checked only when it does not match),
/// yet an envelope whose signature is not UTF-8 is refused as prost refuses it, on every path
/// and whatever else is wrong with it.
#[test]
fn a_signature_that_is_not_utf8_makes_the_envelope_malformed_on_every_path() {
    let fixture = Fixture::default_key();
    let signed = sign_command(&command("not-utf8"), "default", &fixture.keys).unwrap();
    for key_id in ["", "default", "no-such-key"] {
        for signature in [vec![0xff; 44], [&[0xc3][..], &signed.signature.as_bytes()[1..]].concat(), vec![0x80]] {
            let mut bytes =
                SignedCommand { signature: String::new(), key_id: key_id.into(), ..signed.clone() }.encode_to_vec();
            // Field 2 (signature), length-delimited, with the raw bytes.
            bytes.extend_from_slice(&[2 << 3 | 2, signature.len() as u8]);
            bytes.extend_from_slice(&signature);
            assert!(SignedCommand::decode(bytes.as_slice()).is_err(), "prost refuses it");
            let by_bytes = fixture.verifier.verify_envelope_bytes(&bytes).unwrap_err();
            let by_view = fixture.verifier.verify_envelope_view(&bytes).unwrap_err();
            assert_eq!((by_bytes.reason(), by_view.reason()), ("malformed_command", "malformed_command"), "{key_id}");
        }
    }
    // An earlier occurrence that is not UTF-8, then the right signature: prost refuses it too.
    let mut bytes = SignedCommand { signature: String::new(), ..signed.clone() }.encode_to_vec();
    bytes.extend_from_slice(&[2 << 3 | 2, 1, 0xff, 2 << 3 | 2, 44]);
    bytes.extend_from_slice(signed.signature.as_bytes());
    assert!(SignedCommand::decode(bytes.as_slice()).is_err());
    assert_eq!(fixture.verifier.verify_envelope_view(&bytes).unwrap_err().reason(), "malformed_command");
    // The same bytes made valid UTF-8 but wrong: a signature mismatch, not a malformed envelope.
    let wrong = SignedCommand { signature: "A".repeat(44), ..signed };
    let rejection = fixture.verifier.verify_envelope_view(&wrong.encode_to_vec()).unwrap_err();
    assert_eq!(rejection.reason(), "invalid_signature");
    assert!(fixture.verifier.ledger().is_empty());
}
