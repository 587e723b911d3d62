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
//!   observed (G2 checks the hook and kernel-fetch latencies each against its own budget, G4 every
//!   circuit breaker by name, G5 that the slot forwards the host activation unchanged), each
//!   returning the [`leyline::GateEvent`] to emit; a failure is a typed [`GateReason`] whose
//!   stable wire strings are listed in [`gates::reasons`].
//! - [`SeedLifecycle`]: one seed's stage, bounded history, gated moves, cull → timed embargo
//!   (D5) → RESETTING → G5 → DORMANT, and teardown.
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
//! let g0 = SanityEvidence { blueprint_id: "BP001", blueprint: Some(&blueprint), parameters: &params, seed_already_live: false };
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
    DEFAULT_EMBARGO, DEFAULT_HISTORY_CAPACITY, EmbargoEvent, LifecycleConfig, SeedLifecycle, TransitionOutcome,
    TransitionRecord,
};
pub use table::{MoveKind, gate_for, is_legal, legal_targets};
