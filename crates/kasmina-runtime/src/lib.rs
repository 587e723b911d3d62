//! Kasmina's seed manager: seed slots inside a host model, the blueprint library, signed command
//! handling and the training-driven lifecycle, composed from the domain crates over candle.
//!
//! Layer L2: it composes `leyline`, `kasmina-clock` and the seven domain crates
//! (`kasmina-lifecycle`, `-safety`, `-isolation`, `-registry`, `-memory`, `-security`,
//! `-telemetry`); binaries and servers sit above it. It is the only crate that wires breakers
//! around operations, turns domain events into telemetry and owns tensors of seeds.
//!
//! Main types: [`Kasmina`] (built with [`Kasmina::builder`]), [`SeedSlot`] (a slot in the host
//! model's forward), [`StepReport`] / [`EpochReport`] (what the trainer reports at each safe
//! point), [`BlueprintRuntime`] / [`BlueprintLibrary`] (where kernels come from), [`Refusal`]
//! and [`CullCause`] (why a command was refused, why a seed was culled).
//!
//! Inside, data flows one way (`docs/decisions.md` D15): a command is parsed once into a typed
//! request (`command`), a safe point (`drive`) observes each seed and hands the evidence to the
//! seed's state machine (`seed`), which returns effects that the handle performs (`perform`)
//! and publishes (`publish`).
//!
//! How a trainer (Esper's Tolaria) embeds it:
//!
//! ```no_run
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{Module, VarBuilder, VarMap, linear};
//! use kasmina_runtime::{EpochReport, Kasmina, StepReport, blueprint::builtin};
//!
//! let device = Device::Cpu;
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
//! let (l1, l2) = (linear(4, 16, vb.pp("l1"))?, linear(16, 2, vb.pp("l2"))?);
//! let kasmina = Kasmina::builder()
//!     .device(device.clone())
//!     .host_varmap(&varmap)
//!     .blueprints(builtin::write_library("blueprints", &[16], 0)?)
//!     .build()?;
//! let slot = kasmina.slot("hidden", 16)?;
//! let x = Tensor::randn(0f32, 1.0, (32, 4), &device)?;
//! let forward = |x: &Tensor| -> candle_core::Result<Tensor> {
//!     let h = slot.forward(&l1.forward(x)?.relu()?).map_err(candle_core::Error::msg)?; // D4 per stage
//!     l2.forward(&h)?.sqr()?.mean_all()
//! };
//! for step in 0..100 {
//!     let loss = forward(&x)?;
//!     let grads = loss.backward()?;
//!     // ... the host optimiser steps with `grads` ...
//!     // Seeds in TRAINING learn on their shadow loss: the same batch with the slot's output
//!     // taken from the seed, reported as a tensor (Kasmina backpropagates it to the seed only).
//!     let mut report = StepReport::new(loss.to_scalar::<f32>()?);
//!     for name in kasmina.shadow_slots() {
//!         let shadow = kasmina.with_shadow(&name, || forward(&x))??;
//!         report = report.with_shadow_loss_tensor(name, &shadow)?;
//!     }
//!     kasmina.on_step(&grads, report)?;
//! }
//! // Each epoch, before `on_epoch`: the loss of each of a fixed set of validation batches,
//! // forward only; Kasmina runs it as is and with each shadowing or probationary seed's slot
//! // bypassed (its counterfactual contribution, gates G3/G4).
//! let val = (0..4).map(|_| Tensor::randn(0f32, 1.0, (32, 4), &device));
//! let val: Vec<Tensor> = val.collect::<candle_core::Result<_>>()?;
//! kasmina.evaluate_counterfactual(|| {
//!     val.iter()
//!         .map(|x| {
//!             let h = slot.forward(&l1.forward(x)?.relu()?).map_err(candle_core::Error::msg)?;
//!             l2.forward(&h)?.sqr()?.mean_all()?.to_scalar::<f32>()
//!         })
//!         .collect()
//! })?;
//! kasmina.on_epoch(EpochReport { epoch: 0, val_loss: 0.5, val_acc: 0.8 })?;
//! let states = kasmina.export_seed_states();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Commands arrive signed ([`Kasmina::submit`]) or in process from the trusted trainer
//! ([`Kasmina::apply`]); either way they are applied at a safe point, between steps, and each
//! gets one final receipt ([`Kasmina::receipt`]).
//!
//! At a safe point the whole state can be saved beside the trainer's ([`Kasmina::save_checkpoint`],
//! [`TrainerState`]) and restored in a new process ([`Checkpoint::load_latest`],
//! [`Kasmina::restore_checkpoint`]), checked first and bit-identical on the CPU
//! (`docs/checkpoint.md`); seeds train with [`AdamW`], whose state a checkpoint keeps.

mod attach;
pub mod blueprint;
pub mod breakers;
mod builder;
mod checkpoint;
mod clock;
mod command;
mod config;
mod drive;
mod error;
mod events;
mod export;
mod handle;
pub mod kd;
mod memory;
mod optim;
mod perform;
mod publish;
mod readout;
mod receipt;
mod report;
mod seed;
mod slot;
mod state;

pub use blueprint::{BlueprintLibrary, BlueprintRuntime, FetchError, KernelArtifact, KernelKind, SeedKernel};
pub use breakers::BreakerName;
pub use builder::KasminaBuilder;
pub use checkpoint::{
    Checkpoint, CheckpointError, KASMINA_TENSORS, MANIFEST, SCHEMA_VERSION, SavedCheckpoint, TrainerState, sha256_hex,
};
pub use config::{KasminaConfig, TrainingMode};
pub use error::{Error, Result};
pub use handle::{Kasmina, Ticket};
pub use kasmina_isolation::Layout;
pub use optim::{AdamW, AdamWState};
pub use receipt::{OK, Origin, QUEUED, Refusal};
pub use report::{
    CounterfactualReport, EpochOutcome, EpochReport, FossilizedSeed, Gauges, RuntimeStats, SeedSummary, StepOutcome,
    StepReport,
};
pub use seed::CullCause;
pub use slot::SeedSlot;

/// Re-exports of the lower crates, so a trainer depends on the runtime alone.
pub mod reexports {
    pub use kasmina_security as security;
    pub use kasmina_telemetry as telemetry;
    pub use leyline;
}
