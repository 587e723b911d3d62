//! Gates G0–G5 as guard functions over explicit, typed evidence (decisions D2).
//!
//! Each evaluator is a pure function of a [`GateContext`] (seed, move, wall time) and its
//! evidence struct, and returns the [`GateEvent`] to emit, pass or fail. A failing gate names the
//! first check that failed in `reason` (a [`GateReason`], on the wire as its stable string, listed
//! in [`reasons`]) and carries the values it looked at in `attributes`. A passing gate carries a small, fixed set of attributes (as the
//! prototype did: G0 `blueprint_id`, G1 at germination `kernel_attached`, G2 `fallback_used`, G3
//! `dtype`, G4 `metric` and `baseline`); measured values that caused a
//! failure are attached only to the failing event. [`evaluate`] dispatches a [`GateEvidence`] to
//! its evaluator.

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
    /// bytes, or holds whitespace or control characters.
    InvalidSeedId => INVALID_SEED_ID = "invalid_seed_id";
    /// G0: a seed with this id is already live in another slot.
    SeedAlreadyLive => SEED_ALREADY_LIVE = "seed_already_live";
    /// G0: the requested blueprint id is blank.
    MissingBlueprintId => MISSING_BLUEPRINT_ID = "missing_blueprint_id";
    /// G0: the blueprint library does not know the blueprint.
    BlueprintUnknown => BLUEPRINT_UNKNOWN = "blueprint_unknown";
    /// G0: the descriptor given is for another blueprint than the one requested.
    BlueprintMismatch => BLUEPRINT_MISMATCH = "blueprint_mismatch";
    /// G0: a parameter is NaN or infinite (attribute `parameter`).
    ParameterNotFinite => PARAMETER_NOT_FINITE = "parameter_not_finite";
    /// G0: a parameter is not among the blueprint's `allowed_parameters` (attribute `parameter`).
    ParameterNotAllowed => PARAMETER_NOT_ALLOWED = "parameter_not_allowed";
    /// G0: a parameter lies outside its `allowed_parameters` bounds (attributes `parameter`,
    /// `value`, `min`, `max`).
    ParameterOutOfBounds => PARAMETER_OUT_OF_BOUNDS = "parameter_out_of_bounds";
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
    /// G1 (TRAINING → BLENDING): fewer than two seed-loss samples in the window.
    SeedLossWindowTooShort => SEED_LOSS_WINDOW_TOO_SHORT = "seed_loss_window_too_short";
    /// G1 (TRAINING → BLENDING): a seed-loss sample is NaN or infinite.
    SeedLossNotFinite => SEED_LOSS_NOT_FINITE = "seed_loss_not_finite";
    /// G1 (TRAINING → BLENDING): the mean of the window's last part is not below the mean of its
    /// first part.
    SeedLossNotImproved => SEED_LOSS_NOT_IMPROVED = "seed_loss_not_improved";
    /// G1 (TRAINING → BLENDING): the isolation hook took longer than its budget.
    HookLatencyExceeded => HOOK_LATENCY_EXCEEDED = "hook_latency_exceeded";
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
    /// G4: the validation metric or the baseline is NaN or infinite.
    ValidationMetricNotFinite => VALIDATION_METRIC_NOT_FINITE = "validation_metric_not_finite";
    /// G4: the tolerance is negative or not finite.
    InvalidTolerance => INVALID_TOLERANCE = "invalid_tolerance";
    /// G4: the validation metric is worse than the baseline beyond the tolerance.
    ValidationRegressed => VALIDATION_REGRESSED = "validation_regressed";
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

impl fmt::Display for GateReason {
    /// The wire string ([`GateReason::as_str`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest seed id G0 accepts, in bytes.
pub const MAX_SEED_ID_LEN: usize = 128;
/// Default fraction of the seed-loss window compared at each end by G1 (TRAINING → BLENDING).
pub const DEFAULT_LOSS_WINDOW_PART: f64 = 0.25;
/// Default ceiling on the loss variance over G2's window.
pub const DEFAULT_MAX_LOSS_VARIANCE: f64 = 0.25;
/// Default relative tolerance of G4 against the pre-germination baseline (1 %).
pub const DEFAULT_G4_TOLERANCE: f64 = 0.01;

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
    /// The blueprint the germination asks for.
    pub blueprint_id: &'a str,
    /// The blueprint library's descriptor for it, `None` when the library does not know it.
    pub blueprint: Option<&'a BlueprintDescriptor>,
    /// The requested parameters; each must be finite and inside `allowed_parameters` bounds.
    pub parameters: &'a BTreeMap<String, f32>,
    /// Whether a seed with this id is already live elsewhere.
    pub seed_already_live: bool,
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

/// G1 evidence for TRAINING → BLENDING.
#[derive(Debug, Clone, Copy)]
pub struct TrainingEvidence<'a> {
    /// Seed loss (task loss through the seed branch, as a shadow) over the training window, oldest first.
    pub seed_loss_window: &'a [f32],
    /// Fraction of the window compared at each end (clamped to at least one sample and at most
    /// half the window); [`DEFAULT_LOSS_WINDOW_PART`] by default.
    pub window_part: f64,
    /// Isolation violations recorded for the seed.
    pub isolation_violations: u32,
    /// The isolation hook's latency (worst or last over the window), in ms.
    pub hook_latency_ms: f64,
    /// The hook's budget, in ms.
    pub hook_latency_budget_ms: f64,
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
}

/// Which way a validation metric improves (G4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricDirection {
    /// Smaller is better (a loss).
    LowerIsBetter,
    /// Larger is better (an accuracy).
    HigherIsBetter,
}

