//! Gradient isolation for seeds on candle: the per-mode slot forward, the alpha controller and
//! the monitor that proves a seed's branch never produces a gradient on a host parameter.
//!
//! Layer L1 (domain crate): depends only on `leyline` and external crates (candle-core, quanta,
//! thiserror), never on another Kasmina crate; `kasmina-runtime` composes it, maps each seed's
//! stage to a [`SlotMode`], and turns the reports into telemetry and breaker events.
//!
//! # The slot forward (decisions D4, revised)
//!
//! Seeds are residual: the kernel computes a delta `d = kernel(sg(h))` from the host activation
//! `h` (`sg` = detach), and [`slot_forward`] combines the two according to a [`SlotMode`]. The
//! seed reads `h` detached until FOSSILIZED (isolation lives at the seed's input); **the host
//! branch is never detached**, so the layers upstream of a slot keep learning from the task loss
//! in every stage.
//!
//! | mode | stages | output | gradient into `h` | gradient into the seed |
//! |---|---|---|---|---|
//! | [`SlotMode::Transparent`] | DORMANT, GERMINATED, EMBARGOED, RESETTING, TERMINATED, paused | `h` (kernel not run) | identity | none |
//! | [`SlotMode::StraightThrough`] | TRAINING | `h + (d - sg(d))` (value `h`) | identity, bit-identical to no seed | what `h` receives |
//! | [`SlotMode::Blend`] `{ alpha }` | BLENDING | `h + alpha * d` | identity | `alpha` × upstream |
//! | [`SlotMode::Full`] | SHADOWING, PROBATIONARY | `h + d` | identity | upstream |
//! | [`SlotMode::Fossil`] `{ grad_scale }` | FOSSILIZED | `h + delta(h)` | identity + `grad_scale` × through the kernel | upstream |
//! | [`SlotMode::BlendOut`] `{ alpha }` | CULLED, blend-out | `h + alpha * sg(d)` | identity | none (frozen) |
//!
//! Its parts: [`seed_input`] (`sg(h)`), [`straight_through`] (TRAINING), [`blend`]
//! (`h + alpha * delta`), and [`seed_output`], the seed's residual output `input + kernel(input)`
//! that the probe re-runs.
//!
//! [`guarded_slot_forward`] is the same forward with the non-finite guard on the device: it
//! returns, beside the output, a scalar that is NaN when the seed's delta held a NaN or an
//! infinity, and its output already bypasses such a delta (emits `h`), so the caller never reads
//! the device inside the forward (issue 19). The blend, straight-through and residual-add forms
//! run as fused kernels (one pass, forward and backward) for f32, bf16 and f16 on the CPU and,
//! with the `cuda` feature, on CUDA devices.
//!
//! # Alpha
//!
//! [`AlphaController`] ramps alpha from exactly 0.0 to exactly its target (1.0 unless a partial
//! blend) along an [`AlphaCurve`] (linear, cosine, rescaled sigmoid), with hold, continuous
//! retargeting and the linear blend-out to exactly 0.0 after a cull; gate G2 reads
//! [`AlphaController::is_complete`]. The prototype's [`AlphaSchedule`] (plain sigmoid, with the
//! [`BlendPhase`] hysteresis) is kept for compatibility.
//!
//! # Isolation monitor (decisions D6)
//!
//! [`IsolationMonitor`]: the projection probe over one row of the seed's real input
//! ([`SeedBranch::input`] through [`Probe::rerun`]), the shared-parameter check, the dot product
//! and gradient norms, returned as an [`IsolationReport`]. [`IsolationMonitor::measure`] and
//! [`IsolationMonitor::conclude`] split a check around its device read, so that a runtime can
//! read every check of a training step (and its other figures) in one transfer.
//!
//! The crate is device-generic. Its `cuda` feature adds the CUDA kernels of the fused forms
//! (compiled by the build script with `nvcc`) and runs the same tests on a GPU too.
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use kasmina_isolation::{AlphaController, AlphaCurve, IsolationMonitor, MonitorConfig, Probe, SlotMode, slot_forward};
//! use leyline::SeedLifecycleStage as Stage;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = Device::Cpu;
//! let w_host = Var::randn(0f32, 0.1, (4, 4), &dev)?;
//! let w_seed = Var::zeros((4, 4), DType::F32, &dev)?;
//! let x = Tensor::randn(0f32, 1.0, (8, 4), &dev)?;
//!
//! // The host layer feeding the slot, and the seed's kernel (its delta).
//! let h = x.matmul(w_host.as_tensor())?;
//! let kernel = |t: &Tensor| t.matmul(w_seed.as_tensor());
//! let mut alpha = AlphaController::new(AlphaCurve::Cosine, 20)?;
//! let slot = slot_forward(SlotMode::Blend { alpha: alpha.advance() }, &h, &kernel)?;
//!
//! let mut monitor = IsolationMonitor::new(
//!     vec![("host.w".to_string(), w_host.clone())],
//!     vec![("seed.w".to_string(), w_seed.clone())],
//!     MonitorConfig::default(),
//! )?;
//! let branch = slot.seed.as_ref().expect("the seed runs in BLENDING");
//! let probe = Probe::rerun(&branch.input, &kernel).with_seed_output(&branch.delta);
//! let report = monitor.check(0, Stage::SeedStageBlending, &probe)?;
//! assert!(!report.is_violation());
//! assert_eq!(report.dot_product, Some(0.0));
//! # Ok(())
//! # }
//! ```

mod alpha;
mod error;
mod forward;
mod fused;
#[cfg(feature = "cuda")]
mod fused_cuda;
mod layout;
mod monitor;
mod schedule;

pub use alpha::{AlphaController, AlphaCurve, SavedAlpha, SavedRamp};
pub use error::{Error, Result};
pub use forward::{
    GuardedForward, SeedBranch, SlotForward, SlotMode, blend, finite_check, guarded_slot_forward, seed_input,
    seed_output, slot_forward, straight_through,
};
pub use layout::Layout;
pub use monitor::{
    IsolationMonitor, IsolationReport, IsolationVerdict, Measured, MonitorConfig, MonitorCounters, PendingCheck, Probe,
    SkipReason, ViolationReason, read_scalars,
};
pub use schedule::{AlphaSchedule, BlendPhase, HYSTERESIS_BAND, PHASE_EDGES};
