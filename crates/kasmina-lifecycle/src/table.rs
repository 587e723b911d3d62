//! The transition table of decisions D1 and the gate assignment of D2, over Leyline stages only.

use leyline::SeedLifecycleGate as Gate;
use leyline::SeedLifecycleStage as Stage;

/// What kind of move a legal transition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoveKind {
    /// UNKNOWN → DORMANT: bringing a slot up from the wire default.
    Bootstrap,
    /// A forward move guarded by a gate (D2).
    Gated(Gate),
    /// A move on the failure path: active → CULLED, CULLED → EMBARGOED, EMBARGOED → RESETTING.
    FailurePath,
    /// Administrative teardown: any non-terminal stage → TERMINATED (D1).
    Teardown,
}

const ACTIVE: [Stage; 5] = [
    Stage::SeedStageGerminated,
    Stage::SeedStageTraining,
    Stage::SeedStageBlending,
    Stage::SeedStageShadowing,
    Stage::SeedStageProbationary,
];

/// Classifies the move `from → to`: `None` when the table of D1 does not allow it.
///
/// A move to the same stage is never legal.
pub fn classify(from: Stage, to: Stage) -> Option<MoveKind> {
    use Stage::*;
    if to == SeedStageTerminated {
        return (from != SeedStageTerminated).then_some(MoveKind::Teardown);
    }
    let kind = match (from, to) {
        (SeedStageUnknown, SeedStageDormant) => MoveKind::Bootstrap,
        (SeedStageDormant, SeedStageGerminated) => MoveKind::Gated(Gate::SeedGateG0Sanity),
        (SeedStageGerminated, SeedStageTraining) => MoveKind::Gated(Gate::SeedGateG1GradientHealth),
        (SeedStageTraining, SeedStageBlending) => MoveKind::Gated(Gate::SeedGateG1GradientHealth),
        (SeedStageBlending, SeedStageShadowing) => MoveKind::Gated(Gate::SeedGateG2Stability),
        (SeedStageShadowing, SeedStageProbationary) => MoveKind::Gated(Gate::SeedGateG3Interface),
        (SeedStageProbationary, SeedStageFossilized) => MoveKind::Gated(Gate::SeedGateG4SystemImpact),
        (SeedStageResetting, SeedStageDormant) => MoveKind::Gated(Gate::SeedGateG5Reset),
        (f, SeedStageCulled) if is_active(f) => MoveKind::FailurePath,
        (SeedStageCulled, SeedStageEmbargoed) | (SeedStageEmbargoed, SeedStageResetting) => MoveKind::FailurePath,
        _ => return None,
    };
    Some(kind)
}

/// Whether `from → to` is in the transition table (D1).
pub fn is_legal(from: Stage, to: Stage) -> bool {
    classify(from, to).is_some()
}

/// The gate that guards `from → to` (D2), or `None` for an ungated or illegal move.
pub fn gate_for(from: Stage, to: Stage) -> Option<Gate> {
    match classify(from, to) {
        Some(MoveKind::Gated(gate)) => Some(gate),
        _ => None,
    }
}

/// Every stage `from` may move to, in wire-number order.
pub fn legal_targets(from: Stage) -> &'static [Stage] {
    use Stage::*;
    match from {
        SeedStageUnknown => &[SeedStageDormant, SeedStageTerminated],
        SeedStageDormant => &[SeedStageGerminated, SeedStageTerminated],
        SeedStageGerminated => &[SeedStageTraining, SeedStageCulled, SeedStageTerminated],
        SeedStageTraining => &[SeedStageBlending, SeedStageCulled, SeedStageTerminated],
        SeedStageBlending => &[SeedStageShadowing, SeedStageCulled, SeedStageTerminated],
        SeedStageShadowing => &[SeedStageProbationary, SeedStageCulled, SeedStageTerminated],
        SeedStageProbationary => &[SeedStageFossilized, SeedStageCulled, SeedStageTerminated],
        SeedStageFossilized => &[SeedStageTerminated],
        SeedStageCulled => &[SeedStageEmbargoed, SeedStageTerminated],
        SeedStageEmbargoed => &[SeedStageResetting, SeedStageTerminated],
        SeedStageResetting => &[SeedStageDormant, SeedStageTerminated],
        SeedStageTerminated => &[],
    }
}

/// The live stages a seed can be culled from: GERMINATED, TRAINING, BLENDING, SHADOWING and
/// PROBATIONARY. A gate failure in one of them starts the failure path (D2).
pub fn is_active(stage: Stage) -> bool {
    ACTIVE.contains(&stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_targets_agree_with_classify() {
        for &from in Stage::ALL {
            let listed: Vec<Stage> = legal_targets(from).to_vec();
            let derived: Vec<Stage> = Stage::ALL.iter().copied().filter(|&to| is_legal(from, to)).collect();
            assert_eq!(listed, derived, "from {from}");
        }
    }

    #[test]
    fn every_gate_but_unknown_guards_a_move() {
        for &gate in &Gate::ALL[1..] {
            let guarded = Stage::ALL.iter().any(|&f| Stage::ALL.iter().any(|&t| gate_for(f, t) == Some(gate)));
            assert!(guarded, "{gate} guards nothing");
        }
    }
}
