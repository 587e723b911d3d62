//! The one error type of this crate.

use std::time::Duration;

use leyline::{GateEvent, SeedLifecycleGate, SeedLifecycleStage};

use crate::gates::GateReason;

/// Everything a lifecycle operation can refuse. A refused operation leaves the seed unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The move is not in the transition table (decisions D1).
    #[error("illegal transition from {} to {}", from.short_name(), to.short_name())]
    IllegalTransition {
        /// The stage the seed is in.
        from: SeedLifecycleStage,
        /// The stage that was requested.
        to: SeedLifecycleStage,
    },
    /// The move is guarded by a gate: it must go through `guarded_transition` with evidence.
    #[error("transition from {} to {} requires gate {}", from.short_name(), to.short_name(), gate.short_name())]
    GateRequired {
        /// The stage the seed is in.
        from: SeedLifecycleStage,
        /// The stage that was requested.
        to: SeedLifecycleStage,
        /// The gate that guards the move.
        gate: SeedLifecycleGate,
    },
    /// `guarded_transition` was asked for a move that no gate guards (use `transition`, `cull`,
    /// `poll` or `terminate`).
    #[error("transition from {} to {} is not gated", from.short_name(), to.short_name())]
    NotGated {
        /// The stage the seed is in.
        from: SeedLifecycleStage,
        /// The stage that was requested.
        to: SeedLifecycleStage,
    },
    /// The evidence given is for another gate or another move than the one requested.
    #[error(
        "evidence for {} does not fit the transition from {} to {} (gate {})",
        evidence.short_name(), from.short_name(), to.short_name(), expected.short_name()
    )]
    EvidenceMismatch {
        /// The stage the seed is in.
        from: SeedLifecycleStage,
        /// The stage that was requested.
        to: SeedLifecycleStage,
        /// The gate that guards the move.
        expected: SeedLifecycleGate,
        /// The gate the evidence was built for.
        evidence: SeedLifecycleGate,
    },
    /// The gate ran and refused the move. `event` is the failed [`GateEvent`] to emit; the seed
    /// stays where it was and the caller starts the failure path (`cull`) where the stage allows.
    #[error("gate {} refused transition from {} to {}: {reason}", gate.short_name(), from.short_name(), to.short_name())]
    GateFailed {
        /// The gate that refused.
        gate: SeedLifecycleGate,
        /// The stage the seed is in.
        from: SeedLifecycleStage,
        /// The stage that was requested.
        to: SeedLifecycleStage,
        /// Why the gate refused (the first failed check); `event.reason` is its wire string.
        reason: GateReason,
        /// The gate event, `passed == false`.
        event: Box<GateEvent>,
    },
    /// EMBARGOED → RESETTING was requested before the embargo elapsed.
    #[error("seed {seed_id} is embargoed for another {} ms", remaining.as_millis())]
    EmbargoActive {
        /// The seed.
        seed_id: String,
        /// Time left until the embargo ends.
        remaining: Duration,
    },
    /// A saved lifecycle (a checkpoint's) that no lifecycle could have reached.
    #[error("saved lifecycle of seed {seed_id} is inconsistent: {reason}")]
    InvalidSaved {
        /// The seed.
        seed_id: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
