//! Gates G0–G5 as guard functions over explicit, typed evidence (decisions D2, revised).
//!
//! Each evaluator is a pure function of a [`GateContext`] (seed, move, wall time) and its
//! evidence struct, and returns the [`GateEvent`] to emit, pass or fail. A failing gate names the
//! first check that failed in `reason` (a [`GateReason`], on the wire as its stable string, listed
//! in [`reasons`]) and carries the values it looked at in `attributes`. A passing gate carries a
//! small, fixed set of attributes (G0 `blueprint_id`, G1 at germination `kernel_attached`, G1 at
//! TRAINING → BLENDING `mean_seed_grad_norm` and, when measured, `max_grad_ratio`, G2
//! `fallback_used`, G3 `dtype` and the counterfactual, G4 the counterfactual); other measured
//! values are attached only to the failing event that they caused.
//!
//! Revised D2:
//! - G1 at TRAINING → BLENDING is **gradient health**: seed gradient norms finite, their mean
//!   above a vanishing floor ([`DEFAULT_MIN_SEED_GRAD_NORM`]), the seed/host norm ratio at every
//!   step within an exploding bound ([`DEFAULT_MAX_GRAD_RATIO`]), shadow seed losses finite.
//!   There is no "loss improved" test (a coin flip at a plateau);
//!   [`GateReason::SeedLossNotImproved`] is kept for the wire only.
//! - G3 and G4 read the seed's [`Counterfactual`] contribution: paired per-batch differences
//!   `loss(slot bypassed) - loss(seed at its alpha)` on the same model state and batches. G3
//!   refuses a seed significantly harmful (mean below `-harm_sigmas` standard errors, default
//!   [`DEFAULT_HARM_SIGMAS`]); G4 requires a significantly positive one (mean above 0 and above
//!   `min_sigmas` standard errors, default [`DEFAULT_MIN_SIGMAS`]). Without a measurement both
//!   refuse with [`GateReason::CounterfactualMissing`], the one
//!   [retryable](GateReason::is_retryable) reason: the caller keeps the seed and asks again
//!   instead of culling it. The pre-germination baseline is no longer a criterion.
//!
//! [`evaluate`] dispatches a [`GateEvidence`] to its evaluator.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use leyline::SeedLifecycleGate as Gate;
use leyline::SeedLifecycleStage as Stage;
use leyline::{BlueprintDescriptor, CircuitBreakerState, GateEvent};

