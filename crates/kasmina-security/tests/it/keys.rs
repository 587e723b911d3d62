//! Key rings: rotation, loading from the environment and files, and no secret in any output.

use std::collections::HashMap;
use std::io::Write as _;

use kasmina_security::{Error, KeyRing, Rejection, SigningKey, UnavailableCause, sign_command, sign_legacy};
use leyline::{CommandForm, Message, SignedCommand};
use rstest::rstest;

use crate::{Fixture, SECRET, command};

const OLD: &str = "old-secret-7f3a";
const NEW: &str = "new-secret-91bc";

#[test]
fn rotation_old_and_new_keys_overlap_then_the_old_one_is_unknown() {
    let fixture = Fixture::new(KeyRing::with_key("k-2026-08", OLD).unwrap());
    let signer = KeyRing::with_key("k-2026-08", OLD).unwrap();
    signer.insert("k-2026-09", NEW).unwrap();

    assert!(fixture.verifier.verify_signed(&sign_command(&command("a"), "k-2026-08", &signer).unwrap()).is_ok());
    // The new key is unknown until the verifier's ring gets it.
    let early = sign_command(&command("b"), "k-2026-09", &signer).unwrap();
    assert_eq!(
        fixture.verifier.verify_signed(&early).unwrap_err(),
        Rejection::UnknownKey { key_id: "k-2026-09".into() }
    );

    // Overlap: both verify.
    fixture.keys.insert("k-2026-09", NEW).unwrap();
    assert_eq!(fixture.verifier.verify_signed(&early).unwrap().key_id(), "k-2026-09");
    let old = sign_command(&command("c"), "k-2026-08", &signer).unwrap();
    assert_eq!(fixture.verifier.verify_signed(&old).unwrap().key_id(), "k-2026-08");

    // Retire the old key.
    assert!(fixture.keys.remove("k-2026-08"));
    let late_old = sign_command(&command("d"), "k-2026-08", &signer).unwrap();
    assert_eq!(fixture.verifier.verify_signed(&late_old).unwrap_err().reason(), "unknown_key");
    assert!(fixture.verifier.verify_signed(&sign_command(&command("e"), "k-2026-09", &signer).unwrap()).is_ok());
}

#[test]
fn legacy_commands_verify_against_every_key_of_the_ring() {
    let fixture = Fixture::new(KeyRing::with_key("old", OLD).unwrap());
    fixture.keys.insert("new", NEW).unwrap();
    for (secret, id, key_id) in [(OLD, "l1", "old"), (NEW, "l2", "new")] {
        let mut legacy = command(id);
        sign_legacy(&mut legacy, &SigningKey::new(secret).unwrap());
        let verified = fixture.verifier.verify_legacy_bytes(&legacy.encode_to_vec()).unwrap();
        assert_eq!(verified.key_id(), key_id);
    }
    fixture.keys.remove("old");
    let mut legacy = command("l3");
    sign_legacy(&mut legacy, &SigningKey::new(OLD).unwrap());
    assert_eq!(
        fixture.verifier.verify_legacy_bytes(&legacy.encode_to_vec()).unwrap_err(),
        Rejection::InvalidSignature { key_id: None }
    );
}

#[test]
fn verified_commands_name_their_key_and_wire_form() {
    let fixture = Fixture::new(KeyRing::with_key("k1", OLD).unwrap());
    let envelope = fixture.verifier.verify_signed(&sign_command(&command("p1"), "k1", &fixture.keys).unwrap()).unwrap();
    assert_eq!(envelope.form(), CommandForm::Envelope);
    assert_eq!(envelope.into_parts(), (command("p1"), "k1".to_owned(), CommandForm::Envelope));

    let mut legacy = command("p2");
    sign_legacy(&mut legacy, &SigningKey::new(OLD).unwrap());
    let verified = fixture.verifier.verify_legacy_bytes(&legacy.encode_to_vec()).unwrap();
    assert_eq!(verified.form(), CommandForm::Legacy);
    let (decoded, key_id, form) = verified.into_parts();
    // The legacy command comes back without its signature annotation: what the peer signed.
    assert_eq!((decoded, key_id.as_str(), form), (command("p2"), "k1", CommandForm::Legacy));
}

