//! Command handling: receipts, refusals that change nothing, pause/resume, cull → embargo →
//! reset → dormant, breaker forcing, optimiser adjustments, rollback.

use leyline::adaptation_command::Payload;
use leyline::{
    CircuitBreakerState, CommandCircuitBreaker, CommandOptimizerAdjustment, CommandType, SeedLifecycleStage as Stage,
    SeedOperation, SignedCommand,
};

use crate::harness::{Rig, config};

fn germinated(rig: &mut Rig) {
    // Germinate once the host has plateaued, as Tamiyo would.
    rig.train(60);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    assert!(rig.submit_and_step(&cmd).accepted);
    rig.train(5);
    assert_eq!(rig.stage(), Stage::SeedStageTraining);
}

#[test]
fn rejected_commands_leave_every_seed_unchanged() {
    let mut rig = Rig::new(config());
    germinated(&mut rig);
    let before = rig.kasmina.export_seed_states();
    let mut receipts = Vec::new();

    // Envelope rejections.
    let good = rig.seed_op(SeedOperation::SeedOpCull, "seed-1", "");
    let mut forged = rig.sign(&good);
    forged.signature = "AAAA".repeat(11);
    receipts.push(rig.kasmina.submit(&forged).unwrap_err());
    let mut stale = good.clone();
    stale.issued_at = Some(leyline::wkt::Timestamp { seconds: 1_000, nanos: 0 });
    receipts.push(rig.kasmina.submit(&rig.sign(&stale)).unwrap_err());
    receipts.push(
        rig.kasmina
            .submit(&SignedCommand {
                command: good.command_id.clone().into_bytes(),
                signature: String::new(),
                key_id: "default".into(),
            })
            .unwrap_err(),
    );
    receipts.push(rig.kasmina.submit_bytes(&[0xff, 0x01, 0x02]).unwrap_err());

    // Request refusals.
    let cmds = vec![
        rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001"), // no free slot / live id
        rig.seed_op(SeedOperation::SeedOpGerminate, "seed-9", "BP404"),
        rig.seed_op(SeedOperation::SeedOpFossilize, "seed-1", ""), // wrong stage
        rig.seed_op(SeedOperation::SeedOpStabilize, "seed-1", ""),
        rig.seed_op(SeedOperation::SeedOpCull, "nobody", ""),
        rig.command(
            CommandType::CommandOptimizer,
            "seed-1",
            Some(Payload::OptimizerAdjustment(CommandOptimizerAdjustment {
                optimizer_id: "seed-1".into(),
                hyperparameters: [("lr".to_owned(), f32::NAN)].into(),
            })),
        ),
        rig.command(
            CommandType::CommandOptimizer,
            "seed-1",
            Some(Payload::OptimizerAdjustment(CommandOptimizerAdjustment {
                optimizer_id: "seed-1".into(),
                hyperparameters: [("momentum".to_owned(), 0.9)].into(),
            })),
        ),
        rig.command(
            CommandType::CommandCircuitBreaker,
            "",
            Some(Payload::CircuitBreaker(CommandCircuitBreaker {
                desired_state: CircuitBreakerState::CircuitStateUnknown as i32,
                rationale: "bad".into(),
            })),
        ),
        rig.command(CommandType::CommandStructuralPruning, "seed-1", None),
        rig.command(CommandType::CommandSeed, "seed-1", None),
    ];
    for cmd in cmds {
        receipts.push(rig.kasmina.apply(cmd));
    }
    let mut resume = rig.command(CommandType::CommandPause, "seed-1", None);
    resume.annotations.insert("resume".into(), "true".into());
    receipts.push(rig.kasmina.apply(resume)); // not paused

    for r in &receipts {
        assert!(!r.accepted, "{r:?}");
        assert!(!r.reason.is_empty() && r.reason != "ok", "{r:?}");
    }
    let reasons: Vec<&str> = receipts.iter().map(|r| r.reason.as_str()).collect();
    for expected in
        ["invalid_signature", "stale_command", "malformed_command", "unsupported_command", "breaker_command_invalid"]
    {
        assert!(reasons.contains(&expected), "{expected} missing from {reasons:?}");
    }
    assert_eq!(rig.kasmina.export_seed_states(), before);
    assert!(rig.events("command_rejected").len() >= receipts.len());
}