/// Defines [`GateReason`] and the [`reasons`] module from one list, so a variant, its wire
/// string and its constant cannot drift apart.
macro_rules! gate_reasons {
    ($($(#[doc = $doc:literal])+ $variant:ident => $konst:ident = $wire:literal;)+) => {
        /// Why a gate refused a move: the first check that failed. On the wire it travels as
        /// [`as_str`](Self::as_str) in `GateEvent::reason` (stable snake_case strings, also listed
        /// in [`reasons`]); [`from_wire`](Self::from_wire) parses it back.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum GateReason {
            $(
                #[doc = concat!("`", $wire, "`: ")]
                $(#[doc = $doc])+
                $variant,
            )+
        }

        impl GateReason {
            /// Every reason, in declaration order (by gate).
            pub const ALL: &'static [GateReason] = &[$(Self::$variant),+];

            /// The reason's stable wire string (`GateEvent::reason`), e.g. `"kernel_not_attached"`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }

            /// The reason whose wire string is `wire` (exact match), `None` for any other string.
            pub fn from_wire(wire: &str) -> Option<Self> {
                match wire {
                    $($wire => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        /// The stable reason strings a failing gate reports (`GateEvent::reason`), in snake_case:
        /// the wire form of each [`GateReason`], defined from it.
        pub mod reasons {
            use super::GateReason;
            $(
                #[doc = concat!("`", $wire, "` ([`GateReason::", stringify!($variant), "`]): ")]
                $(#[doc = $doc])+
                pub const $konst: &str = GateReason::$variant.as_str();
            )+
        }
    };
}

gate_reasons! {
    /// G0: the seed id is empty, longer than [`gates::MAX_SEED_ID_LEN`](crate::gates::MAX_SEED_ID_LEN)
    /// bytes, or holds whitespace, control or bidirectional formatting characters (U+061C,
    /// U+200E, U+200F, U+202A–U+202E, U+2066–U+2069).
    InvalidSeedId => INVALID_SEED_ID = "invalid_seed_id";
    /// G0: a seed with this id is already live in another slot.
    SeedAlreadyLive => SEED_ALREADY_LIVE = "seed_already_live";
    /// G0: the requested blueprint id is blank.
    MissingBlueprintId => MISSING_BLUEPRINT_ID = "missing_blueprint_id";
    /// G0: the blueprint library does not know the blueprint.
    BlueprintUnknown => BLUEPRINT_UNKNOWN = "blueprint_unknown";
    /// G0: the descriptor given is for another blueprint than the one requested (ids are
    /// compared exactly: `"BP001 "` is not `"BP001"`).
    BlueprintMismatch => BLUEPRINT_MISMATCH = "blueprint_mismatch";
    /// G0: a parameter is NaN or infinite (attribute `parameter`).
    ParameterNotFinite => PARAMETER_NOT_FINITE = "parameter_not_finite";
    /// G0: a parameter is not among the blueprint's `allowed_parameters` (attribute `parameter`).
    ParameterNotAllowed => PARAMETER_NOT_ALLOWED = "parameter_not_allowed";
    /// G0: a parameter lies outside its `allowed_parameters` bounds (attributes `parameter`,
    /// `value`, `min`, `max`).
    ParameterOutOfBounds => PARAMETER_OUT_OF_BOUNDS = "parameter_out_of_bounds";
    /// G0: run once on a probe input of the slot's layout, the kernel failed or returned a delta
    /// of another shape (attributes `expected`, `actual`); nothing is attached.
    ShapeMismatch => SHAPE_MISMATCH = "shape_mismatch";
    /// G0: run once on a probe input of the slot's layout, the kernel returned a NaN or infinite
    /// delta; nothing is attached.
    ProbeNotFinite => PROBE_NOT_FINITE = "probe_not_finite";
    /// G1 (GERMINATED → TRAINING): no kernel is attached to the seed.
    KernelNotAttached => KERNEL_NOT_ATTACHED = "kernel_not_attached";
    /// G1 (GERMINATED → TRAINING): the seed's parameters are not registered.
    ParametersNotRegistered => PARAMETERS_NOT_REGISTERED = "parameters_not_registered";
    /// G1 (GERMINATED → TRAINING): registering the seed's parameters hit a conflict.
    RegistrationConflict => REGISTRATION_CONFLICT = "registration_conflict";
    /// G1 (GERMINATED → TRAINING): the isolation monitor is not armed for the seed.
    IsolationNotArmed => ISOLATION_NOT_ARMED = "isolation_not_armed";
    /// G1, G4: the seed has gradient-isolation violations (attribute `violations`).
    IsolationViolationsPresent => ISOLATION_VIOLATIONS_PRESENT = "isolation_violations_present";
    /// Legacy, no longer returned (G1 TRAINING → BLENDING no longer requires a seed-loss
    /// window; see [`SeedGradientWindowTooShort`](GateReason::SeedGradientWindowTooShort)); kept so the
    /// wire string still parses.
    SeedLossWindowTooShort => SEED_LOSS_WINDOW_TOO_SHORT = "seed_loss_window_too_short";
    /// G1 (TRAINING → BLENDING): a shadow seed-loss sample is NaN or infinite.
    SeedLossNotFinite => SEED_LOSS_NOT_FINITE = "seed_loss_not_finite";
    /// Legacy, no longer returned (decisions D2 revised: G1 has no "loss improved" test, it is a
    /// coin flip at a plateau); kept so the wire string still parses.
    SeedLossNotImproved => SEED_LOSS_NOT_IMPROVED = "seed_loss_not_improved";
    /// G1 (TRAINING → BLENDING): the isolation hook took longer than its budget.
    HookLatencyExceeded => HOOK_LATENCY_EXCEEDED = "hook_latency_exceeded";
    /// G1 (TRAINING → BLENDING): fewer than two seed gradient-norm samples in the window
    /// (attribute `window`).
    SeedGradientWindowTooShort => SEED_GRADIENT_WINDOW_TOO_SHORT = "seed_gradient_window_too_short";
    /// G1 (TRAINING → BLENDING): a seed gradient norm is NaN or infinite (attribute `step`, the
    /// first such step in the window).
    SeedGradientNotFinite => SEED_GRADIENT_NOT_FINITE = "seed_gradient_not_finite";
    /// G1 (TRAINING → BLENDING): the window's mean seed gradient norm is not above the floor
    /// (attributes `mean_seed_grad_norm`, `seed_grad_norm_floor`).
    SeedGradientVanishing => SEED_GRADIENT_VANISHING = "seed_gradient_vanishing";
    /// G1 (TRAINING → BLENDING): some step's seed/host gradient-norm ratio is above the bound
    /// (attributes `max_grad_ratio`, the worst measured, and `grad_ratio_bound`).
    SeedGradientExploding => SEED_GRADIENT_EXPLODING = "seed_gradient_exploding";
    /// G2: the alpha schedule has not reached its end.
    AlphaScheduleIncomplete => ALPHA_SCHEDULE_INCOMPLETE = "alpha_schedule_incomplete";
    /// G2: the blended output holds NaN or infinite values.
    BlendedOutputNotFinite => BLENDED_OUTPUT_NOT_FINITE = "blended_output_not_finite";
    /// G2: fewer than two loss samples in the window.
    LossWindowTooShort => LOSS_WINDOW_TOO_SHORT = "loss_window_too_short";
    /// G2: a loss sample is NaN or infinite.
    LossNotFinite => LOSS_NOT_FINITE = "loss_not_finite";
    /// G2: the loss variance over the window is not below the threshold (oscillation).
    LossVarianceTooHigh => LOSS_VARIANCE_TOO_HIGH = "loss_variance_too_high";
    /// G2: the hook latency or the kernel-fetch latency exceeded its own budget (attributes
    /// `latency` = `hook` or `fetch`, `latency_ms`, `budget_ms`).
    LatencyBudgetExceeded => LATENCY_BUDGET_EXCEEDED = "latency_budget_exceeded";
    /// G3: the seed's output shape differs from the host activation's.
    OutputShapeMismatch => OUTPUT_SHAPE_MISMATCH = "output_shape_mismatch";
    /// G3: the seed's output dtype differs from the host activation's.
    OutputDtypeMismatch => OUTPUT_DTYPE_MISMATCH = "output_dtype_mismatch";
    /// G3: the seed's telemetry is incomplete.
    TelemetryIncomplete => TELEMETRY_INCOMPLETE = "telemetry_incomplete";
    /// G3: a pause/resume cycle happened and did not restore the kernel.
    KernelNotRestored => KERNEL_NOT_RESTORED = "kernel_not_restored";
    /// G3, G4: no counterfactual contribution was measured for the seed. The only
    /// [retryable](GateReason::is_retryable) reason: the gate refuses the move without culling and
    /// is asked again once the evidence exists.
    CounterfactualMissing => COUNTERFACTUAL_MISSING = "counterfactual_missing";
    /// G3: the seed is significantly harmful: its counterfactual contribution is below zero by
    /// more than `harm_sigmas` standard errors (attributes `counterfactual_mean`,
    /// `counterfactual_std_error`, `counterfactual_batches`, `harm_sigmas`).
    CounterfactualHarmful => COUNTERFACTUAL_HARMFUL = "counterfactual_harmful";
    /// Legacy, no longer returned (G4 no longer compares against a pre-germination baseline); kept
    /// so the wire string still parses.
    ValidationMetricNotFinite => VALIDATION_METRIC_NOT_FINITE = "validation_metric_not_finite";
    /// Legacy, no longer returned (G4 has no baseline tolerance any more); kept so the wire string
    /// still parses.
    InvalidTolerance => INVALID_TOLERANCE = "invalid_tolerance";
    /// Legacy, no longer returned (replaced by
    /// [`CounterfactualNotPositive`](GateReason::CounterfactualNotPositive)); kept so the wire string
    /// still parses.
    ValidationRegressed => VALIDATION_REGRESSED = "validation_regressed";
    /// G4: the counterfactual contribution is not significantly positive: its mean is not above
    /// zero and above `min_sigmas` standard errors (attributes `counterfactual_mean`,
    /// `counterfactual_std_error`, `counterfactual_batches`, `min_sigmas`).
    CounterfactualNotPositive => COUNTERFACTUAL_NOT_POSITIVE = "counterfactual_not_positive";
    /// G4: a circuit breaker is not closed (attributes `breaker`, the first such breaker's name,
    /// and `breaker_state`).
    BreakerNotClosed => BREAKER_NOT_CLOSED = "breaker_not_closed";
    /// G5: the seed's kernel is still held.
    KernelNotDropped => KERNEL_NOT_DROPPED = "kernel_not_dropped";
    /// G5: the seed's parameters are still registered.
    ParametersNotDeregistered => PARAMETERS_NOT_DEREGISTERED = "parameters_not_deregistered";
    /// G5: the seed's isolation session is still open.
    IsolationSessionOpen => ISOLATION_SESSION_OPEN = "isolation_session_open";
    /// G5: the seed's counters (violations, windows) are not zero.
    CountersNotZeroed => COUNTERS_NOT_ZEROED = "counters_not_zeroed";
    /// G5: cache entries for the seed remain.
    CacheEntriesRemaining => CACHE_ENTRIES_REMAINING = "cache_entries_remaining";
    /// G5: the slot does not forward the host activation unchanged (it must be the identity once
    /// its seed is gone).
    SlotOutputChanged => SLOT_OUTPUT_CHANGED = "slot_output_changed";
}

impl GateReason {
    /// Whether the refusal is retryable: the gate lacked its evidence rather than judged the seed,
    /// so the caller keeps the seed where it is and asks again later instead of culling it. True
    /// only for [`CounterfactualMissing`](Self::CounterfactualMissing).
    pub const fn is_retryable(self) -> bool {
        matches!(self, Self::CounterfactualMissing)
    }
}

impl fmt::Display for GateReason {
    /// The wire string ([`GateReason::as_str`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest seed id G0 accepts, in bytes.
pub const MAX_SEED_ID_LEN: usize = 128;
/// Default vanishing floor of G1 (TRAINING → BLENDING): the window's mean seed gradient norm must
/// be above it.
pub const DEFAULT_MIN_SEED_GRAD_NORM: f64 = 1e-8;
/// Default exploding bound of G1 (TRAINING → BLENDING): every step's seed/host gradient-norm ratio
/// must be at or below it.
pub const DEFAULT_MAX_GRAD_RATIO: f64 = 100.0;
/// Default ceiling on the loss variance over G2's window.
pub const DEFAULT_MAX_LOSS_VARIANCE: f64 = 0.25;
/// Default number of standard errors below zero at which G3 judges the seed harmful.
pub const DEFAULT_HARM_SIGMAS: f64 = 2.0;
/// Default number of standard errors the counterfactual contribution must exceed for G4.
pub const DEFAULT_MIN_SIGMAS: f64 = 2.0;

/// Who is evaluated, for which move, and when (wall time, for the event's timestamp).
#[derive(Debug, Clone, Copy)]
pub struct GateContext<'a> {
    /// The seed under evaluation.
    pub seed_id: &'a str,
    /// The stage the seed is in.
    pub from: Stage,
    /// The stage the move leads to.
    pub to: Stage,
    /// Wall-clock time stamped on the event.
    pub at: SystemTime,
}

/// G0 evidence (DORMANT → GERMINATED).
#[derive(Debug, Clone, Copy)]
pub struct SanityEvidence<'a> {
    /// The blueprint the germination asks for, exactly as requested (compared without trimming).
    pub blueprint_id: &'a str,
    /// The blueprint library's descriptor for it, `None` when the library does not know it.
    pub blueprint: Option<&'a BlueprintDescriptor>,
    /// The requested parameters; each must be finite and inside `allowed_parameters` bounds.
    pub parameters: &'a BTreeMap<String, f32>,
    /// Whether a seed with this id is already live elsewhere.
    pub seed_already_live: bool,
    /// Runs the kernel once on a probe input of the slot's layout; called only when every other
    /// G0 check passed (so a doomed germination fetches nothing). `None`, or a probe that returns
    /// `None` (no kernel could be built: gate G1 then reports it), checks only the request.
    pub shape_probe: Option<LazyProbe<'a>>,
}

/// What running a kernel once on a probe input of its slot's layout showed (G0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeProbe {
    /// The delta had the input's shape, dtype and device, and every value was finite.
    Matched,
    /// The kernel failed on the input, or its delta had another shape (`actual` `None` when it
    /// failed).
    Mismatch {
        /// The probe input's shape.
        expected: Vec<usize>,
        /// The delta's shape, if the kernel returned one.
        actual: Option<Vec<usize>>,
    },
    /// The delta had the right shape but a NaN or infinite value.
    NotFinite,
}

/// The G0 probe, run on demand (see [`SanityEvidence::shape_probe`]).
#[derive(Clone, Copy)]
pub struct LazyProbe<'a>(pub &'a dyn Fn() -> Option<ShapeProbe>);

impl std::fmt::Debug for LazyProbe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyProbe(..)")
    }
}

/// G1 evidence for GERMINATED → TRAINING.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GerminatedEvidence {
    /// A kernel is attached to the seed.
    pub kernel_attached: bool,
    /// The seed's parameters are registered.
    pub parameters_registered: bool,
    /// Registration reported a conflict (a parameter owned by the host or another seed).
    pub registration_conflict: bool,
    /// The isolation monitor is armed for the seed.
    pub isolation_armed: bool,
    /// Isolation violations recorded for the seed so far.
    pub isolation_violations: u32,
}

/// G1 evidence for TRAINING → BLENDING: gradient health over the training window.
#[derive(Debug, Clone, Copy)]
pub struct TrainingEvidence<'a> {
    /// The seed's gradient norm at each step of the window, oldest first.
    pub seed_grad_norms: &'a [f32],
    /// The host's gradient norm at the same steps (same length; empty = ratio not measured → the
    /// ratio check is skipped). Were the lengths to differ, the most recent steps of both are
    /// paired.
    pub host_grad_norms: &'a [f32],
    /// Vanishing floor: the window's mean seed gradient norm must be above it
    /// ([`DEFAULT_MIN_SEED_GRAD_NORM`] by default).
    pub min_seed_grad_norm: f64,
    /// Exploding bound: every step's seed/host norm ratio must be at or below it (host norm 0 with
    /// seed norm > 0 counts as exploding); [`DEFAULT_MAX_GRAD_RATIO`] by default.
    pub max_grad_ratio: f64,
    /// Shadow seed losses over the window (may be empty); each must be finite.
    pub seed_losses: &'a [f32],
    /// Isolation violations recorded for the seed.
    pub isolation_violations: u32,
    /// The isolation hook's latency (worst or last over the window), in ms.
    pub hook_latency_ms: f64,
    /// The hook's budget, in ms.
    pub hook_latency_budget_ms: f64,
    /// The seed's paired shadow contribution over the window: per step, the host's loss minus
    /// the loss with the slot's output taken from the seed (same batch, no gradient). `None`
    /// when the trainer reported no shadow losses (the check is then skipped).
    pub shadow_contribution: Option<Counterfactual>,
    /// A seed whose shadow contribution is below `-harm_sigmas * std_error` is harmful
    /// ([`GateReason::CounterfactualHarmful`]): it leaves before it ever touches the forward.
    pub harm_sigmas: f64,
}

