//! Key rings: rotation, loading from the environment and files, and no secret in any output.

use std::collections::HashMap;
use std::io::Write as _;

use kasmina_security::{
    Error, KEY_ID_ANNOTATION, KeyRing, MIN_SECRET_LEN, Rejection, SigningKey, UnavailableCause, sign_command,
    sign_legacy,
};
use leyline::{CommandForm, Message, SignedCommand};
use rstest::rstest;

use crate::{Fixture, SECRET, command};

const OLD: &str = "old-secret-7f3a-2026";
const NEW: &str = "new-secret-91bc-2026";

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

    let other = KeyRing::with_key("default", "another-secret-0451").unwrap();
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
    let ring = KeyRing::with_key("a", OLD).unwrap();
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
        ("ESPER_LEYLINE_KEYS", " k1:one-secret-of-k1 , k2:two:with:colons:of:k2 ,"),
    ]))
    .unwrap();
    assert_eq!(ring.key_ids(), ["default", "k1", "k2"]);
    let message = b"payload";
    assert!(ring.get("k2").unwrap().verify(message, &kasmina_security::sign(b"two:with:colons:of:k2", message)));
    assert!(ring.get("default").unwrap().verify(message, &kasmina_security::sign(SECRET.as_bytes(), message)));

    assert!(KeyRing::from_lookup(lookup(&[])).unwrap().is_empty());
    assert!(KeyRing::from_lookup(lookup(&[("ESPER_LEYLINE_SECRET", "")])).unwrap().is_empty());
}

