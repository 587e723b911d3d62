//! Oona bus entries (decisions D12): the entry's signature covers the exact `BusEnvelope`
//! bytes; the command inside then goes through the rest of D8's order.

use kasmina_security::{Rejection, sign};
use leyline::{BusEnvelope, BusMessageType, CommandForm, Message};

use crate::{Fixture, SECRET, command};

/// The entry Esper's `OonaClient.publish_command` writes: (payload, signature) fields.
fn entry(message_type: BusMessageType, payload: Vec<u8>, secret: &str) -> (Vec<u8>, String) {
    let mut envelope = BusEnvelope { payload, ..Default::default() };
    envelope.set_message_type(message_type);
    envelope.attributes.insert("source".into(), "tamiyo".into());
    let bytes = envelope.encode_to_vec();
    let signature = sign(secret.as_bytes(), &bytes);
    (bytes, signature)
}

#[test]
fn a_signed_command_entry_is_verified_once_and_a_redelivery_is_a_replay() {
    let f = Fixture::default_key();
    let (envelope, signature) = entry(BusMessageType::AdaptationCommand, command("bus-1").encode_to_vec(), SECRET);
    let verified = f.verifier.verify_bus_entry(&envelope, &signature).unwrap();
    assert_eq!(verified.command(), &command("bus-1"));
    assert_eq!((verified.key_id(), verified.form()), ("default", CommandForm::Bus));
    let again = f.verifier.verify_bus_entry(&envelope, &signature).unwrap_err();
    assert!(matches!(again, Rejection::NonceReplayed { ref command_id } if command_id == "bus-1"), "{again:?}");
}

#[test]
fn unsigned_forged_undecodable_and_foreign_entries_are_refused_before_the_nonce() {
    let f = Fixture::default_key();
    let cmd = command("bus-2").encode_to_vec();
    let (envelope, signature) = entry(BusMessageType::AdaptationCommand, cmd.clone(), SECRET);
    assert_eq!(f.verifier.verify_bus_entry(&envelope, "").unwrap_err(), Rejection::MissingSignature);
    let (_, forged) = entry(BusMessageType::AdaptationCommand, cmd.clone(), "another-secret-of-16b");
    assert!(matches!(f.verifier.verify_bus_entry(&envelope, &forged).unwrap_err(), Rejection::InvalidSignature { .. }));
    let mut tampered = envelope.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(matches!(
        f.verifier.verify_bus_entry(&tampered, &signature).unwrap_err(),
        Rejection::InvalidSignature { .. }
    ));
    let garbage = vec![0xff; 9];
    let garbage_sig = sign(SECRET.as_bytes(), &garbage);
    assert!(matches!(
        f.verifier.verify_bus_entry(&garbage, &garbage_sig).unwrap_err(),
        Rejection::MalformedCommand { .. }
    ));
    let (state, state_sig) = entry(BusMessageType::SystemState, Vec::new(), SECRET);
    let err = f.verifier.verify_bus_entry(&state, &state_sig).unwrap_err();
    assert!(matches!(&err, Rejection::MalformedCommand { detail } if detail.contains("SYSTEM_STATE")), "{err:?}");
    // None of these registered the nonce: the genuine entry is still accepted.
    assert!(f.verifier.verify_bus_entry(&envelope, &signature).is_ok());
}

/// An envelope without attributes is read in place (no copy of the payload); one of another type
/// is still refused with prost's name for it.
#[test]
fn an_entry_without_attributes_is_verified_the_same() {
    let f = Fixture::default_key();
    let bare = |message_type: BusMessageType, payload: Vec<u8>| {
        let mut envelope = BusEnvelope { payload, ..Default::default() };
        envelope.set_message_type(message_type);
        let bytes = envelope.encode_to_vec();
        let signature = sign(SECRET.as_bytes(), &bytes);
        (bytes, signature)
    };
    let (envelope, signature) = bare(BusMessageType::AdaptationCommand, command("bus-3").encode_to_vec());
    let verified = f.verifier.verify_bus_entry(&envelope, &signature).unwrap();
    assert_eq!((verified.command(), verified.form()), (&command("bus-3"), CommandForm::Bus));
    assert!(matches!(f.verifier.verify_bus_entry(&envelope, &signature).unwrap_err(), Rejection::NonceReplayed { .. }));
    let (state, state_sig) = bare(BusMessageType::SystemState, command("bus-4").encode_to_vec());
    let err = f.verifier.verify_bus_entry(&state, &state_sig).unwrap_err();
    assert!(matches!(&err, Rejection::MalformedCommand { detail } if detail.contains("SYSTEM_STATE")), "{err:?}");
    let (empty, empty_sig) = bare(BusMessageType::AdaptationCommand, Vec::new());
    assert_eq!(f.verifier.verify_bus_entry(&empty, &empty_sig).unwrap_err(), Rejection::MissingCommandId);
}
