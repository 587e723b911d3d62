//! Receipts that tell the truth (decisions D14): the typed reasons a command is refused, the
//! provenance a receipt carries. The latest receipt of each command is kept by id in the memory
//! governor's telemetry buffer (the runtime's memory module).
//!
//! A receipt's `reason` is `queued` (verified, waiting for the next safe point), `ok` (applied at
//! a safe point) or the wire string of a [`Refusal`]. The strings are stable: clients match on
//! them.

use std::sync::Arc;

use kasmina_lifecycle::gates::GateReason;
use kasmina_memory::Weigh;
use leyline::{CommandForm, CommandReceipt, CommandTransport, Provenance, ReceiptStatus, SeedLifecycleStage as Stage};

/// Receipt reason of a command applied at a safe point.
pub const OK: &str = "ok";
/// Receipt reason of a verified command waiting for the next safe point.
pub const QUEUED: &str = "queued";

/// Why a command was refused. A refused command changes no seed's state; its receipt carries
/// [`Refusal::reason`] and `accepted = false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The envelope failed verification (the security layer's reason: `invalid_signature`,
    /// `nonce_replayed`, `stale_command`, ...).
    Envelope(&'static str),
    /// `COMMAND_STRUCTURAL_PRUNING`, `COMMAND_UNKNOWN` or an unknown command type.
    UnsupportedCommand,
    /// `SEED_OP_UNKNOWN` or an unknown seed operation.
    UnsupportedOperation,
    /// A `COMMAND_SEED` without its `seed_operation` payload.
    MissingSeedOperation,
    /// A `COMMAND_CIRCUIT_BREAKER` without its `circuit_breaker` payload.
    MissingCircuitBreaker,
    /// A `COMMAND_OPTIMIZER` without its `optimizer_adjustment` payload.
    MissingOptimizerAdjustment,
    /// No seed id in `target_seed_id` (or the prototype's `parameters["seed_id"]`).
    MissingSeedId,
    /// An annotation holds a value that does not parse (e.g. `resume = "yes"`).
    InvalidAnnotation,
    /// `annotations["slot"]` names no slot.
    UnknownSlot,
    /// Every slot holds a live seed.
    NoFreeSlot,
    /// The slot asked for holds a live seed.
    SlotOccupied,
    /// No seed with this id.
    UnknownSeed,
    /// The request's gate refused the move (the gate's reason is the wire string).
    Gate(GateReason),
    /// The kernel could not be fetched, instantiated or registered at germination.
    GerminationFailed,
    /// The move is not in the transition table from the seed's stage.
    IllegalTransition,
    /// The seed is paused; a stage request must wait for the resume.
    SeedPaused,
    /// The stage's evidence window is not complete yet.
    WindowIncomplete,
    /// FINE_TUNE outside TRAINING..PROBATIONARY.
    FineTuneNotAllowed,
    /// PAUSE outside the live stages.
    PauseNotAllowed,
    /// PAUSE of a paused seed.
    AlreadyPaused,
    /// Resume of a seed that is not paused.
    NotPaused,
    /// The server-wide pool of pause passes is empty until it refills.
    PauseQuotaExhausted,
    /// The breaker command names no breaker or asks for an unknown state.
    BreakerCommandInvalid,
    /// A command parameter outside its range (e.g. `alpha_target = 1.5`).
    InvalidParameter,
    /// An optimiser hyperparameter the runtime does not know.
    UnknownHyperparameter,
    /// An optimiser hyperparameter outside its range.
    InvalidHyperparameter,
    /// The seed has no optimiser (not live, or fossilized).
    SeedHasNoOptimizer,
    /// ROLLBACK of a seed that was never culled.
    NoRollbackPayload,
    /// The command's `execution_deadline_ms` passed between verification and its safe point.
    DeadlineViolation,
}