/// G2 evidence (BLENDING → SHADOWING).
#[derive(Debug, Clone, Copy)]
pub struct StabilityEvidence<'a> {
    /// The alpha schedule has reached its end.
    pub alpha_schedule_complete: bool,
    /// Every blended output in the window was finite.
    pub blended_output_finite: bool,
    /// Loss over the blending window, oldest first.
    pub loss_window: &'a [f32],
    /// Ceiling on the window's (population) variance; [`DEFAULT_MAX_LOSS_VARIANCE`] by default.
    pub max_loss_variance: f64,
    /// The isolation hook's latency (worst or last over the window), in ms.
    pub hook_latency_ms: f64,
    /// The hook's budget, in ms.
    pub hook_latency_budget_ms: f64,
    /// The kernel fetch's latency, in ms.
    pub fetch_latency_ms: f64,
    /// The kernel fetch's budget, in ms.
    pub fetch_latency_budget_ms: f64,
    /// A fallback kernel serves the seed. Reported, never a failure by itself.
    pub fallback_used: bool,
}

/// Whether a pause/resume cycle happened to the seed and how it ended (G3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PauseResumeCheck {
    /// The seed was never paused.
    #[default]
    NotExercised,
    /// The seed was paused and resumed, and its kernel is back.
    KernelRestored,
    /// The seed was paused and resumed, and its kernel is not back.
    KernelNotRestored,
}