#[test]
fn replayed_command_is_rejected() {
    let mut rig = Rig::new(config());
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    let signed = rig.sign(&cmd);
    assert!(rig.kasmina.submit(&signed).is_ok());
    let replay = rig.kasmina.submit(&signed).unwrap_err();
    assert_eq!(replay.reason, "nonce_replayed");
}

#[test]
fn cull_walks_embargo_reset_dormant_on_the_fake_clock() {
    let mut rig = Rig::new(config());
    germinated(&mut rig);
    let cull = rig.seed_op(SeedOperation::SeedOpCull, "seed-1", "");
    let r = rig.submit_and_step(&cull);
    assert!(r.accepted, "{r:?}");
    assert_eq!(r.stage(), Stage::SeedStageEmbargoed);
    // A second cull does not shorten the embargo.
    rig.mock.increment(std::time::Duration::from_secs(20));
    let cull = rig.seed_op(SeedOperation::SeedOpCull, "seed-1", "");
    assert!(rig.submit_and_step(&cull).accepted);
    rig.step();
    assert_eq!(rig.stage(), Stage::SeedStageEmbargoed);
    rig.mock.increment(std::time::Duration::from_secs(11));
    rig.step();
    assert_eq!(rig.stage(), Stage::SeedStageResetting);
    rig.step();
    assert_eq!(rig.stage(), Stage::SeedStageDormant);
    let payload = rig.kasmina.rollback_payload("seed-1").unwrap();
    let reason = payload.fields.get("reason").and_then(|v| v.kind.clone());
    assert_eq!(reason, Some(leyline::wkt::value::Kind::StringValue("culled_by_command".into())));
    assert_eq!(rig.kasmina.export_seed_states()[0].seed_id, "seed-1");
}

#[test]
fn pause_uses_the_identity_kernel_and_resume_restores_it() {
    let mut rig = Rig::new(config());
    germinated(&mut rig);
    // Move to BLENDING so the slot's output differs from the host's.
    rig.train(60);
    assert!(
        matches!(rig.stage(), Stage::SeedStageBlending | Stage::SeedStageShadowing),
        "{:?} {:?}",
        rig.stage(),
        rig.kasmina.seed_summaries()[0].gates.last()
    );
    let x = rig.train.0.clone();
    let h = rig.host.l1.forward_t(&x);
    let with_seed = rig.slot.forward(&h).unwrap().to_vec2::<f32>().unwrap();

    let pause = rig.command(CommandType::CommandPause, "seed-1", None);
    let r = rig.kasmina.apply(pause);
    assert!(r.accepted, "{r:?}");
    let paused = rig.slot.forward(&h).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(paused, h.to_vec2::<f32>().unwrap(), "a paused seed is the identity");
    let stage = rig.stage();
    rig.step();
    assert_eq!(rig.stage(), stage, "a paused seed does not advance");

    let mut resume = rig.command(CommandType::CommandPause, "seed-1", None);
    resume.annotations.insert("resume".into(), "TRUE".into());
    let r = rig.kasmina.apply(resume);
    assert!(r.accepted, "{r:?}");
    let resumed = rig.slot.forward(&h).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(resumed, with_seed, "resume restores the same kernel");
    let names = rig.event_names();
    assert!(names.contains(&"pause".to_owned()) && names.contains(&"resume".to_owned()));
    let gates = rig.kasmina.seed_summaries()[0].gates.clone();
    let last_two: Vec<_> = gates[gates.len() - 2..].iter().map(|g| (g.gate(), g.passed)).collect();
    assert_eq!(
        last_two,
        vec![
            (leyline::SeedLifecycleGate::SeedGateG1GradientHealth, true),
            (leyline::SeedLifecycleGate::SeedGateG3Interface, true)
        ]
    );
}

