//! Kasmina's seed manager: seed slots inside a host model, the blueprint library, signed command
//! handling and the training-driven lifecycle, composed from the domain crates over candle.
//!
//! Layer L2: it composes `leyline` and the seven domain crates (`kasmina-lifecycle`, `-safety`,
//! `-isolation`, `-registry`, `-memory`, `-security`, `-telemetry`); binaries and servers sit
//! above it. It is the only crate that wires breakers around operations, turns domain events
//! into telemetry and owns tensors of seeds.
//!
//! Main types: [`Kasmina`] (built with [`Kasmina::builder`]), [`SeedSlot`] (a slot in the host
//! model's forward), [`StepReport`] / [`EpochReport`] (what the trainer reports at each safe
//! point), [`BlueprintRuntime`] / [`BlueprintLibrary`] (where kernels come from).
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
//! for step in 0..100 {
//!     let h = l1.forward(&x)?.relu()?;
//!     let h = slot.forward(&h)?; // D4 per stage
//!     let loss = l2.forward(&h)?.sqr()?.mean_all()?;
//!     let grads = loss.backward()?;
//!     // ... the host optimiser steps with `grads` ...
//!     kasmina.on_step(&grads, StepReport::new(loss.to_scalar::<f32>()?))?;
//! }
//! kasmina.on_epoch(EpochReport { epoch: 0, val_loss: 0.5, val_acc: 0.8 })?;
//! let states = kasmina.export_seed_states();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Commands arrive signed ([`Kasmina::submit`]) or in process from the trusted trainer
//! ([`Kasmina::apply`]); either way they are applied at a safe point, between steps.

pub mod blueprint;
mod cache;
mod commands;
mod config;
mod driver;
mod error;
mod events;
mod export;
pub mod guard;
pub mod kd;
mod manager;
mod report;
mod seed;
mod slot;
mod time;

pub use blueprint::{BlueprintLibrary, BlueprintRuntime, FetchError, KernelArtifact, KernelKind, SeedKernel};
pub use commands::OK;
pub use config::{G4Metric, KasminaConfig};
pub use error::{Error, Result};
pub use manager::{Kasmina, KasminaBuilder, Ticket};
pub use report::{EpochOutcome, EpochReport, FossilizedSeed, RuntimeStats, SeedSummary, StepOutcome, StepReport};
pub use slot::SeedSlot;

/// Re-exports of the lower crates, so a trainer depends on the runtime alone.
pub mod reexports {
    pub use kasmina_security as security;
    pub use kasmina_telemetry as telemetry;
    pub use leyline;
}
