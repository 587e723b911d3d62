//! Receipts tell the truth (decisions D14): queued, then final; deadlines; the pause quota.

use leyline::{CommandForm, CommandTransport, CommandType, ReceiptStatus, SeedLifecycleStage as Stage, SeedOperation};

use crate::harness::{Rig, config};

#[test]
fn a_queued_receipt_is_followed_by_its_final_receipt_including_a_refusal() {
    let mut rig = Rig::new(config());
    rig.train(5);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    let ticket = rig.kasmina.submit(&rig.sign(&cmd)).unwrap();
    assert_eq!((ticket.queued().reason.as_str(), ticket.queued().status()), ("queued", ReceiptStatus::Queued));
    assert!(ticket.queued().accepted);
    assert_eq!(rig.kasmina.receipt(&cmd.command_id).unwrap().reason, "queued");
    rig.step();
    let done = rig.kasmina.receipt(&cmd.command_id).unwrap();
    assert_eq!((done.reason.as_str(), done.status()), ("ok", ReceiptStatus::Applied));
    assert_eq!(ticket.try_receipt().unwrap(), done);
    let p = done.provenance.unwrap();
    assert_eq!(
        (p.key_id.as_str(), p.form(), p.transport()),
        ("default", CommandForm::Envelope, CommandTransport::InProcess)
    );

    // A request that is verified, queued, then refused at its safe point.
    let bad = rig.seed_op(SeedOperation::SeedOpStartGrafting, "no-such-seed", "");
    let ticket = rig.kasmina.submit(&rig.sign(&bad)).unwrap();
    assert!(ticket.queued().accepted);
    rig.step();
    let r = rig.kasmina.receipt(&bad.command_id).unwrap();
    assert!(!r.accepted);
    assert_eq!((r.reason.as_str(), r.status()), ("unknown_seed", ReceiptStatus::Refused));
    let events = rig.events("command_receipt");
    let final_of = |id: &str| events.iter().find(|e| e.attributes["command_id"] == id).cloned().unwrap();
    assert_eq!(final_of(&cmd.command_id).attributes["status"], "RECEIPT_STATUS_APPLIED");
    assert_eq!(final_of(&bad.command_id).attributes["reason"], "unknown_seed");
    assert_eq!(final_of(&bad.command_id).attributes["form"], "COMMAND_FORM_ENVELOPE");
}

#[test]
fn a_command_past_its_deadline_is_refused_and_changes_nothing() {
    let mut rig = Rig::new(config());
    rig.train(3);
    let before = rig.kasmina.export_seed_states();
    let mut cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "late-1", "BP001");
    cmd.execution_deadline_ms = 5;
    let ticket = rig.kasmina.submit(&rig.sign(&cmd)).unwrap();
    rig.mock.increment(std::time::Duration::from_millis(6));
    rig.step();
    let r = ticket.try_receipt().unwrap();
    assert_eq!((r.accepted, r.reason.as_str()), (false, "deadline_violation"));
    assert_eq!(rig.kasmina.export_seed_states(), before);
    assert!(rig.events("deadline_violation").iter().any(|e| e.attributes["command_id"] == cmd.command_id));

    // Within its deadline the same kind of command is applied.
    let mut cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "on-time-1", "BP001");
    cmd.execution_deadline_ms = 5;
    let r = rig.submit_and_step(&cmd);
    assert!(r.accepted, "{r:?}");
}

#[test]
fn an_exhausted_pause_quota_ends_the_pause_once() {
    let mut c = config();
    c.pause_quota = 3;
    let mut rig = Rig::new(c);
    rig.train(3);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    assert!(rig.submit_and_step(&cmd).accepted);
    let pause = rig.command(CommandType::CommandPause, "seed-1", None);
    assert!(rig.kasmina.apply(pause).accepted);
    assert_eq!(rig.kasmina.export_seed_states()[0].stage(), Stage::SeedStageTraining);
    for _ in 0..8 {
        rig.step();
    }
    let exhausted: Vec<_> = rig
        .events("pause")
        .into_iter()
        .filter(|e| e.attributes.get("quota").map(String::as_str) == Some("exhausted"))
        .collect();
    assert_eq!(exhausted.len(), 1, "the pause ends once, with one event");
    // The pause is over: the seed may be paused again (and resumed).
    let pause = rig.command(CommandType::CommandPause, "seed-1", None);
    assert!(rig.kasmina.apply(pause).accepted);
    let mut resume = rig.command(CommandType::CommandPause, "seed-1", None);
    resume.annotations.insert("resume".into(), "true".into());
    assert!(rig.kasmina.apply(resume).accepted);
    let mut bad = rig.command(CommandType::CommandPause, "seed-1", None);
    bad.annotations.insert("resume".into(), "yes".into());
    assert_eq!(rig.kasmina.apply(bad).reason, "invalid_annotation");
}

#[test]
fn a_bus_entry_is_verified_like_any_command_and_its_receipt_names_the_bus() {
    use leyline::Message;
    let mut rig = Rig::new(config());
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-bus", "BP001");
    let mut envelope = leyline::BusEnvelope { payload: cmd.encode_to_vec(), ..Default::default() };
    envelope.set_message_type(leyline::BusMessageType::AdaptationCommand);
    let bytes = envelope.encode_to_vec();
    let signature = kasmina_runtime::reexports::security::sign(crate::harness::SECRET.as_bytes(), &bytes);
    let ticket = rig.kasmina.submit_bus_entry(&bytes, &signature).unwrap();
    rig.step();
    let done = ticket.try_receipt().expect("applied at the safe point");
    assert!(done.accepted, "{done:?}");
    let p = done.provenance.unwrap();
    assert_eq!((p.form(), p.transport(), p.key_id.as_str()), (CommandForm::Bus, CommandTransport::Oona, "default"));
    assert_eq!(rig.kasmina.seed_summaries()[0].seed_id, "seed-bus");
    // Redelivered (at-least-once): a replay, answered at once, nothing changes.
    let again = rig.kasmina.submit_bus_entry(&bytes, &signature).unwrap_err();
    assert_eq!(again.reason, "nonce_replayed");
    let forged = rig.kasmina.submit_bus_entry(&bytes, "AAAA").unwrap_err();
    assert_eq!(forged.reason, "invalid_signature");
}