#[test]
fn breaker_force_state_and_optimizer_adjustment() {
    let mut rig = Rig::new(config());
    germinated(&mut rig);
    let open = rig.command(
        CommandType::CommandCircuitBreaker,
        "",
        Some(Payload::CircuitBreaker(CommandCircuitBreaker {
            desired_state: CircuitBreakerState::CircuitStateOpen as i32,
            rationale: "maintenance".into(),
        })),
    );
    assert!(rig.kasmina.apply(open).accepted);
    assert_eq!(rig.kasmina.health().status(), leyline::HealthStatus::Unhealthy);
    let close = rig.command(
        CommandType::CommandCircuitBreaker,
        "",
        Some(Payload::CircuitBreaker(CommandCircuitBreaker {
            desired_state: CircuitBreakerState::CircuitStateClosed as i32,
            rationale: String::new(),
        })),
    );
    assert!(rig.kasmina.apply(close).accepted);
    assert_eq!(rig.kasmina.health().status(), leyline::HealthStatus::Healthy);

    let adjust = rig.command(
        CommandType::CommandOptimizer,
        "seed-1",
        Some(Payload::OptimizerAdjustment(CommandOptimizerAdjustment {
            optimizer_id: "seed-1".into(),
            hyperparameters: [("lr".to_owned(), 0.005), ("weight_decay".to_owned(), 0.01)].into(),
        })),
    );
    assert!(rig.kasmina.apply(adjust).accepted);
    assert!((rig.kasmina.export_seed_states()[0].learning_rate - 0.005).abs() < 1e-7);
}

#[test]
fn rollback_restores_the_slot_and_records_its_payload_in_budget() {
    let mut rig = Rig::new(config());
    germinated(&mut rig);
    let rollback = rig.command(CommandType::CommandRollback, "seed-1", None);
    let r = rig.kasmina.apply(rollback);
    assert!(r.accepted, "{r:?}");
    assert_eq!(rig.stage(), Stage::SeedStageEmbargoed);
    let (_, payload, ms) = rig.kasmina.rollback_payloads().remove(0);
    assert!(ms < 500.0, "fast rollback took {ms} ms");
    for key in ["seed_id", "stage", "reason", "step", "epoch"] {
        assert!(payload.fields.contains_key(key), "{key}");
    }
    // Slot output is the host's own again.
    let h = rig.host.l1.forward_t(&rig.train.0);
    assert_eq!(rig.slot.forward(&h).unwrap().to_vec2::<f32>().unwrap(), h.to_vec2::<f32>().unwrap());
}

#[test]
fn nan_loss_is_refused_without_changing_state() {
    let mut rig = Rig::new(config());
    germinated(&mut rig);
    let before = rig.kasmina.export_seed_states();
    let h = rig.host.l1.forward_t(&rig.train.0);
    let grads = h.sum_all().unwrap().backward().unwrap();
    let err = rig.kasmina.on_step(&grads, kasmina_runtime::StepReport::new(f32::NAN)).unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");
    assert_eq!(rig.kasmina.export_seed_states(), before);
}

trait ForwardT {
    fn forward_t(&self, x: &candle_core::Tensor) -> candle_core::Tensor;
}

impl ForwardT for candle_nn::Linear {
    fn forward_t(&self, x: &candle_core::Tensor) -> candle_core::Tensor {
        candle_core::Module::forward(self, x).unwrap()
    }
}

#[test]
fn the_alpha_ramp_is_steered_by_command_parameters() {
    let mut c = config();
    c.auto_advance = false;
    let mut rig = Rig::new(c);
    rig.train(10);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    assert!(rig.submit_and_step(&cmd).accepted);
    let start = rig.seed_op(SeedOperation::SeedOpStartTraining, "seed-1", "");
    assert!(rig.kasmina.apply(start).accepted);
    rig.train(40);
    let alpha = |rig: &Rig| rig.kasmina.export_seed_states()[0].metrics["alpha"];
    let with_params = |rig: &mut Rig, op: SeedOperation, params: &[(&str, f32)]| {
        let mut cmd = rig.seed_op(op, "seed-1", "");
        if let Some(Payload::SeedOperation(o)) = cmd.payload.as_mut() {
            o.parameters = params.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        }
        rig.kasmina.apply(cmd)
    };
    let bad = with_params(&mut rig, SeedOperation::SeedOpStartGrafting, &[("alpha_target", 1.5)]);
    assert_eq!((bad.accepted, bad.reason.as_str()), (false, "invalid_parameter"));
    assert_eq!(rig.stage(), Stage::SeedStageTraining, "a bad parameter changes nothing");
    // A partial blend: linear to 0.5 over 10 steps, then hold there.
    let r = with_params(
        &mut rig,
        SeedOperation::SeedOpStartGrafting,
        &[("alpha_steps", 10.0), ("alpha_curve", 0.0), ("alpha_target", 0.5)],
    );
    assert!(r.accepted, "{r:?}");
    rig.train(10);
    assert_eq!(alpha(&rig), 0.5);
    rig.train(5);
    assert_eq!(alpha(&rig), 0.5, "held at the target");
    // G2 would refuse a partial blend (alpha_schedule_incomplete): retarget to 1 first.
    let r = with_params(&mut rig, SeedOperation::SeedOpFineTune, &[("alpha_target", 1.0)]);
    assert!(r.accepted, "{r:?}");
    rig.train(12);
    assert_eq!(alpha(&rig), 1.0, "the ramp reaches exactly 1");
    assert_eq!(rig.stage(), Stage::SeedStageBlending);
}