#[rstest]
#[case::no_colon("k1", "expected id:secret")]
#[case::bad_id("a b:s", "invalid key id")]
#[case::empty_secret("k1:", "empty secret")]
#[case::duplicate("k1:0123456789abcdef,k1:0123456789abcdef", "more than once")]
#[case::duplicate_of_default("default:0123456789abcdef", "more than once")]
#[case::weak_secret("k1:0123456789abcde", "15 bytes; at least 16")]
fn from_lookup_rejects_bad_key_lists(#[case] list: &str, #[case] message: &str) {
    let err = KeyRing::from_lookup(lookup(&[("ESPER_LEYLINE_SECRET", SECRET), ("ESPER_LEYLINE_KEYS", list)]))
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

    let err = KeyRing::parse_key_file(&format!("k1={OLD}\nthis-line-holds-a-secret-without-equals\n"), "keys.txt")
        .unwrap_err();
    assert!(matches!(err, Error::KeyListSyntax { entry: 2, .. }));
    assert!(!err.to_string().contains("secret-without"), "{err}");
    assert!(matches!(
        KeyRing::parse_key_file(&format!("k={OLD}\nk={NEW}"), "f").unwrap_err(),
        Error::DuplicateKey { .. }
    ));
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
    assert!(matches!(ring.insert("", OLD), Err(Error::InvalidKeyId { .. })));
    assert!(matches!(ring.insert("a:b", OLD), Err(Error::InvalidKeyId { .. })));
    assert!(matches!(ring.insert("ok", ""), Err(Error::EmptySecret { key_id: Some(_) })));
    assert!(matches!(SigningKey::new(""), Err(Error::EmptySecret { key_id: None })));
    assert!(ring.is_empty());
    assert!(!ring.insert("ok", OLD).unwrap());
    assert!(ring.insert("ok", NEW).unwrap());
    assert!(ring.insert_key("other", SigningKey::new(SECRET).unwrap()).is_ok());
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

/// A legacy command signed with `secret`, naming `key_id` in `annotations["key_id"]` when given.
fn legacy_bytes(id: &str, secret: &str, key_id: Option<&str>) -> Vec<u8> {
    let mut legacy = command(id);
    if let Some(key_id) = key_id {
        legacy.annotations.insert(KEY_ID_ANNOTATION.into(), key_id.into());
    }
    sign_legacy(&mut legacy, &SigningKey::new(secret).unwrap());
    legacy.encode_to_vec()
}

/// The legacy command travelling in an envelope with an empty signature and `key_id`.
fn in_envelope(bytes: Vec<u8>, key_id: &str) -> SignedCommand {
    SignedCommand { command: bytes, signature: String::new(), key_id: key_id.into() }
}

#[test]
fn a_legacy_command_naming_an_unknown_key_is_refused_even_when_another_key_signed_it() {
    let fixture = Fixture::default_key();
    fixture.keys.insert("k2", NEW).unwrap();
    let unknown = Rejection::UnknownKey { key_id: "nosuch".into() };

    // In the annotation: the default key's signature does not save it.
    let bytes = legacy_bytes("a", SECRET, Some("nosuch"));
    assert_eq!(fixture.verifier.verify_legacy_bytes(&bytes).unwrap_err(), unknown);
    assert_eq!(fixture.verifier.verify_signed(&in_envelope(bytes.clone(), "")).unwrap_err(), unknown);
    assert_eq!(fixture.verifier.verify_envelope_bytes(&in_envelope(bytes, "").encode_to_vec()).unwrap_err(), unknown);
    // In the envelope around a legacy command that names no key.
    let bytes = legacy_bytes("b", SECRET, None);
    assert_eq!(fixture.verifier.verify_signed(&in_envelope(bytes.clone(), "nosuch")).unwrap_err(), unknown);
    assert_eq!(
        fixture.verifier.verify_envelope_bytes(&in_envelope(bytes, "nosuch").encode_to_vec()).unwrap_err(),
        unknown
    );
    // Nothing was spent: the same commands without the bad key id are accepted.
    assert!(fixture.verifier.ledger().is_empty());
    assert!(fixture.verifier.verify_legacy_bytes(&legacy_bytes("a", SECRET, None)).is_ok());
    assert!(fixture.verifier.verify_signed(&in_envelope(legacy_bytes("b", SECRET, None), "")).is_ok());
}

#[test]
fn a_legacy_command_naming_a_key_is_checked_against_that_key_only() {
    let fixture = Fixture::default_key();
    fixture.keys.insert("k2", NEW).unwrap();

    // Named k2, signed by the default key: only k2 is tried.
    let wrong = legacy_bytes("a", SECRET, Some("k2"));
    let invalid = Rejection::InvalidSignature { key_id: Some("k2".into()) };
    assert_eq!(fixture.verifier.verify_legacy_bytes(&wrong).unwrap_err(), invalid);
    let wrong = legacy_bytes("b", SECRET, None);
    assert_eq!(fixture.verifier.verify_signed(&in_envelope(wrong, "k2")).unwrap_err(), invalid);

    // Named and signed by k2, in the annotation or in the envelope.
    let verified = fixture.verifier.verify_legacy_bytes(&legacy_bytes("c", NEW, Some("k2"))).unwrap();
    assert_eq!((verified.key_id(), verified.form()), ("k2", CommandForm::Legacy));
    assert_eq!(verified.command().annotations.get(KEY_ID_ANNOTATION).map(String::as_str), Some("k2"));
    let verified = fixture.verifier.verify_signed(&in_envelope(legacy_bytes("d", NEW, None), "k2")).unwrap();
    assert_eq!((verified.key_id(), verified.form()), ("k2", CommandForm::Legacy));
    // Both, agreeing.
    let verified = fixture.verifier.verify_signed(&in_envelope(legacy_bytes("e", NEW, Some("k2")), "k2")).unwrap();
    assert_eq!(verified.key_id(), "k2");
    // An empty key id names no key: every key of the ring is tried, as before.
    let verified = fixture.verifier.verify_legacy_bytes(&legacy_bytes("f", NEW, Some(""))).unwrap();
    assert_eq!(verified.key_id(), "k2");
    let verified = fixture.verifier.verify_signed(&in_envelope(legacy_bytes("g", SECRET, None), "")).unwrap();
    assert_eq!(verified.key_id(), "default");
}

#[test]
fn a_legacy_command_whose_envelope_and_annotation_name_different_keys_is_malformed() {
    let fixture = Fixture::default_key();
    fixture.keys.insert("k2", NEW).unwrap();
    let bytes = legacy_bytes("a", NEW, Some("k2"));
    let rejection = fixture.verifier.verify_signed(&in_envelope(bytes, "default")).unwrap_err();
    assert_eq!(rejection.reason(), "malformed_command", "{rejection}");
    // Two key_id entries on the wire are ambiguous too.
    let mut twice = legacy_bytes("b", NEW, Some("k2"));
    let mut other = leyline::AdaptationCommand::default();
    other.annotations.insert(KEY_ID_ANNOTATION.into(), "default".into());
    twice.extend_from_slice(&other.encode_to_vec());
    assert_eq!(fixture.verifier.verify_legacy_bytes(&twice).unwrap_err().reason(), "malformed_command");
    assert!(fixture.verifier.ledger().is_empty());
}

#[test]
fn secrets_shorter_than_16_bytes_are_refused() {
    assert_eq!(MIN_SECRET_LEN, 16);
    assert!(matches!(SigningKey::new("x"), Err(Error::WeakKey { key_id: None, min_len: 16, len: 1 })));
    assert!(matches!(SigningKey::new("0123456789abcde"), Err(Error::WeakKey { len: 15, .. })));
    SigningKey::new("0123456789abcdef").unwrap();
    // Empty is still its own error.
    assert!(matches!(SigningKey::new(""), Err(Error::EmptySecret { key_id: None })));

    let ring = KeyRing::new();
    let err = ring.insert("k", "short").unwrap_err();
    assert!(matches!(&err, Error::WeakKey { key_id: Some(id), min_len: 16, len: 5 } if id == "k"), "{err:?}");
    assert!(!err.to_string().contains("short"), "{err}");
    assert!(ring.is_empty());
    assert!(matches!(KeyRing::with_key("default", "x"), Err(Error::WeakKey { .. })));

    let err = KeyRing::from_lookup(lookup(&[("ESPER_LEYLINE_SECRET", "tiny")])).unwrap_err();
    assert!(matches!(&err, Error::WeakKey { key_id: Some(id), len: 4, .. } if id == "default"), "{err:?}");
    let err = KeyRing::from_lookup(lookup(&[("ESPER_LEYLINE_KEYS", "k1:tiny")])).unwrap_err();
    assert!(matches!(&err, Error::WeakKey { key_id: Some(id), .. } if id == "k1"), "{err:?}");
    let err = KeyRing::parse_key_file("k1=tiny\n", "keys.txt").unwrap_err();
    assert!(matches!(&err, Error::WeakKey { key_id: Some(id), .. } if id == "k1"), "{err:?}");
    assert!(!err.to_string().contains("tiny"), "{err}");
}

/// A key file `keys` holding two keys, with permission bits `mode`.
#[cfg(unix)]
fn key_file_with_mode(dir: &tempfile::TempDir, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.path().join(format!("keys-{mode:o}"));
    std::fs::write(&path, format!("k-old={OLD}\nk-new={NEW}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[cfg(unix)]
#[rstest]
#[case::world_readable(0o644)]
#[case::group_readable(0o640)]
#[case::others_readable(0o604)]
#[case::group_writable(0o620)]
#[case::others_executable(0o601)]
#[case::group_and_others_everything(0o777)]
fn a_key_file_open_to_group_or_others_is_refused_before_it_is_read(#[case] mode: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = key_file_with_mode(&dir, mode);
    let err = KeyRing::from_file(&path).unwrap_err();
    match &err {
        Error::KeyFilePermissions { path: refused, mode: found } => {
            assert_eq!(refused, &path);
            assert_eq!(*found, mode);
        }
        other => panic!("expected KeyFilePermissions, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(&format!("mode {mode:04o}")), "{message}");
    assert!(message.contains("chmod 600"), "{message}");
    assert!(!message.contains(OLD) && !format!("{err:?}").contains(OLD), "{message}");

    // Through `ESPER_LEYLINE_KEY_FILE` too.
    let path = path.to_str().unwrap();
    let err = KeyRing::from_lookup(lookup(&[("ESPER_LEYLINE_KEY_FILE", path)])).unwrap_err();
    assert!(matches!(err, Error::KeyFilePermissions { .. }), "{err:?}");
}

#[cfg(unix)]
#[rstest]
#[case::owner_read_write(0o600)]
#[case::owner_read_only(0o400)]
fn a_key_file_only_its_owner_may_access_is_loaded(#[case] mode: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = key_file_with_mode(&dir, mode);
    let ring = KeyRing::from_file(&path).unwrap();
    assert_eq!(ring.key_ids(), ["k-new", "k-old"]);
    let path = path.to_str().unwrap();
    let ring = KeyRing::from_lookup(lookup(&[("ESPER_LEYLINE_KEY_FILE", path)])).unwrap();
    assert_eq!(ring.key_ids(), ["k-new", "k-old"]);
}

#[cfg(unix)]
#[test]
fn a_directory_given_as_key_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(KeyRing::from_file(dir.path()).unwrap_err(), Error::KeyFileRead { .. }));
}

mod hmac_reference {
    //! The key state the crate keeps (and wipes) is its own HMAC over `sha2`'s compression
    //! function: it must agree with the `hmac` crate bit for bit.

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use hmac::{Hmac, Mac};
    use kasmina_security::{MIN_SECRET_LEN, SigningKey, sign};
    use proptest::prelude::*;

    fn reference(key: &[u8], data: &[u8]) -> String {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
        mac.update(data);
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// Around the block boundaries, and around the four-block batches the inner hash compresses
    /// at once (message lengths 248 and 256 need a fifth block for the padding).
    #[test]
    fn every_key_and_message_length_around_the_block_boundaries_agrees() {
        let lengths = [
            0, 1, 16, 31, 32, 33, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 191, 192, 193, 200, 247, 248, 255,
            256, 257, 311, 312, 320, 511, 512, 513, 1000,
        ];
        for key_len in lengths {
            let key: Vec<u8> = (0..key_len).map(|i| (i * 7 + 3) as u8).collect();
            for data_len in lengths {
                let data: Vec<u8> = (0..data_len).map(|i| (i * 13 + 1) as u8).collect();
                let expected = reference(&key, &data);
                assert_eq!(sign(&key, &data), expected, "key {key_len} data {data_len}");
                if key_len >= MIN_SECRET_LEN {
                    let signing = SigningKey::new(&key).unwrap();
                    assert_eq!(signing.sign(&data), expected, "key {key_len} data {data_len}");
                    assert!(signing.verify(&data, &expected));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_keys_and_messages_agree(
            key in prop::collection::vec(any::<u8>(), MIN_SECRET_LEN..300),
            data in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let expected = reference(&key, &data);
            prop_assert_eq!(sign(&key, &data), expected.clone());
            prop_assert_eq!(SigningKey::new(&key).unwrap().sign(&data), expected.clone());
            prop_assert_eq!(SigningKey::new(&key).unwrap().clone().sign(&data), expected);
        }
    }
}
