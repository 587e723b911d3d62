//! Gradient isolation for seeds on candle: the per-stage slot forward, alpha blending and the
//! monitor that proves a seed's branch never produces a gradient on a host parameter.
//!
//! Layer L1 (domain crate): depends only on `leyline` and external crates (candle-core, quanta,
//! thiserror), never on another Kasmina crate; `kasmina-runtime` composes it and turns its
//! reports into telemetry and breaker events.
//!
//! Main items:
//! - [`slot_output`] (decisions D4) and its parts [`seed_input`], [`seed_output`] (seeds are
//!   residual: input + kernel delta, the add lives here), [`straight_through`] (TRAINING) and
//!   [`blend`] (BLENDING);
//! - [`AlphaSchedule`] (sigmoid ramp, [`BlendPhase`] with hysteresis, gate G2's
//!   [`AlphaSchedule::is_complete`]);
//! - [`IsolationMonitor`] (decisions D6): the projection probe over one row of the seed's real
//!   input, the shared-parameter check, the dot product and gradient norms, returned as an
//!   [`IsolationReport`].
//!
//! The crate is device-agnostic; its `cuda` feature only runs the same tests on a GPU too.
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use kasmina_isolation::{IsolationMonitor, MonitorConfig, Probe, slot_output};
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
//! let slot = slot_output(Stage::SeedStageBlending, false, &h, 0.25, &kernel)?;
//!
//! let mut monitor = IsolationMonitor::new(
//!     vec![("host.w".to_string(), w_host.clone())],
//!     vec![("seed.w".to_string(), w_seed.clone())],
//!     MonitorConfig::default(),
//! )?;
//! let branch = slot.seed.as_ref().expect("the seed runs in BLENDING");
//! let probe = Probe::rerun(&branch.input, &kernel).with_seed_output(&branch.output);
//! let report = monitor.check(0, Stage::SeedStageBlending, &probe)?;
//! assert!(!report.is_violation());
//! assert_eq!(report.dot_product, Some(0.0));
//! # Ok(())
//! # }
//! ```

mod error;
mod forward;
mod monitor;
mod schedule;

pub use error::{Error, Result};
pub use forward::{SeedBranch, SlotForward, blend, seed_input, seed_output, slot_output, straight_through};
pub use monitor::{
    IsolationMonitor, IsolationReport, IsolationVerdict, MonitorConfig, MonitorCounters, Probe, SkipReason,
    ViolationReason,
};
pub use schedule::{AlphaSchedule, BlendPhase, HYSTERESIS_BAND, PHASE_EDGES};
