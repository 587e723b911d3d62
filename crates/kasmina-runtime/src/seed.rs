//! One seed's record: its lifecycle, kernel, optimiser, isolation monitor and evidence windows.

use std::sync::Arc;

use candle_core::Var;
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use kasmina_isolation::{AlphaSchedule, IsolationMonitor};
use kasmina_lifecycle::SeedLifecycle;
use kasmina_lifecycle::gates::PauseResumeCheck;
use leyline::{GateEvent, SeedLifecycleStage as Stage};

use crate::blueprint::SeedKernel;
use crate::error::Result;

/// A pause in progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pause {
    /// When it started, on the monotonic clock.
    pub(crate) since: quanta::Instant,
    /// Identity passes left before the quota is exhausted.
    pub(crate) passes_left: u64,
}

/// Everything the runtime knows about one seed.
#[derive(Debug)]
pub(crate) struct SeedRecord {
    pub(crate) id: String,
    /// The blueprint the germination asked for.
    pub(crate) blueprint_id: String,
    /// The blueprint actually serving (differs after a fallback).
    pub(crate) kernel_blueprint_id: String,
    pub(crate) lifecycle: SeedLifecycle,
    pub(crate) kernel: Option<Arc<SeedKernel>>,
    pub(crate) optimizer: Option<AdamW>,
    pub(crate) monitor: Option<IsolationMonitor>,
    pub(crate) alpha: AlphaSchedule,
    pub(crate) registered: bool,
    pub(crate) registration_conflict: bool,
    pub(crate) pause: Option<Pause>,
    pub(crate) pause_check: PauseResumeCheck,
    pub(crate) fallback_used: bool,
    pub(crate) fetch_latency_ms: f64,
    pub(crate) cache_hit: bool,
    /// Shadow seed losses in TRAINING (G1 evidence), oldest first.
    pub(crate) seed_losses: Vec<f32>,
    /// The last shadow seed loss minus the host's loss on the same batch.
    pub(crate) last_seed_loss_vs_host: Option<f32>,
    /// Task losses in BLENDING (G2 evidence), oldest first.
    pub(crate) blend_losses: Vec<f32>,
    pub(crate) blended_finite: bool,
    pub(crate) steps_in_stage: u64,
    pub(crate) steps_total: u64,
    pub(crate) max_hook_ms: f64,
    pub(crate) last_hook_ms: f64,
    pub(crate) last_dot_product: f64,
    pub(crate) isolation_violations: u32,
    pub(crate) isolation_checks: u64,
    pub(crate) update_violations: u32,
    /// The seed's output was non-finite in a forward (reported by the slot).
    pub(crate) nan_output: bool,
    pub(crate) baseline_metric: Option<f64>,
    pub(crate) epochs: u32,
    pub(crate) epochs_in_stage: u32,
    pub(crate) last_grad_norm: f32,
    pub(crate) seed_output_shape: Vec<usize>,
    pub(crate) host_output_shape: Vec<usize>,
    pub(crate) seed_dtype: String,
    pub(crate) host_dtype: String,
    pub(crate) risk: f32,
    /// Every gate event of this seed, in order (for summaries and the CLI).
    pub(crate) gate_log: Vec<GateEvent>,
    /// Stages entered, in order.
    pub(crate) stages: Vec<Stage>,
    /// Parameters handed to the host optimiser at FOSSILIZED.
    pub(crate) handed_over: bool,
    /// Why the seed was culled (kept after the reset, for summaries).
    pub(crate) cull_reason: Option<String>,
    /// The step at which the embargo started (for a step-counted embargo).
    pub(crate) embargo_step: Option<u64>,
}

