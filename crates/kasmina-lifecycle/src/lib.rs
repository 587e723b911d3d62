//! The 11-stage seed lifecycle over Leyline stages, its guard gates G0–G5 and the timed
//! embargo/reset path.
//!
//! Layer L1 (a domain crate): it depends only on `leyline` and small external crates (`quanta`
//! for the injected monotonic clock, `thiserror`), never on another Kasmina crate. It emits no
//! telemetry: the gate and embargo events it produces are returned as values
//! ([`leyline::GateEvent`], [`EmbargoEvent`]) for the runtime to publish.
//!
//! - [`table`]: the transition table of decisions D1 ([`is_legal`], [`legal_targets`]) and the
//!   gate that guards each move (D2, [`gate_for`]), over [`leyline::SeedLifecycleStage`] only.
//! - [`gates`]: one evaluator per gate over typed evidence ([`GateEvidence`]), each returning the
//!   [`leyline::GateEvent`] to emit; stable failure reasons in [`gates::reasons`].
//! - [`SeedLifecycle`]: one seed's stage, bounded history, gated moves, cull → timed embargo
//!   (D5) → RESETTING → G5 → DORMANT, and teardown.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use kasmina_lifecycle::{LifecycleConfig, SeedLifecycle, gates::*};
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
//! // G1 refuses without a kernel: the caller emits the event and starts the failure path.
//! let err = seed.guarded_transition(Stage::SeedStageTraining, &GerminatedEvidence::default().into()).unwrap_err();
//! assert!(err.to_string().contains(reasons::KERNEL_NOT_ATTACHED));
//! let start = seed.cull(reasons::KERNEL_NOT_ATTACHED, seed.clock().now()).unwrap();
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
pub use gates::GateEvidence;
pub use seed::{
    DEFAULT_EMBARGO, DEFAULT_HISTORY_CAPACITY, EmbargoEvent, FixedWallClock, LifecycleConfig, SeedLifecycle,
    SystemWallClock, TransitionOutcome, TransitionRecord, WallClock,
};
pub use table::{MoveKind, gate_for, is_legal, legal_targets};