/// The seed's counterfactual contribution (decisions D2, revised), from paired per-batch
/// differences `loss(slot bypassed) - loss(seed at its alpha)` on the same model state and
/// batches; positive = the seed helps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counterfactual {
    /// Mean of the paired differences.
    pub mean: f64,
    /// Standard error of the mean: the sample standard deviation (n − 1 in the denominator) / √n.
    pub std_error: f64,
    /// How many batches (paired differences) were evaluated.
    pub batches: u32,
}

impl Counterfactual {
    /// From the paired differences: mean, standard error (sample std / sqrt(n)); None for fewer
    /// than 2 batches or any non-finite value (a difference, or a mean or standard error that
    /// overflows).
    pub fn from_differences(diffs: &[f64]) -> Option<Self> {
        if diffs.len() < 2 || diffs.iter().any(|d| !d.is_finite()) {
            return None;
        }
        let n = diffs.len() as f64;
        let mean = diffs.iter().sum::<f64>() / n;
        let variance = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let std_error = (variance / n).sqrt();
        if !(mean.is_finite() && std_error.is_finite()) {
            return None;
        }
        let batches = u32::try_from(diffs.len()).unwrap_or(u32::MAX);
        Some(Self { mean, std_error, batches })
    }

    /// Attaches `counterfactual_mean`, `counterfactual_std_error` and `counterfactual_batches`.
    fn attach(&self, run: &mut Run) {
        run.attr("counterfactual_mean", self.mean)
            .attr("counterfactual_std_error", self.std_error)
            .attr("counterfactual_batches", self.batches);
    }
}

/// G3 evidence (SHADOWING → PROBATIONARY).
#[derive(Debug, Clone, Copy)]
pub struct InterfaceEvidence<'a> {
    /// Shape of the seed's output.
    pub seed_output_shape: &'a [usize],
    /// Shape of the host activation the seed replaces.
    pub host_output_shape: &'a [usize],
    /// Dtype name of the seed's output (e.g. `f32`).
    pub seed_dtype: &'a str,
    /// Dtype name of the host activation.
    pub host_dtype: &'a str,
    /// Telemetry for the seed is complete.
    pub telemetry_complete: bool,
    /// The pause/resume check.
    pub pause_resume: PauseResumeCheck,
    /// The seed's counterfactual contribution; `None` (not measured) refuses the move with the
    /// retryable [`GateReason::CounterfactualMissing`].
    pub counterfactual: Option<Counterfactual>,
    /// The seed is harmful when the contribution's mean is below `-harm_sigmas * std_error`;
    /// [`DEFAULT_HARM_SIGMAS`] by default.
    pub harm_sigmas: f64,
    /// Whether the move needs a measured contribution. `false` re-validates the interface only
    /// (a resumed seed's kernel, before any counterfactual exists): a missing contribution then
    /// passes, a measured one is still checked.
    pub contribution_required: bool,
}

