//! One seed as a state machine (decisions D15).
//!
//! [`Seed`] holds what every stage shares (id, blueprint, the lifecycle from
//! `kasmina-lifecycle`, the history) and a [`StageState`] that holds only the data valid in the
//! seed's stage: a live seed (GERMINATED … PROBATIONARY) owns its kernel, optimiser and isolation
//! monitor and the evidence window of its phase; a fossilized one keeps only its kernel; an
//! embargoed one only when its embargo started. A safe point hands the machine the evidence it
//! observed ([`evidence`]) and gets back the effects to perform ([`effects`]); the machine takes
//! no locks and does no I/O.
//!
//! - [`machine`]: the per-step and per-epoch transitions (`on_step`, `on_epoch`);
//! - [`gates`]: the evidence each gate reads, built from the seed's windows;
//! - [`failure`]: cull (with blend-out-free removal), embargo, reset, teardown;
//! - [`request`]: the stage requests of Tamiyo's commands (advance, fine-tune, pause, resume).

pub(crate) mod effects;
pub(crate) mod evidence;
mod failure;
mod gates;
mod machine;
mod request;

use std::sync::Arc;

use candle_core::Var;
use candle_nn::optim::Optimizer;

use crate::optim::AdamW;
use kasmina_isolation::{AlphaController, IsolationMonitor, SlotMode};
use kasmina_lifecycle::SeedLifecycle;
use kasmina_lifecycle::gates::{Counterfactual, GateReason, PauseResumeCheck};
use kasmina_safety::PausePasses;
use leyline::{GateEvent, SeedLifecycleStage as Stage};

use crate::blueprint::SeedKernel;
pub(crate) use effects::{Effect, Effects, Route};
pub(crate) use evidence::{Cx, Interface, IsolationEvidence, ResetObservation, StepEvidence};
pub(crate) use request::AlphaRequest;

/// Why a seed left its stage for the failure path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CullCause {
    /// A gate refused the seed's next move.
    Gate(GateReason),
    /// The seed's output turned non-finite in a stage past BLENDING.
    SeedOutputNotFinite,
    /// Gradient-isolation violations reached the threshold (or opened the isolation breaker).
    Isolation,
    /// Parameter-ownership violations reached the registry's threshold.
    ParameterViolations,
    /// The seed's optimiser failed to step.
    OptimizerFailed,
    /// The kernel could not be instantiated or armed at germination.
    AttachFailed,
    /// A CULL command.
    CullCommand,
    /// A CANCEL command.
    CancelCommand,
    /// A ROLLBACK command.
    Rollback,
}

impl CullCause {
    /// The wire string (`cull_reason`, the rollback payload's `reason`, the `embargo_start` and
    /// `rollback_ready` events).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Gate(r) => r.as_str(),
            Self::SeedOutputNotFinite => "seed_output_not_finite",
            Self::Isolation => "isolation_violation",
            Self::ParameterViolations => "parameter_violations",
            Self::OptimizerFailed => "optimizer_error",
            Self::AttachFailed => "attach_failed",
            Self::CullCommand => "culled_by_command",
            Self::CancelCommand => "cancelled_by_command",
            Self::Rollback => "rollback",
        }
    }
}

impl CullCause {
    /// The cause whose [`reason`](Self::reason) is `wire` (a checkpoint's), if any.
    pub fn from_reason(wire: &str) -> Option<Self> {
        let fixed = [
            Self::SeedOutputNotFinite,
            Self::Isolation,
            Self::ParameterViolations,
            Self::OptimizerFailed,
            Self::AttachFailed,
            Self::CullCommand,
            Self::CancelCommand,
            Self::Rollback,
        ];
        fixed.into_iter().find(|c| c.reason() == wire).or_else(|| GateReason::from_wire(wire).map(Self::Gate))
    }

