//! TERMINATED is reachable from every non-terminal stage (decisions D1): an authenticated
//! `SEED_OP_CANCEL` with `annotations["terminate"] = "true"`.

use std::time::Duration;

use leyline::{SeedLifecycleStage as Stage, SeedOperation};

use crate::harness::{Rig, config};

/// A rig whose seed `seed-1` is in `target`.
fn rig_in(target: Stage) -> Rig {
    let mut c = config();
    c.auto_advance = target != Stage::SeedStageGerminated;
    let mut rig = Rig::new(c);
    // As in the happy path: the host plateaus first.
    rig.train(60);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    assert!(rig.submit_and_step(&cmd).accepted);
    if matches!(target, Stage::SeedStageEmbargoed | Stage::SeedStageResetting | Stage::SeedStageDormant) {
        let cull = rig.seed_op(SeedOperation::SeedOpCull, "seed-1", "");
        assert!(rig.submit_and_step(&cull).accepted);
        if target != Stage::SeedStageEmbargoed {
            rig.mock.increment(Duration::from_secs(31));
            rig.step();
        }
        if target == Stage::SeedStageDormant {
            rig.step();
        }
    }
    for _ in 0..400 {
        if rig.stage() == target {
            break;
        }
        rig.step();
        if rig.step.is_multiple_of(10) {
            rig.epoch();
        }
    }
    assert_eq!(rig.stage(), target, "{:?}", rig.kasmina.seed_summaries()[0].gates);
    rig
}

#[test]
fn terminate_reaches_terminated_from_every_non_terminal_stage() {
    use Stage::*;
    for from in [
        SeedStageDormant,
        SeedStageGerminated,
        SeedStageTraining,
        SeedStageBlending,
        SeedStageShadowing,
        SeedStageProbationary,
        SeedStageFossilized,
        SeedStageEmbargoed,
        SeedStageResetting,
    ] {
        let mut rig = rig_in(from);
        let mut cmd = rig.seed_op(SeedOperation::SeedOpCancel, "seed-1", "");
        cmd.annotations.insert("terminate".into(), "true".into());
        let r = rig.submit_and_step(&cmd);
        assert!(r.accepted, "from {from:?}: {r:?}");
        assert_eq!(rig.stage(), SeedStageTerminated, "from {from:?}");
        // Cleaned as for G5: no kernel in the forward, nothing registered; absorbing.
        rig.step();
        assert_eq!(rig.stage(), SeedStageTerminated);
        let (loss, _) = rig.validate();
        assert!(loss.is_finite());
        let mut again = rig.seed_op(SeedOperation::SeedOpCancel, "seed-1", "");
        again.annotations.insert("terminate".into(), "true".into());
        let again = rig.submit_and_step(&again);
        assert_eq!((again.accepted, again.reason.as_str()), (false, "illegal_transition"), "from {from:?}");
        // The slot is free for a new seed.
        let next = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-2", "BP001");
        assert!(rig.submit_and_step(&next).accepted, "from {from:?}");
    }
}
