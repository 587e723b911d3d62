//! What a safe point observed, handed to the seed machine.

use std::collections::BTreeSet;
use std::time::SystemTime;

use candle_core::DType;
use leyline::{CircuitBreakerState, SeedLifecycleStage as Stage};

use crate::config::KasminaConfig;

/// The safe point's context: settings, clocks, counters and what the runtime knows beyond the
/// seed.
#[derive(Debug, Clone)]
pub(crate) struct Cx<'a> {
    pub(crate) config: &'a KasminaConfig,
    pub(crate) slot: &'a str,
    pub(crate) now: quanta::Instant,
    pub(crate) wall: SystemTime,
    pub(crate) step: u64,
    pub(crate) epoch: u32,
    /// Every breaker's state (G4).
    pub(crate) breakers: [(&'static str, CircuitBreakerState); 4],
    /// The seed's stages whose events were actually emitted (G3).
    pub(crate) emitted_stages: BTreeSet<Stage>,
}

/// Shapes and dtypes at the slot, as the last forward saw them (G3).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Interface {
    pub(crate) seed_shape: Vec<usize>,
    pub(crate) host_shape: Vec<usize>,
    pub(crate) seed_dtype: DType,
    pub(crate) host_dtype: DType,
}

/// The result of this step's isolation probe, with the isolation breaker's state after it.
#[derive(Debug, Clone, Default)]
pub(crate) struct IsolationEvidence {
    pub(crate) violation: bool,
    pub(crate) offending: Vec<String>,
    pub(crate) elapsed_ms: f64,
    pub(crate) seed_grad_norm: Option<f32>,
    pub(crate) breaker_open: bool,
}

/// What one training step observed for one seed.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepEvidence {
    /// The task loss of the step.
    pub(crate) loss: f32,
    /// The shadow seed loss of this seed's slot (TRAINING).
    pub(crate) shadow_loss: Option<f32>,
    /// The seed's output was non-finite in a forward since the last safe point.
    pub(crate) nan_output: bool,
    pub(crate) interface: Option<Interface>,
    /// Identity passes taken while paused.
    pub(crate) paused_passes: u64,
    /// Relative L2 distance and cosine similarity of the seed's output to the host's.
    pub(crate) shadow: Option<(f64, f64)>,
    /// This step's isolation probe, if one ran.
    pub(crate) isolation: Option<IsolationEvidence>,
    /// A parameter-ownership violation found before the optimiser step.
    pub(crate) update_violation: Option<kasmina_registry::Violation>,
    /// The blending breaker admitted this step's alpha advance.
    pub(crate) blend_admitted: bool,
    /// The seed's gradient norm this step (TRAINING: G1's evidence).
    pub(crate) seed_grad_norm: Option<f32>,
    /// The host's gradient norm this step (TRAINING: G1's ratio).
    pub(crate) host_grad_norm: Option<f32>,
}

/// G5's evidence, asked of the registry, the kernel cache and the slot itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResetObservation {
    pub(crate) parameters_registered: bool,
    pub(crate) cache_entries: usize,
    /// A probe activation came out of the slot unchanged.
    pub(crate) slot_transparent: bool,
}