    /// A cause that removes the seed from the forward at once, without a blend-out: its output
    /// cannot be trusted (non-finite) or it touched the host (isolation).
    pub fn removes_at_once(self) -> bool {
        use GateReason as R;
        match self {
            Self::SeedOutputNotFinite | Self::Isolation | Self::OptimizerFailed => true,
            Self::Gate(r) => matches!(
                r,
                R::BlendedOutputNotFinite
                    | R::SeedLossNotFinite
                    | R::SeedGradientNotFinite
                    | R::LossNotFinite
                    | R::IsolationViolationsPresent
            ),
            _ => false,
        }
    }
}

impl std::fmt::Display for CullCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// A kernel attached to a live seed, with what trains and watches it.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) kernel: Arc<SeedKernel>,
    /// The blueprint actually serving (differs from the requested one after a fallback).
    pub(crate) blueprint_id: String,
    pub(crate) optimizer: AdamW,
    pub(crate) monitor: IsolationMonitor,
    pub(crate) fallback_used: bool,
    pub(crate) fetch_latency_ms: f64,
    /// The registry registered the kernel's parameters for the seed (or it has none).
    pub(crate) registered: bool,
}

/// Counters and observations of a live seed, over all its live stages.
#[derive(Debug, Default)]
pub(crate) struct Health {
    pub(crate) isolation_violations: u32,
    pub(crate) update_violations: u32,
    /// Worst isolation-hook latency in the current window.
    pub(crate) max_hook_ms: f64,
    pub(crate) last_hook_ms: f64,
    pub(crate) last_grad_norm: f32,
    pub(crate) pause_check: PauseResumeCheck,
    /// Shapes and dtypes of the seed's and the host's outputs, as last seen by the slot.
    pub(crate) interface: Option<Interface>,
}

/// A pause in progress: the identity passes the quota granted, counted down by forwards.
#[derive(Debug, Clone)]
pub(crate) struct Pause {
    pub(crate) passes: PausePasses,
}

/// Shadow metrics over a window: how far the seed's output is from the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ShadowStats {
    pub(crate) samples: u32,
    pub(crate) rel_l2_sum: f64,
    pub(crate) cosine_sum: f64,
}

impl ShadowStats {
    pub(crate) fn record(&mut self, rel_l2: f64, cosine: f64) {
        if rel_l2.is_finite() && cosine.is_finite() {
            self.samples += 1;
            self.rel_l2_sum += rel_l2;
            self.cosine_sum += cosine;
        }
    }

    /// Mean relative L2 distance and mean cosine similarity, once there is a sample.
    pub(crate) fn means(&self) -> Option<(f64, f64)> {
        (self.samples > 0)
            .then(|| (self.rel_l2_sum / f64::from(self.samples), self.cosine_sum / f64::from(self.samples)))
    }
}

/// The gradient-health window of TRAINING (G1's evidence).
#[derive(Debug, Default)]
pub(crate) struct GradWindow {
    pub(crate) seed_norms: Vec<f32>,
    pub(crate) host_norms: Vec<f32>,
}

impl GradWindow {
    /// Records one step; the host norm is kept only while every step has one, so the two
    /// series stay paired.
    pub(crate) fn record(&mut self, seed: f32, host: Option<f32>) {
        match host {
            Some(h) if self.host_norms.len() == self.seed_norms.len() => self.host_norms.push(h),
            _ => self.host_norms.clear(),
        }
        self.seed_norms.push(seed);
        if self.host_norms.len() != self.seed_norms.len() {
            self.host_norms.clear();
        }
    }
}

/// What the evaluation of a window found about the seed's contribution (G3, G4).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Contribution {
    /// The latest counterfactual measured in this stage.
    pub(crate) counterfactual: Option<Counterfactual>,
    /// The mean validation loss with the seed in that measurement (the scale of G4's minimum
    /// contribution).
    pub(crate) reference_loss: f64,
    /// The window completed without one, and the gate's refusal was published (once).
    pub(crate) missing_reported: bool,
}

