//! The 11-stage seed lifecycle over Leyline stages, its guard gates G0–G5 and the timed
//! embargo/reset path.
//!
//! Layer L1 (a domain crate): it depends only on the L0 crates `leyline` and `kasmina-clock` (the
//! injected wall clock that stamps gate events) and small external crates (`quanta` for the
//! injected monotonic clock, `thiserror`), never on another Kasmina domain crate. It emits no
//! telemetry: the gate and embargo events it produces are returned as values
//! ([`leyline::GateEvent`], [`EmbargoEvent`]) for the runtime to publish.
//!
//! - [`table`]: the transition table of decisions D1 ([`is_legal`], [`legal_targets`]) and the
//!   gate that guards each move (D2, [`gate_for`]), over [`leyline::SeedLifecycleStage`] only.
//! - [`gates`]: one evaluator per gate over typed evidence ([`GateEvidence`]) built from what was
//!   observed (D2, revised: G1 at TRAINING → BLENDING checks gradient health — seed gradient norms
//!   finite, neither vanishing nor exploding against the host's — with no "loss improved" test;
//!   G2 checks the hook and kernel-fetch latencies each against its own budget; G3 refuses a seed
//!   whose [`gates::Counterfactual`] contribution is significantly harmful and G4 requires it
//!   significantly positive, then every circuit breaker closed by name; G5 checks that the slot
//!   forwards the host activation unchanged), each returning the [`leyline::GateEvent`] to emit;
//!   a failure is a typed [`GateReason`] whose stable wire strings are listed in
//!   [`gates::reasons`]. A gate without its counterfactual refuses with the
//!   [retryable](GateReason::is_retryable) `counterfactual_missing`: no cull, ask again.
//! - [`SeedLifecycle`]: one seed's stage, bounded history, gated moves, cull → timed embargo
//!   (D5) → RESETTING → G5 → DORMANT ([`begin_cull`](SeedLifecycle::begin_cull) enters CULLED
//!   alone for a blend-out, a later `cull` starts the embargo), and teardown.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use kasmina_lifecycle::{Error, LifecycleConfig, SeedLifecycle, gates::*};
//! use leyline::{BlueprintDescriptor, SeedLifecycleStage as Stage};
//!
//! let (clock, mock) = quanta::Clock::mock();
//! let mut seed = SeedLifecycle::new("seed-1", clock, LifecycleConfig::default());
//! assert_eq!(seed.stage(), Stage::SeedStageDormant);
//!
//! // DORMANT -> GERMINATED is guarded by G0.
//! let blueprint = BlueprintDescriptor { blueprint_id: "BP001".into(), ..Default::default() };
//! let params = BTreeMap::new();
//! let g0 = SanityEvidence { blueprint_id: "BP001", blueprint: Some(&blueprint), parameters: &params, seed_already_live: false, shape_probe: None };
//! let outcome = seed.guarded_transition(Stage::SeedStageGerminated, &g0.into()).unwrap();
//! assert!(outcome.gate_event.unwrap().passed);
//!
//! // A gated move cannot be made without its gate.
//! assert!(seed.transition(Stage::SeedStageTraining).is_err());
//!
//! // G1 refuses without a kernel, with a typed reason: the caller emits the event and starts the
//! // failure path.
//! let reason = match seed.guarded_transition(Stage::SeedStageTraining, &GerminatedEvidence::default().into()) {
//!     Err(Error::GateFailed { reason, event, .. }) => {
//!         assert_eq!(event.reason, reasons::KERNEL_NOT_ATTACHED);
//!         reason
//!     }
//!     other => panic!("{other:?}"),
//! };
//! assert_eq!(reason, GateReason::KernelNotAttached);
//! let start = seed.cull(reason.as_str(), seed.clock().now()).unwrap();
//! assert_eq!(start.unwrap().name(), "embargo_start");
//! assert_eq!(seed.stage(), Stage::SeedStageEmbargoed);
//!
//! // The embargo (30 s by default) runs on the injected clock.
//! assert!(seed.poll(seed.clock().now()).is_none());
//! mock.increment(Duration::from_secs(30));
//! assert_eq!(seed.poll(seed.clock().now()).unwrap().name(), "embargo_end");
//! assert_eq!(seed.stage(), Stage::SeedStageResetting);
//!
//! // G3 and G4 read the seed's counterfactual contribution: per batch, the loss with the slot
//! // bypassed minus the loss with the seed in. Without one they refuse, retryably (no cull).
//! let (from, to) = (Stage::SeedStageProbationary, Stage::SeedStageFossilized);
//! let ctx = GateContext { seed_id: "seed-2", from, to, at: std::time::SystemTime::now() };
//! let mut g4 = SystemImpactEvidence {
//!     counterfactual: None,
//!     min_sigmas: DEFAULT_MIN_SIGMAS,
//!     min_mean: 0.0,
//!     isolation_violations: 0,
//!     breakers: &[],
//! };
//! let event = evaluate_g4_system_impact(&ctx, &g4);
//! assert_eq!(event.reason, reasons::COUNTERFACTUAL_MISSING);
//! assert!(GateReason::CounterfactualMissing.is_retryable());
//! g4.counterfactual = Counterfactual::from_differences(&[0.11, 0.09, 0.10, 0.12, 0.08]);
//! assert!(evaluate_g4_system_impact(&ctx, &g4).passed);
//! ```

mod error;
pub mod gates;
mod seed;
pub mod table;

pub use error::{Error, Result};
pub use gates::{GateEvidence, GateReason};
// The workspace's one wall clock, from `kasmina-clock`, re-exported so these paths keep working.
pub use kasmina_clock::{FixedWallClock, FnWallClock, SystemWallClock, WallClock};
pub use seed::{
    DEFAULT_EMBARGO, DEFAULT_HISTORY_CAPACITY, EmbargoEvent, LifecycleConfig, SavedLifecycle, SavedTransition,
    SeedLifecycle, TransitionOutcome, TransitionRecord,
};
pub use table::{MoveKind, gate_for, is_legal, legal_targets};