impl Refusal {
    /// The wire string of the receipt's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Envelope(reason) => reason,
            Self::UnsupportedCommand => "unsupported_command",
            Self::UnsupportedOperation => "unsupported_operation",
            Self::MissingSeedOperation => "missing_seed_operation",
            Self::MissingCircuitBreaker => "missing_circuit_breaker",
            Self::MissingOptimizerAdjustment => "missing_optimizer_adjustment",
            Self::MissingSeedId => "missing_seed_id",
            Self::InvalidAnnotation => "invalid_annotation",
            Self::UnknownSlot => "unknown_slot",
            Self::NoFreeSlot => "no_free_slot",
            Self::SlotOccupied => "slot_occupied",
            Self::UnknownSeed => "unknown_seed",
            Self::Gate(reason) => reason.as_str(),
            Self::GerminationFailed => "germination_failed",
            Self::IllegalTransition => "illegal_transition",
            Self::SeedPaused => "seed_paused",
            Self::WindowIncomplete => "window_incomplete",
            Self::FineTuneNotAllowed => "fine_tune_not_allowed",
            Self::PauseNotAllowed => "pause_not_allowed",
            Self::AlreadyPaused => "already_paused",
            Self::NotPaused => "not_paused",
            Self::PauseQuotaExhausted => "pause_quota_exhausted",
            Self::BreakerCommandInvalid => "breaker_command_invalid",
            Self::InvalidParameter => "invalid_parameter",
            Self::UnknownHyperparameter => "unknown_hyperparameter",
            Self::InvalidHyperparameter => "invalid_hyperparameter",
            Self::SeedHasNoOptimizer => "seed_has_no_optimizer",
            Self::NoRollbackPayload => "no_rollback_payload",
            Self::DeadlineViolation => "deadline_violation",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Where a command came from and who vouched for it (carried on every receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The key whose signature matched (empty for trusted commands).
    pub key_id: String,
    /// Envelope, legacy or trusted.
    pub form: CommandForm,
    /// How it reached the runtime.
    pub transport: CommandTransport,
}

impl Origin {
    /// An in-process command from the trainer that embeds the runtime.
    pub fn trusted() -> Self {
        Self { key_id: String::new(), form: CommandForm::Trusted, transport: CommandTransport::InProcess }
    }

    /// A verified command.
    pub fn verified(key_id: impl Into<String>, form: CommandForm, transport: CommandTransport) -> Self {
        Self { key_id: key_id.into(), form, transport }
    }

    pub(crate) fn provenance(&self) -> Provenance {
        Provenance { key_id: self.key_id.clone(), form: self.form as i32, transport: self.transport as i32 }
    }
}

/// The answer to one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Queued,
    Applied,
    Refused(Refusal),
}

impl Verdict {
    pub(crate) fn of(result: std::result::Result<(), Refusal>) -> Self {
        match result {
            Ok(()) => Self::Applied,
            Err(r) => Self::Refused(r),
        }
    }
}

/// Builds the receipt of `command_id` for `verdict`.
pub(crate) fn receipt(
    command_id: &str,
    verdict: Verdict,
    seed_id: &str,
    stage: Stage,
    origin: &Origin,
) -> CommandReceipt {
    let (accepted, reason, status) = match verdict {
        Verdict::Queued => (true, QUEUED, ReceiptStatus::Queued),
        Verdict::Applied => (true, OK, ReceiptStatus::Applied),
        Verdict::Refused(r) => (false, r.reason(), ReceiptStatus::Refused),
    };
    CommandReceipt {
        command_id: command_id.to_owned(),
        accepted,
        reason: reason.to_owned(),
        seed_id: seed_id.to_owned(),
        stage: stage as i32,
        status: status as i32,
        provenance: Some(origin.provenance()),
    }
}

/// A receipt as a cache value (weighed by its encoded size).
#[derive(Debug, Clone)]
pub(crate) struct StoredReceipt(pub(crate) Arc<CommandReceipt>);

impl Weigh for StoredReceipt {
    fn weigh_bytes(&self) -> u64 {
        leyline::Message::encoded_len(self.0.as_ref()) as u64 + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_strings_are_the_wire_strings() {
        assert_eq!(Refusal::Gate(GateReason::BlueprintUnknown).reason(), "blueprint_unknown");
        assert_eq!(Refusal::Envelope("nonce_replayed").to_string(), "nonce_replayed");
        assert_eq!(Refusal::DeadlineViolation.reason(), "deadline_violation");
    }

    #[test]
    fn receipts_carry_status_and_provenance() {
        let origin = Origin::verified("k1", CommandForm::Legacy, CommandTransport::Grpc);
        let r = receipt("c1", Verdict::Queued, "s", Stage::SeedStageUnknown, &origin);
        assert!(r.accepted);
        assert_eq!((r.reason.as_str(), r.status()), (QUEUED, ReceiptStatus::Queued));
        let p = r.provenance.unwrap();
        assert_eq!((p.key_id.as_str(), p.form(), p.transport()), ("k1", CommandForm::Legacy, CommandTransport::Grpc));
        let r = receipt("c1", Verdict::Refused(Refusal::UnknownSeed), "s", Stage::SeedStageUnknown, &origin);
        assert!(!r.accepted);
        assert_eq!(r.status(), ReceiptStatus::Refused);
    }
}
