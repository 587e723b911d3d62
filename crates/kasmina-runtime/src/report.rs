//! What the trainer tells Kasmina after each step and epoch, and what it gets back.

use std::collections::BTreeMap;

use candle_core::Var;
use leyline::{GateEvent, SeedLifecycleStage};

/// What the trainer reports after a training step's backward (and its own optimiser step).
#[derive(Debug, Clone, Default)]
pub struct StepReport {
    /// The task loss of the step (must be finite).
    pub loss: f32,
    /// Shadow seed losses by slot name: the task loss of the same batch with that slot's output
    /// taken from its seed branch, without gradient (see [`crate::Kasmina::shadow_slots`] and
    /// [`crate::Kasmina::with_shadow`]). Gate G1 reads them in TRAINING.
    pub shadow_losses: BTreeMap<String, f32>,
    /// Gradient norm of the host's parameters, for telemetry (optional).
    pub host_grad_norm: Option<f32>,
    /// Shadow seed losses as tensors (with their graph), by slot name: in
    /// [`crate::TrainingMode::Shadow`] the runtime backpropagates them to train the seed.
    pub shadow_loss_tensors: BTreeMap<String, candle_core::Tensor>,
}

impl StepReport {
    /// A report with just the task loss.
    pub fn new(loss: f32) -> Self {
        Self { loss, ..Self::default() }
    }

    /// Adds a shadow seed loss for a slot.
    pub fn with_shadow_loss(mut self, slot: impl Into<String>, loss: f32) -> Self {
        self.shadow_losses.insert(slot.into(), loss);
        self
    }

    /// Adds a shadow seed loss for a slot as the scalar tensor the shadow forward produced (its
    /// graph reaches the seed): its value is G1's evidence, read at the safe point with the
    /// step's other figures (no device read here), and in [`crate::TrainingMode::Shadow`] the
    /// runtime trains the seed on it. A value given with [`with_shadow_loss`](Self::with_shadow_loss)
    /// for the same slot takes precedence as the evidence.
    pub fn with_shadow_loss_tensor(
        mut self,
        slot: impl Into<String>,
        loss: &candle_core::Tensor,
    ) -> candle_core::Result<Self> {
        if loss.elem_count() != 1 {
            return Err(candle_core::Error::Msg(format!("a shadow loss is one value, got shape {:?}", loss.dims())));
        }
        self.shadow_loss_tensors.insert(slot.into(), loss.clone());
        Ok(self)
    }
}

/// What the trainer reports at the end of an epoch's validation.
#[derive(Debug, Clone, Copy, Default)]
pub struct EpochReport {
    /// The epoch that just ended (0-based).
    pub epoch: u32,
    /// Validation loss (must be finite).
    pub val_loss: f32,
    /// Validation accuracy in [0, 1] (must be finite).
    pub val_acc: f32,
}

/// A seed that reached FOSSILIZED: its parameters now belong to the host model (the registry
/// counts them as the host's). Kasmina keeps training them with the seed's own optimiser and
/// its moments (decisions D4: fossilization must not shake training), so do **not** add them to
/// the trainer's optimiser; save them with the model.
#[derive(Debug, Clone)]
pub struct FossilizedSeed {
    /// The seed.
    pub seed_id: String,
    /// Its slot.
    pub slot: String,
    /// Its parameters, now host parameters.
    pub vars: Vec<Var>,
}

/// What one [`crate::Kasmina::on_step`] did.
#[derive(Debug, Clone, Default)]
pub struct StepOutcome {
    /// Seeds fossilized at this safe point (part of the model from now on; Kasmina keeps
    /// training them).
    pub fossilized: Vec<FossilizedSeed>,
    /// Isolation checks run at this step.
    pub isolation_checks: u32,
    /// Isolation violations found at this step.
    pub isolation_violations: u32,
    /// Commands applied at this safe point.
    pub commands_applied: u32,
}

