//! Esper's Python peer's vectors (`shared/vectors/signed_commands.json`): every one gives its
//! `expect` and `reason`.

use std::path::PathBuf;
use std::sync::Arc;

use kasmina_security::{CommandVerifier, FixedWallClock, KeyRing, Rejection, Verified, VerifiedCommand};
use leyline::{AdaptationCommand, CommandForm, Message, SignedCommand};
use serde_json::Value;

struct Vector {
    name: String,
    form: String,
    bytes: Vec<u8>,
    signature: String,
    key_id: String,
    verify_at: i64,
    expect: String,
    reason: String,
    fields: Value,
}

fn load() -> (String, Vec<Vector>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/signed_commands.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let root: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(root["freshness_window_s"], 60);
    assert_eq!(root["nonce_ttl_s"], 300);
    let text_of = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
    let vectors = root["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            name: text_of(v, "name"),
            form: text_of(v, "form"),
            bytes: hex::decode(text_of(v, "command_hex")).unwrap(),
            signature: text_of(v, "signature"),
            key_id: text_of(v, "key_id"),
            verify_at: v["verify_at_unix"].as_i64().unwrap(),
            expect: text_of(v, "expect"),
            reason: text_of(v, "reason"),
            fields: v["fields"].clone(),
        })
        .collect();
    (text_of(&root, "secret_utf8"), vectors)
}

/// A verifier at the vector's wall-clock time; the same clock is returned to move it.
fn verifier(secret: &str) -> (CommandVerifier, Arc<FixedWallClock>) {
    let wall = Arc::new(FixedWallClock::at_unix(0));
    let verifier = CommandVerifier::new(KeyRing::with_key("default", secret).unwrap())
        .with_wall_clock(wall.clone())
        .with_monotonic_clock(quanta::Clock::mock().0);
    (verifier, wall)
}

/// Verifies through the form's natural entry point.
fn verify(verifier: &CommandVerifier, vector: &Vector) -> Result<VerifiedCommand, Rejection> {
    match vector.form.as_str() {
        "envelope" => verifier.verify_signed(&SignedCommand {
            command: vector.bytes.clone(),
            signature: vector.signature.clone(),
            key_id: vector.key_id.clone(),
        }),
        "legacy" => verifier.verify_legacy_bytes(&vector.bytes),
        other => panic!("{}: unknown form {other}", vector.name),
    }
}

/// The vector as the wire delivers it: an encoded envelope (legacy: with an empty signature, so
/// the legacy command travels in `command`).
fn wire_bytes(vector: &Vector) -> Vec<u8> {
    let (signature, key_id) = match vector.form.as_str() {
        "envelope" => (vector.signature.clone(), vector.key_id.clone()),
        _ => (String::new(), String::new()),
    };
    SignedCommand { command: vector.bytes.clone(), signature, key_id }.encode_to_vec()
}

/// Runs `run` on every vector with a verifier at the vector's time: a fresh one per vector,
/// except the replay pair, which shares one (so its second command is a replay).
fn each_vector(run: impl Fn(&CommandVerifier, &Vector)) {
    let (secret, vectors) = load();
    let (replay_verifier, replay_wall) = verifier(&secret);
    for vector in &vectors {
        let fresh;
        let (verifier, wall) = if vector.name.starts_with("replay_") {
            (&replay_verifier, &replay_wall)
        } else {
            fresh = verifier(&secret);
            (&fresh.0, &fresh.1)
        };
        wall.set_unix(vector.verify_at);
        run(verifier, vector);
    }
}