/// G4 evidence (PROBATIONARY → FOSSILIZED).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemImpactEvidence<'a> {
    /// The seed's counterfactual contribution; `None` (not measured) refuses the move with the
    /// retryable [`GateReason::CounterfactualMissing`].
    pub counterfactual: Option<Counterfactual>,
    /// The contribution's mean must be positive and above `min_sigmas * std_error`;
    /// [`DEFAULT_MIN_SIGMAS`] by default.
    pub min_sigmas: f64,
    /// The smallest contribution worth keeping, in loss units (0 = any significant one): a
    /// significant but negligible contribution is a seed the host has merely adapted to.
    pub min_mean: f64,
    /// Isolation violations recorded for the seed.
    pub isolation_violations: u32,
    /// Every circuit breaker by name with its state; G4 passes only when all are CLOSED (an
    /// empty list has none open).
    pub breakers: &'a [(&'a str, CircuitBreakerState)],
}

/// G5 evidence (RESETTING → DORMANT): the slot-clean report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResetEvidence {
    /// The seed's kernel has been dropped.
    pub kernel_dropped: bool,
    /// The seed's parameters have been deregistered.
    pub parameters_deregistered: bool,
    /// The seed's isolation session has been closed.
    pub isolation_session_closed: bool,
    /// The seed's counters are back to zero.
    pub counters_zeroed: bool,
    /// Cache entries for the seed have been removed.
    pub cache_entries_removed: bool,
    /// The slot forwards the host activation unchanged (observed, checked last).
    pub slot_forwards_host_unchanged: bool,
}

