//! A replay never rewrites the receipt book. Regression test of a `sequences` fuzz finding: a
//! signed command delivered again after the freshness window was refused `stale_command`, and
//! that refusal replaced the command's final receipt in the book, so `GetReceipt` said the
//! command had been refused by the verifier when it had been applied (or refused at its safe
//! point). Anyone holding a captured command could rewrite its receipt this way.

use std::time::{Duration, UNIX_EPOCH};

use kasmina_runtime::Kasmina;
use kasmina_runtime::reexports::security::{KeyRing, sign_command};
use leyline::{AdaptationCommand, CommandForm, CommandType, ReceiptStatus, wkt::Timestamp};

use crate::harness::{NOW_UNIX, SECRET};

#[test]
fn a_replay_after_the_freshness_window_keeps_the_first_deliverys_receipt() {
    let (clock, mock) = quanta::Clock::mock();
    let wall = std::sync::Arc::clone(&mock);
    let keys = KeyRing::with_key("default", SECRET).unwrap();
    let kasmina = Kasmina::builder()
        .signing_keys(keys.clone())
        .clock(clock)
        .wall_clock(move || UNIX_EPOCH + Duration::from_secs(NOW_UNIX) + Duration::from_nanos(wall.value()))
        .build()
        .unwrap();
    let command = AdaptationCommand {
        command_id: "c-replayed".into(),
        command_type: CommandType::CommandPause as i32,
        target_seed_id: "seed-0".into(),
        issued_at: Some(Timestamp { seconds: NOW_UNIX as i64, nanos: 0 }),
        ..Default::default()
    };
    let signed = sign_command(&command, "default", &keys).unwrap();
    let ticket = kasmina.submit(&signed).unwrap();
    kasmina.safe_point();
    let first = ticket.try_receipt().unwrap();
    assert_eq!((first.reason.as_str(), first.status()), ("unknown_seed", ReceiptStatus::Refused));
    assert_eq!(first.provenance.as_ref().unwrap().form(), CommandForm::Envelope);

    // In the window: nonce_replayed; after it: stale_command. Neither touches the book.
    assert_eq!(kasmina.submit(&signed).unwrap_err().reason, "nonce_replayed");
    mock.increment(Duration::from_secs(61));
    assert_eq!(kasmina.submit(&signed).unwrap_err().reason, "stale_command");
    assert_eq!(kasmina.receipt("c-replayed"), Some(first));
}

#[test]
fn a_refused_first_delivery_is_still_recorded() {
    let keys = KeyRing::with_key("default", SECRET).unwrap();
    let kasmina = Kasmina::builder()
        .signing_keys(keys.clone())
        .wall_clock(|| UNIX_EPOCH + Duration::from_secs(NOW_UNIX + 3600))
        .build()
        .unwrap();
    let command = AdaptationCommand {
        command_id: "c-stale".into(),
        issued_at: Some(Timestamp { seconds: NOW_UNIX as i64, nanos: 0 }),
        ..Default::default()
    };
    let refusal = kasmina.submit(&sign_command(&command, "default", &keys).unwrap()).unwrap_err();
    assert_eq!(refusal.reason, "stale_command");
    assert_eq!(kasmina.receipt("c-stale"), Some(refusal));
}