impl MetricDirection {
    /// `lower_is_better` or `higher_is_better`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LowerIsBetter => "lower_is_better",
            Self::HigherIsBetter => "higher_is_better",
        }
    }
}

/// G4 evidence (PROBATIONARY → FOSSILIZED).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemImpactEvidence<'a> {
    /// Which way the metric improves.
    pub direction: MetricDirection,
    /// The validation metric now.
    pub validation_metric: f64,
    /// The same metric before germination.
    pub baseline_metric: f64,
    /// Relative tolerance (fraction of `|baseline|`); [`DEFAULT_G4_TOLERANCE`] by default.
    pub tolerance: f64,
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
    !id.is_empty() && id.len() <= MAX_SEED_ID_LEN && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `value <= budget`, false for NaN on either side.
fn within(value: f64, budget: f64) -> bool {
    value <= budget
}

/// `value < ceiling`, false for NaN on either side.
fn below(value: f64, ceiling: f64) -> bool {
    value < ceiling
}

/// G0 Sanity: seed id valid and not live, blueprint present and known, every parameter finite,
/// allowed and inside its bounds.
pub fn evaluate_g0_sanity(ctx: &GateContext<'_>, e: &SanityEvidence<'_>) -> GateEvent {
    g0_sanity(ctx, e).0
}

fn g0_sanity(ctx: &GateContext<'_>, e: &SanityEvidence<'_>) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG0Sanity);
    let blueprint_id = e.blueprint_id.trim();
    run.attr("blueprint_id", blueprint_id);
    let outcome = (|| {
        if !seed_id_valid(ctx.seed_id) {
            return Err(InvalidSeedId);
        }
        if e.seed_already_live {
            return Err(SeedAlreadyLive);
        }
        if blueprint_id.is_empty() {
            return Err(MissingBlueprintId);
        }
        let Some(descriptor) = e.blueprint else {
            return Err(BlueprintUnknown);
        };
        if descriptor.blueprint_id.trim() != blueprint_id {
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
        Ok(())
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

/// G1 Gradient health at TRAINING → BLENDING: no violations, seed loss finite over the window and
/// improved (mean of the last part below mean of the first part), hook latency within budget.
pub fn evaluate_g1_training(ctx: &GateContext<'_>, e: &TrainingEvidence<'_>) -> GateEvent {
    g1_training(ctx, e).0
}

fn g1_training(ctx: &GateContext<'_>, e: &TrainingEvidence<'_>) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG1GradientHealth);
    let w = e.seed_loss_window;
    let outcome = (|| {
        if e.isolation_violations > 0 {
            run.attr("violations", e.isolation_violations);
            return Err(IsolationViolationsPresent);
        }
        if w.len() < 2 {
            run.attr("window", w.len());
            return Err(SeedLossWindowTooShort);
        }
        if w.iter().any(|x| !x.is_finite()) {
            return Err(SeedLossNotFinite);
        }
        // `as usize` maps NaN to 0; the clamp keeps one sample at least and half the window at most.
        let part = ((w.len() as f64 * e.window_part).ceil() as usize).clamp(1, w.len() / 2);
        let (first, last) = (mean(&w[..part]), mean(&w[w.len() - part..]));
        if last >= first {
            run.attr("seed_loss_first", first).attr("seed_loss_last", last);
            return Err(SeedLossNotImproved);
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

/// G3 Interface: output shape and dtype match the host activation, telemetry complete, and a
/// pause/resume cycle (when one happened) restored the kernel.
pub fn evaluate_g3_interface(ctx: &GateContext<'_>, e: &InterfaceEvidence<'_>) -> GateEvent {
    g3_interface(ctx, e).0
}

fn g3_interface(ctx: &GateContext<'_>, e: &InterfaceEvidence<'_>) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG3Interface);
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
        run.attr("dtype", e.seed_dtype);
        Ok(())
    };
    run.finish(ctx, outcome)
}

/// G4 System impact: validation metric not worse than the baseline beyond the relative
/// tolerance, no violations, every breaker closed (the first one that is not is named).
pub fn evaluate_g4_system_impact(ctx: &GateContext<'_>, e: &SystemImpactEvidence<'_>) -> GateEvent {
    g4_system_impact(ctx, e).0
}

fn g4_system_impact(ctx: &GateContext<'_>, e: &SystemImpactEvidence<'_>) -> Verdict {
    use GateReason::*;
    let mut run = Run::new(Gate::SeedGateG4SystemImpact);
    // G4 decides fossilization: the metric and its baseline are attached pass or fail, for audit.
    run.attr("metric", e.validation_metric).attr("baseline", e.baseline_metric);
    let outcome = (|| {
        if !e.validation_metric.is_finite() || !e.baseline_metric.is_finite() {
            return Err(ValidationMetricNotFinite);
        }
        if !(e.tolerance >= 0.0 && e.tolerance.is_finite()) {
            return Err(InvalidTolerance);
        }
        let slack = e.tolerance * e.baseline_metric.abs();
        let regressed = match e.direction {
            MetricDirection::LowerIsBetter => e.validation_metric > e.baseline_metric + slack,
            MetricDirection::HigherIsBetter => e.validation_metric < e.baseline_metric - slack,
        };
        if regressed {
            run.attr("direction", e.direction.as_str()).attr("tolerance", e.tolerance);
            return Err(ValidationRegressed);
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
        assert!(!seed_id_valid(&"x".repeat(MAX_SEED_ID_LEN + 1)));
    }
}