/// The evidence for one gated move; the variant names the gate and the move it fits.
#[derive(Debug, Clone, Copy)]
pub enum GateEvidence<'a> {
    /// G0, DORMANT → GERMINATED.
    Sanity(SanityEvidence<'a>),
    /// G1, GERMINATED → TRAINING.
    Germinated(GerminatedEvidence),
    /// G1, TRAINING → BLENDING.
    Training(TrainingEvidence<'a>),
    /// G2, BLENDING → SHADOWING.
    Stability(StabilityEvidence<'a>),
    /// G3, SHADOWING → PROBATIONARY.
    Interface(InterfaceEvidence<'a>),
    /// G4, PROBATIONARY → FOSSILIZED.
    SystemImpact(SystemImpactEvidence<'a>),
    /// G5, RESETTING → DORMANT.
    Reset(ResetEvidence),
}

impl GateEvidence<'_> {
    /// The gate this evidence is for.
    pub fn gate(&self) -> Gate {
        match self {
            Self::Sanity(_) => Gate::SeedGateG0Sanity,
            Self::Germinated(_) | Self::Training(_) => Gate::SeedGateG1GradientHealth,
            Self::Stability(_) => Gate::SeedGateG2Stability,
            Self::Interface(_) => Gate::SeedGateG3Interface,
            Self::SystemImpact(_) => Gate::SeedGateG4SystemImpact,
            Self::Reset(_) => Gate::SeedGateG5Reset,
        }
    }

    /// The move (`from`, `to`) this evidence is for.
    pub fn transition(&self) -> (Stage, Stage) {
        use Stage::*;
        match self {
            Self::Sanity(_) => (SeedStageDormant, SeedStageGerminated),
            Self::Germinated(_) => (SeedStageGerminated, SeedStageTraining),
            Self::Training(_) => (SeedStageTraining, SeedStageBlending),
            Self::Stability(_) => (SeedStageBlending, SeedStageShadowing),
            Self::Interface(_) => (SeedStageShadowing, SeedStageProbationary),
            Self::SystemImpact(_) => (SeedStageProbationary, SeedStageFossilized),
            Self::Reset(_) => (SeedStageResetting, SeedStageDormant),
        }
    }
}

macro_rules! evidence_from {
    ($($variant:ident($ty:ty)),+ $(,)?) => {$(
        impl<'a> From<$ty> for GateEvidence<'a> {
            fn from(e: $ty) -> Self {
                Self::$variant(e)
            }
        }
    )+};
}
evidence_from!(
    Sanity(SanityEvidence<'a>),
    Germinated(GerminatedEvidence),
    Training(TrainingEvidence<'a>),
    Stability(StabilityEvidence<'a>),
    Interface(InterfaceEvidence<'a>),
    SystemImpact(SystemImpactEvidence<'a>),
    Reset(ResetEvidence),
);

/// Runs the evaluator that `evidence` is for.
pub fn evaluate(ctx: &GateContext<'_>, evidence: &GateEvidence<'_>) -> GateEvent {
    verdict(ctx, evidence).0
}

/// A gate's event and its typed outcome (`Err` holds the reason the event carries as a string).
pub(crate) type Verdict = (GateEvent, Result<(), GateReason>);

/// Runs the evaluator that `evidence` is for, keeping the typed reason.
pub(crate) fn verdict(ctx: &GateContext<'_>, evidence: &GateEvidence<'_>) -> Verdict {
    match evidence {
        GateEvidence::Sanity(e) => g0_sanity(ctx, e),
        GateEvidence::Germinated(e) => g1_germinated(ctx, e),
        GateEvidence::Training(e) => g1_training(ctx, e),
        GateEvidence::Stability(e) => g2_stability(ctx, e),
        GateEvidence::Interface(e) => g3_interface(ctx, e),
        GateEvidence::SystemImpact(e) => g4_system_impact(ctx, e),
        GateEvidence::Reset(e) => g5_reset(ctx, e),
    }
}

/// Converts wall time to a protobuf `Timestamp` (times before 1970 count backwards).
pub fn timestamp(at: SystemTime) -> leyline::wkt::Timestamp {
    let (seconds, nanos) = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos() as i32),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n as i32),
            }
        }
    };
    leyline::wkt::Timestamp { seconds, nanos }
}

/// Accumulates attributes and the first failure of a gate run.
struct Run {
    gate: Gate,
    attributes: BTreeMap<String, String>,
}

impl Run {
    fn new(gate: Gate) -> Self {
        Self { gate, attributes: BTreeMap::new() }
    }

    fn attr(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.attributes.insert(key.to_owned(), value.to_string());
        self
    }

    fn finish(self, ctx: &GateContext<'_>, outcome: Result<(), GateReason>) -> Verdict {
        let event = GateEvent {
            gate: self.gate as i32,
            passed: outcome.is_ok(),
            reason: outcome.err().map(GateReason::as_str).unwrap_or_default().to_owned(),
            seed_id: ctx.seed_id.to_owned(),
            attributes: self.attributes,
            timestamp: Some(timestamp(ctx.at)),
            from_stage: ctx.from as i32,
            to_stage: ctx.to as i32,
        };
        (event, outcome)
    }
}

fn seed_id_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SEED_ID_LEN
        && !id.chars().any(|c| c.is_whitespace() || c.is_control() || is_bidi_control(c))
}

/// Unicode bidirectional formatting characters (ALM, LRM, RLM, LRE–RLO, LRI–PDI): not
/// [`char::is_control`], yet they reorder the text around them wherever a seed id is printed.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `value <= budget`, false for NaN on either side.
fn within(value: f64, budget: f64) -> bool {
    value <= budget
}

/// `value < ceiling`, false for NaN on either side.
fn below(value: f64, ceiling: f64) -> bool {
    value < ceiling
}

/// `value > floor`, false for NaN on either side.
fn above(value: f64, floor: f64) -> bool {
    value > floor
}

/// `value >= floor`, false for NaN on either side.
fn at_least(value: f64, floor: f64) -> bool {
    value >= floor
}

/// G0 Sanity: seed id valid and not live, blueprint present and known, every parameter finite,
/// allowed and inside its bounds, and — last, only when all of that passed — the kernel's delta on
/// a probe input of the slot's layout has the input's shape and is finite.
pub fn evaluate_g0_sanity(ctx: &GateContext<'_>, e: &SanityEvidence<'_>) -> GateEvent {
    g0_sanity(ctx, e).0
}

fn g0_sanity(ctx: &GateContext<'_>, e: &SanityEvidence<'_>) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG0Sanity);
    // The id exactly as requested: a padded id names no blueprint (no trimming here or upstream).
    let blueprint_id = e.blueprint_id;
    run.attr("blueprint_id", blueprint_id);
    let outcome = (|| {
        if !seed_id_valid(ctx.seed_id) {
            return Err(InvalidSeedId);
        }
        if e.seed_already_live {
            return Err(SeedAlreadyLive);
        }
        if blueprint_id.trim().is_empty() {
            return Err(MissingBlueprintId);
        }
        let Some(descriptor) = e.blueprint else {
            return Err(BlueprintUnknown);
        };
        if descriptor.blueprint_id != blueprint_id {
            run.attr("descriptor_id", &descriptor.blueprint_id);
            return Err(BlueprintMismatch);
        }
        for (name, &value) in e.parameters {
            if !value.is_finite() {
                run.attr("parameter", name).attr("value", value);
                return Err(ParameterNotFinite);
            }
            let Some(bounds) = descriptor.allowed_parameters.get(name) else {
                run.attr("parameter", name);
                return Err(ParameterNotAllowed);
            };
            let v = f64::from(value);
            if !(bounds.min_value <= v && v <= bounds.max_value) {
                run.attr("parameter", name)
                    .attr("value", value)
                    .attr("min", bounds.min_value)
                    .attr("max", bounds.max_value);
                return Err(ParameterOutOfBounds);
            }
        }
        match e.shape_probe.and_then(|probe| (probe.0)()) {
            None | Some(ShapeProbe::Matched) => Ok(()),
            Some(ShapeProbe::NotFinite) => Err(ProbeNotFinite),
            Some(ShapeProbe::Mismatch { expected, actual }) => {
                run.attr("expected", format!("{expected:?}"));
                run.attr("actual", actual.map_or_else(|| "kernel failed".to_owned(), |a| format!("{a:?}")));
                Err(ShapeMismatch)
            }
        }
    })();
    run.finish(ctx, outcome)
}

/// G1 Gradient health at GERMINATED → TRAINING: kernel attached, parameters registered without
/// conflict, isolation monitor armed, no violation so far.
pub fn evaluate_g1_germinated(ctx: &GateContext<'_>, e: &GerminatedEvidence) -> GateEvent {
    g1_germinated(ctx, e).0
}

fn g1_germinated(ctx: &GateContext<'_>, e: &GerminatedEvidence) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG1GradientHealth);
    run.attr("kernel_attached", e.kernel_attached);
    let outcome = if !e.kernel_attached {
        Err(KernelNotAttached)
    } else if e.registration_conflict {
        Err(RegistrationConflict)
    } else if !e.parameters_registered {
        Err(ParametersNotRegistered)
    } else if !e.isolation_armed {
        Err(IsolationNotArmed)
    } else if e.isolation_violations > 0 {
        run.attr("violations", e.isolation_violations);
        Err(IsolationViolationsPresent)
    } else {
        Ok(())
    };
    run.finish(ctx, outcome)
}

fn mean(xs: &[f32]) -> f64 {
    xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64
}

/// The worst seed/host gradient-norm ratio over the paired steps (the most recent steps of both
/// windows), `None` when the host norms were not measured. A step whose host norm is not positive
/// (0, or NaN) counts as an unbounded ratio when the seed norm is above 0, and as 0 otherwise.
fn worst_grad_ratio(seed: &[f32], host: &[f32]) -> Option<f64> {
    if host.is_empty() {
        return None;
    }
    let paired = seed.len().min(host.len());
    let pairs = seed[seed.len() - paired..].iter().zip(&host[host.len() - paired..]);
    let ratios = pairs.map(|(&s, &h)| {
        let (s, h) = (f64::from(s), f64::from(h));
        if h > 0.0 {
            s / h
        } else if s > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    });
    Some(ratios.fold(0.0, f64::max))
}

