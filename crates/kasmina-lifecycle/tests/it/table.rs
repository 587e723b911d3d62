//! The full 12 × 12 table against decisions D1 and the gate assignment of D2.

use kasmina_lifecycle::{MoveKind, gate_for, is_legal, legal_targets, table::classify};
use leyline::{SeedLifecycleGate as Gate, SeedLifecycleStage as Stage};

/// D1 written out, one row per stage: the legal targets and the gate (D2) of each, `-` for none.
/// Every stage but TERMINATED may also go to TERMINATED, ungated (administrative teardown).
const D1: &[(&str, &[(&str, &str)])] = &[
    ("UNKNOWN", &[("DORMANT", "-")]),
    ("DORMANT", &[("GERMINATED", "G0_SANITY")]),
    ("GERMINATED", &[("TRAINING", "G1_GRADIENT_HEALTH"), ("CULLED", "-")]),
    ("TRAINING", &[("BLENDING", "G1_GRADIENT_HEALTH"), ("CULLED", "-")]),
    ("BLENDING", &[("SHADOWING", "G2_STABILITY"), ("CULLED", "-")]),
    ("SHADOWING", &[("PROBATIONARY", "G3_INTERFACE"), ("CULLED", "-")]),
    ("PROBATIONARY", &[("FOSSILIZED", "G4_SYSTEM_IMPACT"), ("CULLED", "-")]),
    ("FOSSILIZED", &[]),
    ("CULLED", &[("EMBARGOED", "-")]),
    ("EMBARGOED", &[("RESETTING", "-")]),
    ("RESETTING", &[("DORMANT", "G5_RESET")]),
    ("TERMINATED", &[]),
];

fn stage(name: &str) -> Stage {
    Stage::parse_name(name).unwrap()
}

/// The expectation for `from → to` from the literal table: `None` = illegal, `Some(gate)` legal.
fn expected(from: Stage, to: Stage) -> Option<Option<Gate>> {
    if to == Stage::SeedStageTerminated {
        return (from != Stage::SeedStageTerminated).then_some(None);
    }
    let (_, row) = D1.iter().find(|(f, _)| stage(f) == from).unwrap();
    row.iter().find(|(t, _)| stage(t) == to).map(|(_, g)| (*g != "-").then(|| Gate::parse_name(g).unwrap()))
}

#[test]
fn every_pair_of_stages_matches_d1() {
    assert_eq!(D1.len(), Stage::ALL.len());
    let mut legal = 0;
    for &from in Stage::ALL {
        for &to in Stage::ALL {
            let want = expected(from, to);
            assert_eq!(is_legal(from, to), want.is_some(), "{from} -> {to}");
            assert_eq!(gate_for(from, to), want.flatten(), "{from} -> {to}");
            assert_eq!(legal_targets(from).contains(&to), want.is_some(), "{from} -> {to}");
            legal += usize::from(want.is_some());
        }
    }
    // 15 moves of the prototype's table + 11 teardowns.
    assert_eq!(legal, 26);
}

#[test]
fn move_kinds_are_classified() {
    use Stage::*;
    assert_eq!(classify(SeedStageUnknown, SeedStageDormant), Some(MoveKind::Bootstrap));
    assert_eq!(classify(SeedStageTraining, SeedStageCulled), Some(MoveKind::FailurePath));
    assert_eq!(classify(SeedStageCulled, SeedStageEmbargoed), Some(MoveKind::FailurePath));
    assert_eq!(classify(SeedStageEmbargoed, SeedStageResetting), Some(MoveKind::FailurePath));
    assert_eq!(classify(SeedStageFossilized, SeedStageTerminated), Some(MoveKind::Teardown));
    assert_eq!(classify(SeedStageResetting, SeedStageDormant), Some(MoveKind::Gated(Gate::SeedGateG5Reset)));
    assert_eq!(classify(SeedStageDormant, SeedStageCulled), None);
    assert_eq!(classify(SeedStageTerminated, SeedStageTerminated), None);
}

#[test]
fn terminated_is_absorbing_and_no_stage_moves_to_itself() {
    assert!(legal_targets(Stage::SeedStageTerminated).is_empty());
    for &s in Stage::ALL {
        assert!(!is_legal(s, s), "{s}");
        assert!(!is_legal(s, Stage::SeedStageUnknown), "{s} -> UNKNOWN");
    }
}
