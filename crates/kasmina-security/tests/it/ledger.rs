//! Checks after the signature: size, required fields, freshness bounds, and the nonce ledger's
//! memory bound, all on injected clocks.

use std::time::Duration;

use kasmina_security::{
    CommandVerifier, KeyRing, Rejection, UnavailableCause, VerifierConfig, sign_command, sign_legacy,
};
use leyline::wkt::Timestamp;
use leyline::{Message, SignedCommand};
use rstest::rstest;

use crate::{Fixture, NOW, SECRET, command};

fn signed(fixture: &Fixture, id: &str) -> SignedCommand {
    sign_command(&command(id), "default", &fixture.keys).unwrap()
}

#[rstest]
#[case::now(0, 0, "ok")]
#[case::edge_past(-60, 0, "ok")]
#[case::just_stale(-61, 999_999_999, "stale_command")]
#[case::stale(-61, 0, "stale_command")]
#[case::edge_future(60, 0, "ok")]
#[case::just_future(60, 1, "issued_in_future")]
#[case::far_future(3600, 0, "issued_in_future")]
#[case::epoch(-NOW, 0, "stale_command")]
#[case::extreme_past(-62_135_596_800 - NOW, 0, "stale_command")] // 0001-01-01T00:00:00Z
#[case::extreme_future(253_402_300_799 - NOW, 999_999_999, "issued_in_future")] // 9999-12-31T23:59:59.999999999Z
fn freshness_window_is_plus_minus_60_s_by_default(#[case] offset: i64, #[case] nanos: i32, #[case] reason: &str) {
    let fixture = Fixture::default_key();
    let mut cmd = command("f");
    cmd.issued_at = Some(Timestamp { seconds: NOW + offset, nanos });
    let outcome = fixture.verifier.verify_signed(&sign_command(&cmd, "default", &fixture.keys).unwrap());
    assert_eq!(outcome.map(|_| "ok").unwrap_or_else(|r| r.reason()), reason);
}

#[test]
fn freshness_bounds_are_configurable_separately() {
    let mut config = VerifierConfig::default();
    config.max_age = Duration::from_secs(10);
    config.max_future_skew = Duration::from_secs(5);
    let fixture = Fixture::with_config(KeyRing::with_key("default", SECRET).unwrap(), config);
    let at = |id: &str, offset: i64| {
        let mut cmd = command(id);
        cmd.issued_at = Some(Timestamp { seconds: NOW + offset, nanos: 0 });
        fixture.verifier.verify_signed(&sign_command(&cmd, "default", &fixture.keys).unwrap())
    };
    assert!(at("a", -10).is_ok());
    let stale = at("b", -11).unwrap_err();
    assert_eq!(stale, Rejection::StaleCommand { command_id: "b".into(), age: Duration::from_secs(11) });
    assert_eq!(stale.command_id(), Some("b"));
    assert!(at("c", 5).is_ok());
    assert_eq!(
        at("d", 6).unwrap_err(),
        Rejection::IssuedInFuture { command_id: "d".into(), ahead: Duration::from_secs(6) }
    );
}

#[test]
fn the_wall_clock_moving_turns_a_fresh_command_stale() {
    let fixture = Fixture::default_key();
    let envelope = signed(&fixture, "late");
    fixture.wall.advance(Duration::from_secs(61));
    assert_eq!(fixture.verifier.verify_signed(&envelope).unwrap_err().reason(), "stale_command");
    fixture.wall.set_unix(NOW);
    assert!(fixture.verifier.verify_signed(&envelope).is_ok());
}

#[test]
fn missing_fields_are_reported_in_order() {
    let fixture = Fixture::default_key();
    let mut no_id = command("");
    no_id.issued_at = None;
    let outcome = fixture.verifier.verify_signed(&sign_command(&no_id, "default", &fixture.keys).unwrap());
    assert_eq!(outcome.unwrap_err(), Rejection::MissingCommandId);

    let mut no_time = command("t");
    no_time.issued_at = None;
    let mut legacy = no_time.clone();
    sign_legacy(&mut legacy, &fixture.keys.get("default").unwrap());
    let rejection = fixture.verifier.verify_legacy_bytes(&legacy.encode_to_vec()).unwrap_err();
    assert_eq!(rejection, Rejection::MissingTimestamp { command_id: "t".into() });
    assert_eq!(rejection.command_id(), Some("t"));
}