/// The phase of a live seed and its evidence window.
#[derive(Debug)]
pub(crate) enum Phase {
    Germinated,
    Training {
        steps: u64,
        seed_losses: Vec<f32>,
        last_vs_host: Option<f32>,
        grads: GradWindow,
        /// Per step with a shadow loss: the host's loss minus the shadow seed loss (G1's harm check).
        shadow_diffs: Vec<f64>,
    },
    Blending {
        steps: u64,
        alpha: AlphaController,
        losses: Vec<f32>,
        finite: bool,
    },
    Shadowing {
        steps: u64,
        shadow: ShadowStats,
        contribution: Contribution,
    },
    Probationary {
        steps: u64,
        epochs: u32,
        shadow: ShadowStats,
        contribution: Contribution,
    },
}

impl Phase {
    pub(crate) fn steps(&self) -> u64 {
        match self {
            Self::Germinated => 0,
            Self::Training { steps, .. }
            | Self::Blending { steps, .. }
            | Self::Shadowing { steps, .. }
            | Self::Probationary { steps, .. } => *steps,
        }
    }

    pub(crate) fn shadow(&self) -> Option<&ShadowStats> {
        match self {
            Self::Shadowing { shadow, .. } | Self::Probationary { shadow, .. } => Some(shadow),
            _ => None,
        }
    }

    pub(crate) fn contribution(&self) -> Option<&Contribution> {
        match self {
            Self::Shadowing { contribution, .. } | Self::Probationary { contribution, .. } => Some(contribution),
            _ => None,
        }
    }

    pub(crate) fn contribution_mut(&mut self) -> Option<&mut Contribution> {
        match self {
            Self::Shadowing { contribution, .. } | Self::Probationary { contribution, .. } => Some(contribution),
            _ => None,
        }
    }
}

/// A seed between GERMINATED and PROBATIONARY.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) attached: Attached,
    /// The alpha controller each BLENDING starts from (validated at germination; a
    /// START_GRAFTING request may replace it).
    pub(crate) alpha_template: AlphaController,
    pub(crate) phase: Phase,
    pub(crate) pause: Option<Pause>,
    pub(crate) health: Health,
}

/// The data of the seed's stage.
#[derive(Debug)]
pub(crate) enum StageState {
    /// Reset (or never germinated in this slot).
    Dormant,
    Live(Box<Live>),
    /// Culled while blended in: alpha ramps to 0 with the seed frozen, then the embargo starts.
    BlendingOut {
        kernel: Arc<SeedKernel>,
        alpha: AlphaController,
        cause: CullCause,
    },
    /// Part of the model; its own optimiser keeps training it, and the gradient path into the
    /// host opens over `ramp` steps.
    Fossilized {
        kernel: Arc<SeedKernel>,
        optimizer: Box<AdamW>,
        ramp: u64,
    },
    Embargoed {
        since_step: u64,
    },
    /// The slot was cleaned; the next safe point observes it and runs G5.
    Resetting,
    Terminated,
}

/// What happened to a seed, for summaries and exports (kept after its reset).
#[derive(Debug, Default)]
pub(crate) struct History {
    pub(crate) stages: Vec<Stage>,
    pub(crate) gates: Vec<GateEvent>,
    pub(crate) cull: Option<CullCause>,
    pub(crate) isolation_checks: u64,
    pub(crate) isolation_violations: u32,
    /// The serving blueprint (kept after the kernel is dropped).
    pub(crate) kernel_blueprint_id: String,
    pub(crate) fallback_used: bool,
}

/// One seed: identity, lifecycle, stage data, history.
#[derive(Debug)]
pub(crate) struct Seed {
    pub(crate) id: String,
    pub(crate) blueprint_id: String,
    pub(crate) lifecycle: SeedLifecycle,
    pub(crate) state: StageState,
    pub(crate) history: History,
    pub(crate) epochs: u32,
    pub(crate) risk: f32,
}

impl Seed {
    pub(crate) fn stage(&self) -> Stage {
        self.lifecycle.stage()
    }