impl SeedRecord {
    pub(crate) fn new(id: &str, blueprint_id: &str, lifecycle: SeedLifecycle, alpha: AlphaSchedule) -> Self {
        Self {
            id: id.to_owned(),
            blueprint_id: blueprint_id.to_owned(),
            kernel_blueprint_id: blueprint_id.to_owned(),
            lifecycle,
            kernel: None,
            optimizer: None,
            monitor: None,
            alpha,
            registered: false,
            registration_conflict: false,
            pause: None,
            pause_check: PauseResumeCheck::NotExercised,
            fallback_used: false,
            fetch_latency_ms: 0.0,
            cache_hit: false,
            seed_losses: Vec::new(),
            last_seed_loss_vs_host: None,
            blend_losses: Vec::new(),
            blended_finite: true,
            steps_in_stage: 0,
            steps_total: 0,
            max_hook_ms: 0.0,
            last_hook_ms: 0.0,
            last_dot_product: 0.0,
            isolation_violations: 0,
            isolation_checks: 0,
            update_violations: 0,
            nan_output: false,
            baseline_metric: None,
            epochs: 0,
            epochs_in_stage: 0,
            last_grad_norm: 0.0,
            seed_output_shape: Vec::new(),
            host_output_shape: Vec::new(),
            seed_dtype: String::new(),
            host_dtype: String::new(),
            risk: 0.0,
            gate_log: Vec::new(),
            stages: vec![Stage::SeedStageDormant],
            handed_over: false,
            cull_reason: None,
            embargo_step: None,
        }
    }

    pub(crate) fn stage(&self) -> Stage {
        self.lifecycle.stage()
    }

    /// Live: holds (or is about to hold) a kernel in the slot. DORMANT after a reset and
    /// TERMINATED are not live.
    pub(crate) fn is_live(&self) -> bool {
        !matches!(self.stage(), Stage::SeedStageDormant | Stage::SeedStageTerminated | Stage::SeedStageUnknown)
    }

    /// Records a stage change and resets the per-stage window.
    pub(crate) fn entered(&mut self, stage: Stage) {
        if self.stages.last() != Some(&stage) {
            self.stages.push(stage);
        }
        self.steps_in_stage = 0;
        self.epochs_in_stage = 0;
        match stage {
            Stage::SeedStageBlending => {
                self.alpha.reset();
                self.blend_losses.clear();
                self.blended_finite = true;
            }
            Stage::SeedStageTraining => self.seed_losses.clear(),
            _ => {}
        }
    }

    /// The alpha the slot blends with in the current stage.
    pub(crate) fn current_alpha(&self) -> f64 {
        match self.stage() {
            Stage::SeedStageBlending => self.alpha.alpha(),
            Stage::SeedStageShadowing | Stage::SeedStageProbationary | Stage::SeedStageFossilized => 1.0,
            _ => 0.0,
        }
    }

    /// Builds the seed's optimiser over its kernel's variables.
    pub(crate) fn build_optimizer(&mut self, lr: f64, weight_decay: f64) -> Result<()> {
        let vars: Vec<Var> = self.kernel.as_ref().map(|k| k.vars()).unwrap_or_default();
        let params = ParamsAdamW { lr, weight_decay, ..ParamsAdamW::default() };
        self.optimizer = Some(AdamW::new(vars, params)?);
        Ok(())
    }

    pub(crate) fn learning_rate(&self) -> f64 {
        self.optimizer.as_ref().map(|o| o.learning_rate()).unwrap_or(0.0)
    }

    pub(crate) fn weight_decay(&self) -> f64 {
        self.optimizer.as_ref().map(|o| o.params().weight_decay).unwrap_or(0.0)
    }

    /// The kernel's variables (empty without a kernel).
    pub(crate) fn vars(&self) -> Vec<Var> {
        self.kernel.as_ref().map(|k| k.vars()).unwrap_or_default()
    }

    /// Zeroes every counter (part of the slot-clean report of G5).
    pub(crate) fn zero_counters(&mut self) {
        self.isolation_violations = 0;
        self.update_violations = 0;
        self.isolation_checks = 0;
        self.nan_output = false;
        self.seed_losses.clear();
        self.blend_losses.clear();
        self.steps_in_stage = 0;
        self.max_hook_ms = 0.0;
        self.last_hook_ms = 0.0;
        self.alpha.reset();
        if let Some(m) = self.monitor.as_mut() {
            m.reset_counters();
        }
    }

    pub(crate) fn counters_zeroed(&self) -> bool {
        self.isolation_violations == 0
            && self.update_violations == 0
            && !self.nan_output
            && self.seed_losses.is_empty()
            && self.blend_losses.is_empty()
    }
}