/// A flood of bad commands does not become a flood of telemetry: 20 rejection events a second
/// are published one by one, the rest are counted into one summary, and health says
/// `command_flood` (DEGRADED) while it lasts.
#[test]
fn a_flood_of_forged_commands_is_rate_limited_in_telemetry() {
    let mut rig = Rig::new(config());
    rig.train(2);
    let before = rig.events("command_rejected").len();
    for i in 0..1_000 {
        let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, &format!("s{i}"), "BP001");
        let mut forged = rig.sign(&cmd);
        forged.signature = "AAAA".into();
        assert_eq!(rig.kasmina.submit(&forged).unwrap_err().reason, "invalid_signature");
    }
    assert_eq!(rig.events("command_rejected").len() - before, 20);
    assert_eq!(rig.kasmina.health().summary, "command_flood");
    assert_eq!(rig.kasmina.stats().commands_rejected, 1_000, "every rejection is counted");
    // The next second: the suppressed ones are summarised in one event.
    rig.mock.increment(std::time::Duration::from_secs(1));
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "late", "BP001");
    let mut forged = rig.sign(&cmd);
    forged.signature = "AAAA".into();
    let _ = rig.kasmina.submit(&forged);
    let summary: Vec<_> = rig
        .events("command_rejected")
        .into_iter()
        .filter(|e| e.attributes.get("reason").map(String::as_str) == Some("rate_limited"))
        .collect();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].attributes["suppressed"], "980");
    rig.mock.increment(std::time::Duration::from_secs(11));
    assert_ne!(rig.kasmina.health().summary, "command_flood");
}

#[test]
fn a_germination_with_a_padded_blueprint_id_or_a_bidi_seed_id_is_refused_and_changes_nothing() {
    let mut rig = Rig::new(config());
    rig.train(60);
    let before = rig.kasmina.export_seed_states();
    for (seed_id, blueprint, reason) in [
        ("seed-1", "BP001 ", "blueprint_unknown"),
        ("seed-1", " BP001", "blueprint_unknown"),
        ("seed-1", "BP001\n", "blueprint_unknown"),
        ("seed-\u{202E}1", "BP001", "invalid_seed_id"),
        ("seed-\u{2066}1", "BP001", "invalid_seed_id"),
        ("seed-\u{200F}1", "BP001", "invalid_seed_id"),
    ] {
        let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, seed_id, blueprint);
        // Signed and through the queue, as a remote controller sends it.
        let receipt = rig.submit_and_step(&cmd);
        assert!(!receipt.accepted, "{blueprint:?}: {receipt:?}");
        assert_eq!(receipt.reason, reason, "{seed_id:?} {blueprint:?}");
        assert_eq!(rig.stage(), Stage::SeedStageDormant);
        assert_eq!(rig.kasmina.export_seed_states(), before, "{seed_id:?} {blueprint:?}");
    }
    // Each refusal is G0's: a failed gate_event naming the exact id asked for.
    let refused: Vec<(String, String)> = rig
        .events("gate_event")
        .iter()
        .filter(|e| e.attributes.get("passed").map(String::as_str) == Some("false"))
        .map(|e| (e.attributes["blueprint_id"].clone(), e.attributes["reason"].clone()))
        .collect();
    assert_eq!(refused.len(), 6, "{refused:?}");
    assert_eq!(refused[0], ("BP001 ".to_owned(), "blueprint_unknown".to_owned()));
    // The exact id germinates: the refusals left the slot free and the seed id unused.
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    assert!(rig.submit_and_step(&cmd).accepted);
}