/// G1 Gradient health at TRAINING → BLENDING (decisions D2, revised): no isolation violations; at
/// least two seed gradient-norm samples, all finite; shadow seed losses finite; the mean seed
/// gradient norm above the vanishing floor; every step's seed/host norm ratio at or below the
/// exploding bound (skipped when the host norms were not measured); hook latency within budget.
/// There is no "loss improved" test. From the vanishing check on, the event carries
/// `mean_seed_grad_norm` and, when measured, `max_grad_ratio` (the worst step), pass or fail.
pub fn evaluate_g1_training(ctx: &GateContext<'_>, e: &TrainingEvidence<'_>) -> GateEvent {
    g1_training(ctx, e).0
}

fn g1_training(ctx: &GateContext<'_>, e: &TrainingEvidence<'_>) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG1GradientHealth);
    let norms = e.seed_grad_norms;
    let outcome = (|| {
        if e.isolation_violations > 0 {
            run.attr("violations", e.isolation_violations);
            return Err(IsolationViolationsPresent);
        }
        if norms.len() < 2 {
            run.attr("window", norms.len());
            return Err(SeedGradientWindowTooShort);
        }
        if let Some(step) = norms.iter().position(|x| !x.is_finite()) {
            run.attr("step", step);
            return Err(SeedGradientNotFinite);
        }
        if e.seed_losses.iter().any(|x| !x.is_finite()) {
            return Err(SeedLossNotFinite);
        }
        let mean_norm = mean(norms);
        let worst_ratio = worst_grad_ratio(norms, e.host_grad_norms);
        run.attr("mean_seed_grad_norm", mean_norm);
        if let Some(ratio) = worst_ratio {
            run.attr("max_grad_ratio", ratio);
        }
        // A NaN floor or bound fails.
        if !above(mean_norm, e.min_seed_grad_norm) {
            run.attr("seed_grad_norm_floor", e.min_seed_grad_norm);
            return Err(SeedGradientVanishing);
        }
        if worst_ratio.is_some_and(|ratio| !within(ratio, e.max_grad_ratio)) {
            run.attr("grad_ratio_bound", e.max_grad_ratio);
            return Err(SeedGradientExploding);
        }
        if let Some(cf) = e.shadow_contribution {
            run.attr("shadow_contribution_mean", cf.mean).attr("shadow_contribution_std_error", cf.std_error);
            // A NaN in the contribution or in `harm_sigmas` fails.
            if !at_least(cf.mean, -e.harm_sigmas * cf.std_error) {
                run.attr("harm_sigmas", e.harm_sigmas);
                return Err(CounterfactualHarmful);
            }
        }
        if !within(e.hook_latency_ms, e.hook_latency_budget_ms) {
            run.attr("hook_latency_ms", e.hook_latency_ms).attr("budget_ms", e.hook_latency_budget_ms);
            return Err(HookLatencyExceeded);
        }
        Ok(())
    })();
    run.finish(ctx, outcome)
}

/// G2 Stability: alpha schedule complete, blended output finite, loss variance over the window
/// below the ceiling, hook latency and kernel-fetch latency each within its own budget (hook
/// first). A fallback kernel is reported, not failed.
pub fn evaluate_g2_stability(ctx: &GateContext<'_>, e: &StabilityEvidence<'_>) -> GateEvent {
    g2_stability(ctx, e).0
}

fn g2_stability(ctx: &GateContext<'_>, e: &StabilityEvidence<'_>) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG2Stability);
    run.attr("fallback_used", e.fallback_used);
    let w = e.loss_window;
    let outcome = (|| {
        if !e.alpha_schedule_complete {
            return Err(AlphaScheduleIncomplete);
        }
        if !e.blended_output_finite {
            return Err(BlendedOutputNotFinite);
        }
        if w.len() < 2 {
            run.attr("window", w.len());
            return Err(LossWindowTooShort);
        }
        if w.iter().any(|x| !x.is_finite()) {
            return Err(LossNotFinite);
        }
        let m = mean(w);
        let variance = w.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / w.len() as f64;
        if !below(variance, e.max_loss_variance) {
            run.attr("loss_variance", variance).attr("max_loss_variance", e.max_loss_variance);
            return Err(LossVarianceTooHigh);
        }
        for (latency, value, budget) in [
            ("hook", e.hook_latency_ms, e.hook_latency_budget_ms),
            ("fetch", e.fetch_latency_ms, e.fetch_latency_budget_ms),
        ] {
            if !within(value, budget) {
                run.attr("latency", latency).attr("latency_ms", value).attr("budget_ms", budget);
                return Err(LatencyBudgetExceeded);
            }
        }
        Ok(())
    })();
    run.finish(ctx, outcome)
}

fn shape_str(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(","))
}

/// G3 Interface: output shape and dtype match the host activation, telemetry complete, a
/// pause/resume cycle (when one happened) restored the kernel, and then (decisions D2, revised)
/// the seed is not significantly harmful: a counterfactual contribution was measured (`None` is
/// the retryable [`GateReason::CounterfactualMissing`]) and its mean is not below
/// `-harm_sigmas * std_error`. A measured contribution is attached (`counterfactual_mean`,
/// `counterfactual_std_error`, `counterfactual_batches`), pass or fail.
pub fn evaluate_g3_interface(ctx: &GateContext<'_>, e: &InterfaceEvidence<'_>) -> GateEvent {
    g3_interface(ctx, e).0
}