#[test]
fn empty_key_id_means_default_and_a_wrong_key_is_invalid() {
    let fixture = Fixture::default_key();
    let mut signed = sign_command(&command("a"), "default", &fixture.keys).unwrap();
    signed.key_id.clear();
    assert_eq!(fixture.verifier.verify_signed(&signed).unwrap().key_id(), "default");

    let other = KeyRing::with_key("default", "another-secret").unwrap();
    let forged = sign_command(&command("b"), "default", &other).unwrap();
    assert_eq!(fixture.verifier.verify_signed(&forged).unwrap_err().reason(), "invalid_signature");
}

#[test]
fn no_key_means_verifier_unavailable_including_after_the_last_key_is_removed() {
    let fixture = Fixture::default_key();
    let signed = sign_command(&command("a"), "default", &fixture.keys).unwrap();
    fixture.keys.remove("default");
    let unavailable = Rejection::VerifierUnavailable { cause: UnavailableCause::NoKeyConfigured };
    assert_eq!(fixture.verifier.verify_signed(&signed).unwrap_err(), unavailable);
    assert_eq!(fixture.verifier.verify_envelope_bytes(&signed.encode_to_vec()).unwrap_err(), unavailable);
    assert_eq!(fixture.verifier.verify_legacy_bytes(&signed.command).unwrap_err(), unavailable);
    assert_eq!(fixture.verifier.verify_legacy_bytes(&[]).unwrap_err(), unavailable);
    assert!(fixture.verifier.ledger().is_empty());
}

#[test]
fn signing_with_an_unknown_key_is_an_error() {
    let ring = KeyRing::with_key("a", "s").unwrap();
    assert!(matches!(sign_command(&command("x"), "b", &ring), Err(Error::UnknownKey { key_id }) if key_id == "b"));
}

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| vars.get(name).cloned()
}

#[test]
fn from_lookup_reads_the_secret_and_the_key_list() {
    let ring = KeyRing::from_lookup(lookup(&[
        ("ESPER_LEYLINE_SECRET", SECRET),
        ("ESPER_LEYLINE_KEYS", " k1:one , k2:two:with:colons ,"),
    ]))
    .unwrap();
    assert_eq!(ring.key_ids(), ["default", "k1", "k2"]);
    let message = b"payload";
    assert!(ring.get("k2").unwrap().verify(message, &kasmina_security::sign(b"two:with:colons", message)));
    assert!(ring.get("default").unwrap().verify(message, &kasmina_security::sign(SECRET.as_bytes(), message)));

    assert!(KeyRing::from_lookup(lookup(&[])).unwrap().is_empty());
    assert!(KeyRing::from_lookup(lookup(&[("ESPER_LEYLINE_SECRET", "")])).unwrap().is_empty());
}

#[rstest]
#[case::no_colon("k1", "expected id:secret")]
#[case::bad_id("a b:s", "invalid key id")]
#[case::empty_secret("k1:", "empty secret")]
#[case::duplicate("k1:a,k1:b", "more than once")]
#[case::duplicate_of_default("default:x", "more than once")]
fn from_lookup_rejects_bad_key_lists(#[case] list: &str, #[case] message: &str) {
    let err = KeyRing::from_lookup(lookup(&[("ESPER_LEYLINE_SECRET", "top"), ("ESPER_LEYLINE_KEYS", list)]))
        .unwrap_err()
        .to_string();
    assert!(err.contains(message), "{err}");
}