/// What one [`crate::Kasmina::on_epoch`] did.
#[derive(Debug, Clone, Default)]
pub struct EpochOutcome {
    /// Seeds fossilized at this epoch boundary.
    pub fossilized: Vec<FossilizedSeed>,
    /// Entries evicted by the memory GC, if it ran.
    pub gc_evicted: Option<u64>,
}

/// A seed's history, for summaries (the CLI's final table and `--json`).
#[derive(Debug, Clone)]
pub struct SeedSummary {
    /// The seed.
    pub seed_id: String,
    /// Its slot.
    pub slot: String,
    /// The blueprint it asked for.
    pub blueprint_id: String,
    /// The blueprint that served it (differs after a fallback).
    pub kernel_blueprint_id: String,
    /// Its stage now.
    pub stage: SeedLifecycleStage,
    /// Every stage it entered, in order.
    pub stages: Vec<SeedLifecycleStage>,
    /// Every gate evaluation, in order.
    pub gates: Vec<GateEvent>,
    /// Isolation checks run.
    pub isolation_checks: u64,
    /// Isolation violations found.
    pub isolation_violations: u32,
    /// Why it was culled, if it was (kept after its reset).
    pub cull_reason: Option<crate::CullCause>,
    /// Its latest counterfactual contribution in SHADOWING/PROBATIONARY: (mean, standard
    /// error, batches).
    pub counterfactual: Option<(f64, f64, u32)>,
    /// Shadow metrics of its SHADOWING/PROBATIONARY window: mean relative L2 distance of its
    /// output from the host activation, and mean cosine similarity, when measured.
    pub shadow: Option<(f64, f64)>,
}

/// One seed's counterfactual contribution, as [`crate::Kasmina::evaluate_counterfactual`]
/// measured it: paired per-batch differences `loss(slot bypassed) - loss(with the seed)`;
/// positive means the seed helps.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterfactualReport {
    /// The seed.
    pub seed_id: String,
    /// Its slot.
    pub slot: String,
    /// Its stage (SHADOWING or PROBATIONARY).
    pub stage: SeedLifecycleStage,
    /// Mean paired difference.
    pub mean: f64,
    /// Its standard error.
    pub std_error: f64,
    /// Batches compared.
    pub batches: u32,
}

/// The size of everything the runtime holds that grows with traffic, at one instant: what a
/// soak or a dashboard watches to see that memory stays flat under load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gauges {
    /// Nonces in the replay ledger (live, plus expired ones not yet evicted).
    pub nonces_held: usize,
    /// Verified commands waiting for the next safe point.
    pub commands_queued: usize,
    /// Entries and bytes of the kernel cache.
    pub kernel_cache_entries: u64,
    /// Bytes of the kernel cache.
    pub kernel_cache_bytes: u64,
    /// Entries of the blueprint-descriptor cache.
    pub descriptor_cache_entries: u64,
    /// Receipts held for `receipt(id)` (the telemetry buffer).
    pub receipts_held: u64,
    /// The telemetry pipeline's counters and queue depths.
    pub telemetry: kasmina_telemetry::TelemetryStats,
}

/// Counters over the runtime's life.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeStats {
    /// Steps seen.
    pub steps: u64,
    /// Isolation checks run.
    pub isolation_checks: u64,
    /// Isolation violations found.
    pub isolation_violations: u64,
    /// Time spent inside `on_step` / `on_epoch` / command handling, in ms.
    pub kasmina_ms: f64,
    /// Commands accepted.
    pub commands_accepted: u64,
    /// Commands rejected (envelope or request).
    pub commands_rejected: u64,
    /// Non-critical events not published while the `telemetry_flush` breaker was open.
    pub events_dropped: u64,
    /// Device-to-host transfers the runtime made (issue 19): one per [`crate::Kasmina::on_step`]
    /// that has a seed to observe, none inside a slot forward; G0's probe at a germination and
    /// G5's probe outside a training step add one each.
    pub device_reads: u64,
}