fn check(vector: &Vector, outcome: Result<VerifiedCommand, Rejection>) {
    match (vector.expect.as_str(), outcome) {
        ("accept", Ok(verified)) => {
            assert_eq!(vector.reason, "ok", "{}", vector.name);
            let expected: AdaptationCommand = serde_json::from_value(vector.fields.clone())
                .unwrap_or_else(|e| panic!("{}: fields: {e}", vector.name));
            assert_eq!(verified.command(), &expected, "{}", vector.name);
            assert_eq!(verified.key_id(), "default", "{}", vector.name);
            let form = if vector.form == "envelope" { CommandForm::Envelope } else { CommandForm::Legacy };
            assert_eq!(verified.form(), form, "{}", vector.name);
            let (command, key_id, parts_form) = verified.into_parts();
            assert_eq!((command, key_id.as_str(), parts_form), (expected, "default", form), "{}", vector.name);
        }
        ("reject", Err(rejection)) => assert_eq!(rejection.reason(), vector.reason, "{}: {rejection}", vector.name),
        (expect, outcome) => panic!("{}: expected {expect} ({}), got {outcome:?}", vector.name, vector.reason),
    }
}

#[test]
fn every_vector_gives_its_expected_outcome() {
    let (secret, vectors) = load();
    assert_eq!(vectors.len(), 22);
    let mut replay: Option<(CommandVerifier, Arc<FixedWallClock>)> = None;
    for vector in &vectors {
        let (verifier, wall) = if vector.name.starts_with("replay_") {
            replay.get_or_insert_with(|| verifier(&secret))
        } else {
            &verifier(&secret)
        };
        wall.set_unix(vector.verify_at);
        check(vector, verify(verifier, vector));
    }
    assert!(replay.is_some(), "the replay pair was exercised");
}

#[test]
fn every_vector_gives_its_expected_outcome_from_encoded_envelope_bytes() {
    each_vector(|verifier, vector| check(vector, verifier.verify_envelope_bytes(&wire_bytes(vector))));
}

#[test]
fn every_vector_gives_its_expected_outcome_through_the_borrowed_view() {
    each_vector(|verifier, vector| {
        let bytes = wire_bytes(vector);
        let outcome = verifier.verify_envelope_view(&bytes);
        if let Ok(verified) = &outcome {
            // The envelope form is verified on the view, the legacy form on the owned path.
            assert_eq!(matches!(verified, Verified::View { .. }), vector.form == "envelope", "{}", vector.name);
            let id = vector.fields["command_id"].as_str().unwrap_or_default();
            assert_eq!(verified.command_id(), id, "{}", vector.name);
        }
        check(vector, outcome.map(Verified::into_owned));
    });
}

#[test]
fn legacy_vectors_with_several_annotations_do_not_survive_a_decode_reencode() {
    // Why the wire-level split is needed: re-encoding (sorted map keys) changes these bytes.
    let (_, vectors) = load();
    let changed: Vec<&str> = vectors
        .iter()
        .filter(|v| v.form == "legacy" && v.expect == "accept")
        .filter(|v| AdaptationCommand::decode(v.bytes.as_slice()).unwrap().encode_to_vec() != v.bytes)
        .map(|v| v.name.as_str())
        .collect();
    assert!(!changed.is_empty(), "at least one legacy vector relies on the peer's map order");
}

#[test]
fn a_rejected_vector_spends_no_nonce() {
    let (secret, vectors) = load();
    let (verifier, wall) = verifier(&secret);
    // replay_second is only a rejection after replay_first.
    for vector in vectors.iter().filter(|v| v.expect == "reject" && v.name != "replay_second") {
        wall.set_unix(vector.verify_at);
        assert!(verify(&verifier, vector).is_err(), "{}", vector.name);
    }
    assert!(verifier.ledger().is_empty());
    // The stale command, verified in time, is accepted: its earlier rejection spent nothing.
    let stale = vectors.iter().find(|v| v.name == "stale_envelope").unwrap();
    wall.set_unix(stale.verify_at - 2);
    assert!(verify(&verifier, stale).is_ok());
}

#[test]
fn without_a_key_every_vector_is_verifier_unavailable() {
    let (_, vectors) = load();
    let verifier = CommandVerifier::new(KeyRing::new()).with_wall_clock(FixedWallClock::at_unix(0));
    for vector in &vectors {
        let rejection = verify(&verifier, vector).unwrap_err();
        assert_eq!(rejection.reason(), "verifier_unavailable", "{}", vector.name);
        assert_eq!(verifier.verify_envelope_bytes(&wire_bytes(vector)).unwrap_err().reason(), "verifier_unavailable");
    }
}