#[test]
fn key_files_load_and_their_errors_name_the_line_not_the_secret() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "# rotation 2026-09\n\nk-old = {OLD}\nk-new={NEW}\n").unwrap();
    let ring = KeyRing::from_file(file.path()).unwrap();
    assert_eq!(ring.key_ids(), ["k-new", "k-old"]);
    assert!(ring.get("k-old").unwrap().verify(b"x", &kasmina_security::sign(OLD.as_bytes(), b"x")));

    // Through the environment, beside the default secret.
    let path = file.path().to_str().unwrap();
    let ring =
        KeyRing::from_lookup(lookup(&[("ESPER_LEYLINE_SECRET", SECRET), ("ESPER_LEYLINE_KEY_FILE", path)])).unwrap();
    assert_eq!(ring.key_ids(), ["default", "k-new", "k-old"]);

    let err = KeyRing::parse_key_file("k1=a\nthis-line-holds-a-secret-without-equals\n", "keys.txt").unwrap_err();
    assert!(matches!(err, Error::KeyListSyntax { entry: 2, .. }));
    assert!(!err.to_string().contains("secret-without"), "{err}");
    assert!(matches!(KeyRing::parse_key_file("k=a\nk=b", "f").unwrap_err(), Error::DuplicateKey { .. }));
    assert!(matches!(KeyRing::from_file("/nonexistent/keys").unwrap_err(), Error::KeyFileRead { .. }));
}

#[test]
fn replace_with_swaps_every_key_at_once() {
    let fixture = Fixture::new(KeyRing::with_key("a", OLD).unwrap());
    fixture.keys.replace_with(&KeyRing::parse_key_file(&format!("b={NEW}"), "reload").unwrap());
    assert_eq!(fixture.verifier.keys().key_ids(), ["b"]);
    let signed = sign_command(&command("x"), "b", &KeyRing::with_key("b", NEW).unwrap()).unwrap();
    assert!(fixture.verifier.verify_signed(&signed).is_ok());
}

#[test]
fn invalid_key_ids_and_empty_secrets_are_refused() {
    let ring = KeyRing::new();
    assert!(matches!(ring.insert("", "s"), Err(Error::InvalidKeyId { .. })));
    assert!(matches!(ring.insert("a:b", "s"), Err(Error::InvalidKeyId { .. })));
    assert!(matches!(ring.insert("ok", ""), Err(Error::EmptySecret { key_id: Some(_) })));
    assert!(matches!(SigningKey::new(""), Err(Error::EmptySecret { key_id: None })));
    assert!(ring.is_empty());
    assert!(!ring.insert("ok", "s").unwrap());
    assert!(ring.insert("ok", "t").unwrap());
    assert!(ring.insert_key("other", SigningKey::new("u").unwrap()).is_ok());
    assert_eq!(ring.len(), 2);
    assert!(ring.contains("other"));
}

#[test]
fn debug_and_display_never_show_a_secret() {
    let fixture = Fixture::new(KeyRing::with_key("k-old", OLD).unwrap());
    fixture.keys.insert("k-new", NEW).unwrap();
    let signed = sign_command(&command("a"), "k-old", &fixture.keys).unwrap();
    let forged = SignedCommand { signature: "x".repeat(44), ..signed.clone() };
    let texts = [
        format!("{:?}", fixture.keys),
        format!("{:#?}", fixture.keys),
        format!("{:?}", fixture.verifier),
        format!("{:?}", SigningKey::new(OLD).unwrap()),
        format!("{:?}", fixture.keys.get("k-new").unwrap()),
        format!("{:?}", fixture.verifier.verify_signed(&forged).unwrap_err()),
        fixture.verifier.verify_signed(&forged).unwrap_err().to_string(),
        format!("{:?}", fixture.verifier.verify_signed(&signed).unwrap()),
    ];
    for text in &texts {
        for secret in [OLD, NEW] {
            assert!(!text.contains(secret), "secret in {text}");
        }
    }
    assert!(texts[0].contains("k-old") && texts[0].contains("k-new"), "{}", texts[0]);
    assert!(texts[3].contains("redacted"));
}