#[test]
fn size_limit_comes_before_the_signature_and_is_configurable() {
    let mut config = VerifierConfig::default();
    config.max_command_bytes = 280;
    let fixture = Fixture::with_config(KeyRing::with_key("default", SECRET).unwrap(), config);
    let mut big = command("big");
    big.annotations.insert("padding".into(), "x".repeat(300));
    let mut envelope = sign_command(&big, "default", &fixture.keys).unwrap();
    let size = envelope.command.len();
    envelope.signature = "not even base64".into();
    assert_eq!(
        fixture.verifier.verify_signed(&envelope).unwrap_err(),
        Rejection::OversizedCommand { size, limit: 280 }
    );
    assert_eq!(
        fixture.verifier.verify_envelope_bytes(&envelope.encode_to_vec()).unwrap_err().reason(),
        "oversized_command"
    );
    let mut legacy = big.clone();
    sign_legacy(&mut legacy, &fixture.keys.get("default").unwrap());
    assert_eq!(
        fixture.verifier.verify_legacy_bytes(&legacy.encode_to_vec()).unwrap_err().reason(),
        "oversized_command"
    );
    // The default limit is 4 KiB.
    let default = Fixture::default_key();
    assert!(default.verifier.verify_signed(&sign_command(&big, "default", &default.keys).unwrap()).is_ok());
    big.annotations.insert("padding".into(), "x".repeat(4096));
    let outcome = default.verifier.verify_signed(&sign_command(&big, "default", &default.keys).unwrap());
    assert_eq!(outcome.unwrap_err().reason(), "oversized_command");
}

#[test]
fn malformed_inputs() {
    let fixture = Fixture::default_key();
    assert_eq!(fixture.verifier.verify_envelope_bytes(&[0xff, 0xff]).unwrap_err().reason(), "malformed_command");
    // An envelope with an empty signature whose command is no legacy command.
    let unsigned = SignedCommand { command: command("u").encode_to_vec(), ..Default::default() };
    assert_eq!(fixture.verifier.verify_signed(&unsigned).unwrap_err(), Rejection::MissingSignature);
    assert_eq!(fixture.verifier.verify_legacy_bytes(&[0x0a]).unwrap_err().reason(), "malformed_command");
}

#[test]
fn replay_is_refused_for_the_ttl_then_the_id_is_free_again() {
    let fixture = Fixture::default_key();
    let envelope = signed(&fixture, "r");
    assert!(fixture.verifier.verify_signed(&envelope).is_ok());
    fixture.mono.increment(Duration::from_secs(299));
    assert_eq!(fixture.verifier.verify_signed(&envelope).unwrap_err().reason(), "nonce_replayed");
    // The legacy form shares the ledger.
    let mut legacy = command("r");
    sign_legacy(&mut legacy, &fixture.keys.get("default").unwrap());
    assert_eq!(fixture.verifier.verify_legacy_bytes(&legacy.encode_to_vec()).unwrap_err().reason(), "nonce_replayed");
    fixture.mono.increment(Duration::from_secs(1));
    assert!(fixture.verifier.verify_signed(&envelope).is_ok());
}

#[test]
fn ledger_memory_stays_bounded_after_the_ttl() {
    let fixture = Fixture::default_key();
    let ledger = fixture.verifier.ledger();
    let mut max_len = 0;
    // 30 minutes at 10 commands per simulated second, the wall clock following along.
    for second in 0..1800u32 {
        for i in 0..10 {
            let envelope = signed(&fixture, &format!("s{second}-{i}"));
            assert!(fixture.verifier.verify_signed(&envelope).is_ok());
        }
        max_len = max_len.max(ledger.len());
        // Only the ledger's monotonic clock moves; the commands stay fresh on the fixed wall clock.
        fixture.mono.increment(Duration::from_secs(1));
    }
    // Live nonces: 300 s × 10/s, plus at most one second of not-yet-swept ones.
    assert!(max_len <= 3010, "ledger grew to {max_len}");
    fixture.mono.increment(Duration::from_secs(300));
    let held = ledger.len();
    assert!(held >= 3000, "{held}");
    assert_eq!(ledger.purge_expired(), held);
    assert!(ledger.is_empty());
}