    /// Holds (or is about to hold) a kernel in its slot.
    pub(crate) fn is_live(&self) -> bool {
        !matches!(self.stage(), Stage::SeedStageDormant | Stage::SeedStageTerminated | Stage::SeedStageUnknown)
    }

    pub(crate) fn live(&self) -> Option<&Live> {
        match &self.state {
            StageState::Live(l) => Some(l),
            _ => None,
        }
    }

    pub(crate) fn live_mut(&mut self) -> Option<&mut Live> {
        match &mut self.state {
            StageState::Live(l) => Some(l),
            _ => None,
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.live().is_some_and(|l| l.pause.is_some())
    }

    /// What the slot forwards for this seed now (decisions D4), given the fossilization ramp
    /// length and how seeds learn in TRAINING.
    pub(crate) fn route(&self, fossil_ramp_steps: u64, training: crate::config::TrainingMode) -> Route {
        let mode = match &self.state {
            StageState::Live(l) if l.pause.is_some() => return Route::Paused,
            StageState::Live(l) => match &l.phase {
                Phase::Germinated => return Route::Transparent,
                Phase::Training { .. } if training == crate::config::TrainingMode::Shadow => SlotMode::Transparent,
                Phase::Training { .. } => SlotMode::StraightThrough,
                Phase::Blending { alpha, .. } => SlotMode::Blend { alpha: alpha.alpha() },
                Phase::Shadowing { .. } | Phase::Probationary { .. } => SlotMode::Full,
            },
            StageState::BlendingOut { alpha, .. } => SlotMode::BlendOut { alpha: alpha.alpha() },
            StageState::Fossilized { ramp, .. } => {
                let scale =
                    if fossil_ramp_steps == 0 { 1.0 } else { (*ramp as f64 / fossil_ramp_steps as f64).min(1.0) };
                SlotMode::Fossil { grad_scale: scale }
            }
            _ => return Route::Transparent,
        };
        match self.kernel() {
            Some(kernel) => Route::Seed { kernel: kernel.clone(), mode },
            None => Route::Transparent,
        }
    }

    /// The alpha the slot blends with now.
    pub(crate) fn alpha(&self) -> f64 {
        match &self.state {
            StageState::Live(l) => match &l.phase {
                Phase::Blending { alpha, .. } => alpha.alpha(),
                Phase::Shadowing { .. } | Phase::Probationary { .. } => 1.0,
                _ => 0.0,
            },
            StageState::BlendingOut { alpha, .. } => alpha.alpha(),
            StageState::Fossilized { .. } => 1.0,
            _ => 0.0,
        }
    }

    /// The kernel serving the seed, if it holds one.
    pub(crate) fn kernel(&self) -> Option<&Arc<SeedKernel>> {
        match &self.state {
            StageState::Live(l) => Some(&l.attached.kernel),
            StageState::Fossilized { kernel, .. } | StageState::BlendingOut { kernel, .. } => Some(kernel),
            _ => None,
        }
    }

    /// The seed's parameters (empty without a kernel).
    pub(crate) fn vars(&self) -> Vec<Var> {
        self.kernel().map(|k| k.vars()).unwrap_or_default()
    }

    pub(crate) fn learning_rate(&self) -> f64 {
        match &self.state {
            StageState::Live(l) => l.attached.optimizer.learning_rate(),
            StageState::Fossilized { optimizer, .. } => optimizer.learning_rate(),
            _ => 0.0,
        }
    }

    /// Steps the seed's optimiser with this step's gradients (effect [`Effect::Train`]): a
    /// live seed's, and a fossilized seed's, which keeps its optimiser state.
    pub(crate) fn train(&mut self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
        let (optimizer, kernel) = match &mut self.state {
            StageState::Live(l) => (&mut l.attached.optimizer, &l.attached.kernel),
            StageState::Fossilized { optimizer, kernel, .. } => (optimizer.as_mut(), &*kernel),
            _ => return Ok(()),
        };
        optimizer.step(grads)?;
        kernel.advance_step();
        Ok(())
    }
}
