//! `kasmina sign`: the printed `SignedCommand` decodes and verifies with the same key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kasmina_runtime::reexports::leyline::CommandForm;
use kasmina_runtime::reexports::security::{CommandVerifier, KeyRing};
use leyline::adaptation_command::Payload;
use leyline::{CommandType, Message, SeedOperation, SignedCommand};

use crate::{SECRET, kasmina};

fn verifier() -> CommandVerifier {
    CommandVerifier::new(KeyRing::with_key("default", SECRET).unwrap())
}

fn sign(args: &[&str]) -> String {
    let out = kasmina().arg("sign").args(args).output().unwrap();
    assert!(out.status.success(), "sign failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const GERMINATE: [&str; 10] =
    ["--type", "seed", "--op", "germinate", "--seed-id", "s-1", "--blueprint", "BP001", "--slot", "hidden1"];

#[test]
fn sign_prints_a_base64_envelope_that_verifies() {
    let text = sign(&GERMINATE);
    let signed = SignedCommand::decode(STANDARD.decode(&text).unwrap().as_slice()).unwrap();
    assert_eq!(signed.key_id, "default");
    assert_eq!(signed.signature.len(), 44);
    let verified = verifier().verify_signed(&signed).unwrap();
    assert_eq!(verified.form(), CommandForm::Envelope);
    let command = verified.command();
    assert_eq!(command.command_type(), CommandType::CommandSeed);
    assert_eq!(command.target_seed_id, "s-1");
    assert!(command.issued_at.is_some());
    assert!(command.command_id.starts_with("cli-"), "{}", command.command_id);
    assert_eq!(command.annotations.get("slot").map(String::as_str), Some("hidden1"));
    let Some(Payload::SeedOperation(op)) = &command.payload else { panic!("no seed operation: {command:?}") };
    assert_eq!(op.operation(), SeedOperation::SeedOpGerminate);
    assert_eq!(op.blueprint_id, "BP001");
}

#[test]
fn sign_legacy_and_json_outputs_verify() {
    let legacy = sign(&[&GERMINATE[..], &["--legacy", "--output", "json"]].concat());
    let signed: SignedCommand = serde_json::from_str(&legacy).unwrap();
    assert!(signed.signature.is_empty());
    let verified = verifier().verify_signed(&signed).unwrap();
    assert_eq!(verified.form(), CommandForm::Legacy);
    assert_eq!(verified.command().target_seed_id, "s-1");
}

#[test]
fn sign_with_a_key_file_and_a_json_command() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# rotation\nops-2=another-secret-01\n").unwrap();
    // Key files must not be open to group or others (the default umask gives 0644).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let json = dir.path().join("cmd.json");
    std::fs::write(&json, r#"{"commandId":"fixed-1","commandType":"COMMAND_EMERGENCY","issuedBy":"ops"}"#).unwrap();
    let text = sign(&["--json", json.to_str().unwrap(), "--key-file", keys.to_str().unwrap(), "--key-id", "ops-2"]);
    let signed = SignedCommand::decode(STANDARD.decode(&text).unwrap().as_slice()).unwrap();
    assert_eq!(signed.key_id, "ops-2");
    // The default key does not verify it; the key file's does.
    assert_eq!(verifier().verify_signed(&signed).unwrap_err().reason(), "unknown_key");
    let ring = KeyRing::with_key("ops-2", "another-secret-01").unwrap();
    let verified = CommandVerifier::new(ring).verify_signed(&signed).unwrap();
    assert_eq!(verified.command().command_id, "fixed-1");
    assert_eq!(verified.command().command_type(), CommandType::CommandEmergency);
}

#[test]
fn sign_without_a_key_or_with_bad_flags_fails() {
    let out = kasmina().env_remove("ESPER_LEYLINE_SECRET").args(["sign", "--type", "emergency"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ESPER_LEYLINE_SECRET"));
    let out = kasmina().args(["sign", "--type", "seed", "--op", "germinate", "--seed-id", "s"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--blueprint"));
}