#[test]
fn a_full_ledger_fails_closed_and_recovers_after_the_ttl() {
    let mut config = VerifierConfig::default();
    config.nonce_capacity = 100;
    let fixture = Fixture::with_config(KeyRing::with_key("default", SECRET).unwrap(), config);
    for i in 0..100 {
        assert!(fixture.verifier.verify_signed(&signed(&fixture, &format!("n{i}"))).is_ok());
    }
    assert_eq!(
        fixture.verifier.verify_signed(&signed(&fixture, "one-too-many")).unwrap_err(),
        Rejection::VerifierUnavailable { cause: UnavailableCause::NonceLedgerFull { capacity: 100 } }
    );
    assert_eq!(fixture.verifier.verify_signed(&signed(&fixture, "n5")).unwrap_err().reason(), "nonce_replayed");
    assert_eq!(fixture.verifier.ledger().len(), 100);
    fixture.mono.increment(Duration::from_secs(300));
    assert!(fixture.verifier.verify_signed(&signed(&fixture, "one-too-many")).is_ok());
    let held = fixture.verifier.ledger().len();
    assert!(held <= 100);
    assert_eq!(fixture.verifier.ledger().purge_expired(), held - 1);
    assert_eq!(fixture.verifier.ledger().len(), 1);
}

#[test]
fn default_verifier_judges_freshness_on_the_system_clock() {
    let verifier = CommandVerifier::new(KeyRing::with_key("default", SECRET).unwrap());
    assert_eq!(verifier.config(), &VerifierConfig::default());
    let keys = verifier.keys().clone();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let mut current = command("now");
    current.issued_at = Some(Timestamp { seconds: now.as_secs() as i64, nanos: 0 });
    assert!(verifier.verify_signed(&sign_command(&current, "default", &keys).unwrap()).is_ok());
    let mut old = command("old");
    old.issued_at = Some(Timestamp { seconds: now.as_secs() as i64 - 3600, nanos: 0 });
    let outcome = verifier.verify_signed(&sign_command(&old, "default", &keys).unwrap());
    assert_eq!(outcome.unwrap_err().reason(), "stale_command");
}

#[rstest]
#[case::negative_nanos(0, -1)]
#[case::nanos_of_a_whole_second(0, 1_000_000_000)]
#[case::nanos_of_two_seconds(0, 2_000_000_000)]
#[case::nanos_min(0, i32::MIN)]
#[case::nanos_max(0, i32::MAX)]
#[case::after_year_9999(253_402_300_800 - NOW, 0)]
#[case::before_year_1(-62_135_596_801 - NOW, 0)]
#[case::minus_year_9999(-253_402_300_800 - NOW, 0)]
#[case::seconds_max(i64::MAX - NOW, 0)]
#[case::seconds_min(i64::MIN + 1, 0)]
fn invalid_timestamps_are_malformed_before_freshness(#[case] offset: i64, #[case] nanos: i32) {
    let fixture = Fixture::default_key();
    let mut cmd = command("ts");
    cmd.issued_at = Some(Timestamp { seconds: NOW + offset, nanos });
    let rejection = fixture.verifier.verify_signed(&sign_command(&cmd, "default", &fixture.keys).unwrap()).unwrap_err();
    assert_eq!(rejection.reason(), "malformed_command", "{rejection}");
    // The command is authenticated by then: its id is reported.
    assert_eq!(rejection.command_id(), Some("ts"));
    assert!(rejection.to_string().contains("issued_at"), "{rejection}");
    let mut legacy = cmd.clone();
    sign_legacy(&mut legacy, &fixture.keys.get("default").unwrap());
    let rejection = fixture.verifier.verify_legacy_bytes(&legacy.encode_to_vec()).unwrap_err();
    assert_eq!(rejection.reason(), "malformed_command", "{rejection}");
    assert!(fixture.verifier.ledger().is_empty());
}

#[test]
fn timestamps_at_the_edges_of_the_valid_range_reach_the_freshness_check() {
    let fixture = Fixture::default_key();
    for (id, seconds, nanos, reason) in [
        ("max", 253_402_300_799, 999_999_999, "issued_in_future"),
        ("min", -62_135_596_800, 0, "stale_command"),
        ("nanos", NOW, 999_999_999, "ok"),
    ] {
        let mut cmd = command(id);
        cmd.issued_at = Some(Timestamp { seconds, nanos });
        let outcome = fixture.verifier.verify_signed(&sign_command(&cmd, "default", &fixture.keys).unwrap());
        assert_eq!(outcome.map(|_| "ok").unwrap_or_else(|r| r.reason()), reason, "{id}");
    }
}