fn g3_interface(ctx: &GateContext<'_>, e: &InterfaceEvidence<'_>) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG3Interface);
    if let Some(cf) = &e.counterfactual {
        cf.attach(&mut run);
    }
    let outcome = if e.seed_output_shape != e.host_output_shape {
        run.attr("seed_shape", shape_str(e.seed_output_shape)).attr("host_shape", shape_str(e.host_output_shape));
        Err(OutputShapeMismatch)
    } else if e.seed_dtype != e.host_dtype {
        run.attr("seed_dtype", e.seed_dtype).attr("host_dtype", e.host_dtype);
        Err(OutputDtypeMismatch)
    } else if !e.telemetry_complete {
        Err(TelemetryIncomplete)
    } else if e.pause_resume == PauseResumeCheck::KernelNotRestored {
        Err(KernelNotRestored)
    } else {
        match e.counterfactual {
            None if !e.contribution_required => {
                run.attr("dtype", e.seed_dtype);
                Ok(())
            }
            None => Err(CounterfactualMissing),
            // A NaN in the contribution or in `harm_sigmas` fails.
            Some(cf) if !at_least(cf.mean, -e.harm_sigmas * cf.std_error) => {
                run.attr("harm_sigmas", e.harm_sigmas);
                Err(CounterfactualHarmful)
            }
            Some(_) => {
                run.attr("dtype", e.seed_dtype);
                Ok(())
            }
        }
    };
    run.finish(ctx, outcome)
}

/// G4 System impact (decisions D2, revised): a counterfactual contribution was measured (`None`
/// is the retryable [`GateReason::CounterfactualMissing`]) and is significantly positive (mean
/// above 0 and above `min_sigmas * std_error`), no violations, every breaker closed (the first one
/// that is not is named). A measured contribution is attached (`counterfactual_mean`,
/// `counterfactual_std_error`, `counterfactual_batches`), pass or fail.
pub fn evaluate_g4_system_impact(ctx: &GateContext<'_>, e: &SystemImpactEvidence<'_>) -> GateEvent {
    g4_system_impact(ctx, e).0
}

fn g4_system_impact(ctx: &GateContext<'_>, e: &SystemImpactEvidence<'_>) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG4SystemImpact);
    // G4 decides fossilization: the contribution is attached pass or fail, for audit.
    if let Some(cf) = &e.counterfactual {
        cf.attach(&mut run);
    }
    let outcome = (|| {
        let Some(cf) = e.counterfactual else {
            return Err(CounterfactualMissing);
        };
        // A NaN in the contribution or in `min_sigmas` fails.
        if !(above(cf.mean, 0.0) && above(cf.mean, e.min_sigmas * cf.std_error) && above(cf.mean, e.min_mean)) {
            run.attr("min_sigmas", e.min_sigmas).attr("min_mean", e.min_mean);
            return Err(CounterfactualNotPositive);
        }
        if e.isolation_violations > 0 {
            run.attr("violations", e.isolation_violations);
            return Err(IsolationViolationsPresent);
        }
        if let Some((name, state)) =
            e.breakers.iter().find(|(_, state)| *state != CircuitBreakerState::CircuitStateClosed)
        {
            run.attr("breaker", name).attr("breaker_state", state.short_name());
            return Err(BreakerNotClosed);
        }
        Ok(())
    })();
    run.finish(ctx, outcome)
}

/// G5 Reset: the slot is clean (kernel dropped, parameters deregistered, isolation session
/// closed, counters zeroed, cache entries removed) and, checked last, forwards the host
/// activation unchanged. `reason` names the first unclean item; attribute `unclean` lists them
/// all, comma-separated.
pub fn evaluate_g5_reset(ctx: &GateContext<'_>, e: &ResetEvidence) -> GateEvent {
    g5_reset(ctx, e).0
}

fn g5_reset(ctx: &GateContext<'_>, e: &ResetEvidence) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG5Reset);
    let unclean: Vec<GateReason> = [
        (e.kernel_dropped, KernelNotDropped),
        (e.parameters_deregistered, ParametersNotDeregistered),
        (e.isolation_session_closed, IsolationSessionOpen),
        (e.counters_zeroed, CountersNotZeroed),
        (e.cache_entries_removed, CacheEntriesRemaining),
        (e.slot_forwards_host_unchanged, SlotOutputChanged),
    ]
    .into_iter()
    .filter_map(|(ok, reason)| (!ok).then_some(reason))
    .collect();
    let outcome = match unclean.first() {
        None => Ok(()),
        Some(&first) => {
            let names: Vec<&str> = unclean.iter().map(|r| r.as_str()).collect();
            run.attr("unclean", names.join(","));
            Err(first)
        }
    };
    run.finish(ctx, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_convert_on_both_sides_of_the_epoch() {
        let ts = timestamp(UNIX_EPOCH + Duration::new(5, 7));
        assert_eq!((ts.seconds, ts.nanos), (5, 7));
        let ts = timestamp(UNIX_EPOCH - Duration::new(1, 250_000_000));
        assert_eq!((ts.seconds, ts.nanos), (-2, 750_000_000));
        let ts = timestamp(UNIX_EPOCH - Duration::from_secs(3));
        assert_eq!((ts.seconds, ts.nanos), (-3, 0));
    }

    #[test]
    fn every_reason_round_trips_through_its_wire_string() {
        for &reason in GateReason::ALL {
            assert_eq!(GateReason::from_wire(reason.as_str()), Some(reason));
            assert_eq!(reason.to_string(), reason.as_str());
        }
        assert_eq!(GateReason::from_wire("Kernel_Not_Attached"), None);
        assert_eq!(GateReason::from_wire(""), None);
        assert_eq!(reasons::SLOT_OUTPUT_CHANGED, "slot_output_changed");
    }

    #[test]
    fn seed_ids_are_checked() {
        assert!(seed_id_valid("seed-1"));
        assert!(!seed_id_valid(""));
        assert!(!seed_id_valid("a b"));
        assert!(!seed_id_valid("a\u{7}"));
        for bidi in ['\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}'] {
            assert!(!seed_id_valid(&format!("seed{bidi}1")), "U+{:04X}", u32::from(bidi));
        }
        assert!(seed_id_valid("sämling-\u{2070}"));
        assert!(!seed_id_valid(&"x".repeat(MAX_SEED_ID_LEN + 1)));
    }
}
