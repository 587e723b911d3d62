//! The whole germinate → fossilize path through the runtime, driven by training evidence.

use leyline::{SeedLifecycleStage as Stage, SeedOperation};

use crate::harness::{Rig, config, host_alone};

#[test]
fn signed_germinate_goes_all_the_way_to_fossilized_and_beats_the_host_alone() {
    let mut rig = Rig::new(config());
    // The host trains alone until it plateaus.
    rig.train(60);
    let (loss_before, _) = rig.validate();
    assert_eq!(rig.stage(), Stage::SeedStageDormant);

    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    let receipt = rig.submit_and_step(&cmd);
    assert!(receipt.accepted, "{receipt:?}");
    assert_eq!(receipt.reason, "ok");
    assert_eq!(receipt.seed_id, "seed-1");

    let (seen, fossilized) = rig.grow_to_fossilized(400);
    let expected = [
        Stage::SeedStageTraining,
        Stage::SeedStageBlending,
        Stage::SeedStageShadowing,
        Stage::SeedStageProbationary,
        Stage::SeedStageFossilized,
    ];
    for s in expected {
        assert!(
            seen.contains(&s),
            "never reached {s:?}; path {seen:?}; gates {:?}",
            rig.kasmina.seed_summaries()[0].gates
        );
    }
    let summary = &rig.kasmina.seed_summaries()[0];
    assert_eq!(
        summary.stages,
        vec![
            Stage::SeedStageDormant,
            Stage::SeedStageGerminated,
            Stage::SeedStageTraining,
            Stage::SeedStageBlending,
            Stage::SeedStageShadowing,
            Stage::SeedStageProbationary,
            Stage::SeedStageFossilized
        ]
    );
    // Every gate of the path passed, G0 to G4, and each was reported.
    assert!(summary.gates.iter().all(|g| g.passed), "{:?}", summary.gates);
    assert_eq!(summary.gates.len(), 6, "{:?}", summary.gates);
    assert!(summary.isolation_checks > 0);
    assert_eq!(summary.isolation_violations, 0);
    assert_eq!(fossilized.len(), 1, "the seed's parameters are handed to the host optimiser once");
    assert!(!fossilized[0].vars.is_empty());

    // The fossilized seed keeps training with the host; compare with the host alone for the
    // same total number of steps.
    rig.train(60);
    let (loss_after, acc_after) = rig.validate();
    let (alone_loss, alone_acc) = host_alone(rig.step);
    assert!(loss_after < loss_before, "validation loss {loss_after} not below {loss_before} before the seed");
    assert!(
        loss_after < alone_loss && acc_after > alone_acc,
        "with seed: loss {loss_after} acc {acc_after}; host alone: loss {alone_loss} acc {alone_acc}"
    );

    // Telemetry tells the story: gate events with seed_id, gate name and passed.
    let gates = rig.events("gate_event");
    assert!(gates.iter().any(|e| e.attributes.get("gate").map(String::as_str) == Some("SEED_GATE_G4_SYSTEM_IMPACT")
        && e.attributes.get("passed").map(String::as_str) == Some("true")
        && e.attributes.get("seed_id").map(String::as_str) == Some("seed-1")));
    let states = rig.kasmina.export_seed_states();
    assert_eq!(states[0].seed_id, "seed-1");
    assert_eq!(states[0].stage(), Stage::SeedStageFossilized);
    assert!(states[0].age_epochs > 0);
    assert_eq!(states[0].layer_depth, 1);
}

/// No shock (decisions D4): around every stage transition of a seed that grows to FOSSILIZED,
/// the train loss's 20-step moving average over the 50 steps after it never exceeds 1.5x its
/// 50-step average before it.
#[test]
fn growing_a_seed_never_shocks_training() {
    let mut rig = Rig::new(config());
    rig.train(60);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    assert!(rig.submit_and_step(&cmd).accepted);
    let mut transitions = vec![rig.step as usize];
    let mut last = rig.stage();
    for _ in 0..400 {
        rig.step();
        if rig.step.is_multiple_of(10) {
            rig.epoch();
        }
        if rig.stage() != last {
            transitions.push(rig.step as usize);
            last = rig.stage();
        }
    }
    assert_eq!(rig.stage(), Stage::SeedStageFossilized, "{:?}", rig.kasmina.seed_summaries()[0].gates);
    let losses = &rig.losses;
    let mean = |xs: &[f32]| xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64;
    let mut checked = 0;
    for &t in transitions.iter().filter(|&&t| t >= 50 && t + 50 <= losses.len()) {
        let before = mean(&losses[t - 50..t]);
        for i in t..t + 50 {
            let moving = mean(&losses[i.saturating_sub(19)..=i]);
            assert!(moving <= 1.5 * before, "step {i} after the transition at {t}: {moving} > 1.5 x {before}");
        }
        checked += 1;
    }
    assert!(checked >= 4, "transitions checked: {checked} of {transitions:?}");
}
