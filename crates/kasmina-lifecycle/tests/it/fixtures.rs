//! Owned evidence that passes every gate, to be mutated by tests into each failure.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kasmina_lifecycle::gates::*;
use leyline::{BlueprintDescriptor, BlueprintParameterBounds, CircuitBreakerState, SeedLifecycleStage as Stage};

pub(crate) const SEED: &str = "seed-7";
pub(crate) const BLUEPRINT: &str = "BP001";

pub(crate) fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub(crate) fn ctx(seed_id: &str, from: Stage, to: Stage) -> GateContext<'_> {
    GateContext { seed_id, from, to, at: wall() }
}

pub(crate) fn descriptor() -> BlueprintDescriptor {
    let mut allowed = BTreeMap::new();
    allowed.insert("rank".to_owned(), BlueprintParameterBounds { min_value: 1.0, max_value: 64.0 });
    allowed.insert("dropout".to_owned(), BlueprintParameterBounds { min_value: 0.0, max_value: 0.5 });
    BlueprintDescriptor { blueprint_id: BLUEPRINT.into(), allowed_parameters: allowed, ..Default::default() }
}

/// G0 inputs, owned.
#[derive(Debug, Clone)]
pub(crate) struct G0 {
    pub(crate) seed_id: String,
    pub(crate) blueprint_id: String,
    pub(crate) blueprint: Option<BlueprintDescriptor>,
    pub(crate) parameters: BTreeMap<String, f32>,
    pub(crate) seed_already_live: bool,
}

impl G0 {
    pub(crate) fn passing() -> Self {
        let parameters = [("rank".to_owned(), 8.0), ("dropout".to_owned(), 0.1)].into_iter().collect();
        Self {
            seed_id: SEED.into(),
            blueprint_id: BLUEPRINT.into(),
            blueprint: Some(descriptor()),
            parameters,
            seed_already_live: false,
        }
    }

    pub(crate) fn evidence(&self) -> SanityEvidence<'_> {
        SanityEvidence {
            blueprint_id: &self.blueprint_id,
            blueprint: self.blueprint.as_ref(),
            parameters: &self.parameters,
            seed_already_live: self.seed_already_live,
            shape_probe: None,
        }
    }
}

pub(crate) fn g1_germinated() -> GerminatedEvidence {
    GerminatedEvidence {
        kernel_attached: true,
        parameters_registered: true,
        registration_conflict: false,
        isolation_armed: true,
        isolation_violations: 0,
    }
}

/// G1 (training) inputs, owned.
#[derive(Debug, Clone)]
pub(crate) struct G1Training {
    pub(crate) seed_grad_norms: Vec<f32>,
    pub(crate) host_grad_norms: Vec<f32>,
    pub(crate) min_seed_grad_norm: f64,
    pub(crate) max_grad_ratio: f64,
    pub(crate) seed_losses: Vec<f32>,
    pub(crate) isolation_violations: u32,
    pub(crate) hook_latency_ms: f64,
    pub(crate) hook_latency_budget_ms: f64,
    pub(crate) shadow_contribution: Option<Counterfactual>,
}

impl G1Training {
    /// Mean seed norm 0.25, worst seed/host ratio 0.5 (step 3: 0.4 / 0.8).
    pub(crate) fn passing() -> Self {
        Self {
            seed_grad_norms: vec![0.1, 0.2, 0.3, 0.4],
            host_grad_norms: vec![1.0, 1.0, 1.0, 0.8],
            min_seed_grad_norm: DEFAULT_MIN_SEED_GRAD_NORM,
            max_grad_ratio: DEFAULT_MAX_GRAD_RATIO,
            // Flat: the loss need not improve.
            seed_losses: vec![1.5, 1.5, 1.5, 1.5],
            isolation_violations: 0,
            hook_latency_ms: 2.0,
            hook_latency_budget_ms: 10.0,
            shadow_contribution: None,
        }
    }

    pub(crate) fn evidence(&self) -> TrainingEvidence<'_> {
        TrainingEvidence {
            seed_grad_norms: &self.seed_grad_norms,
            host_grad_norms: &self.host_grad_norms,
            min_seed_grad_norm: self.min_seed_grad_norm,
            max_grad_ratio: self.max_grad_ratio,
            seed_losses: &self.seed_losses,
            isolation_violations: self.isolation_violations,
            hook_latency_ms: self.hook_latency_ms,
            hook_latency_budget_ms: self.hook_latency_budget_ms,
            shadow_contribution: self.shadow_contribution,
            harm_sigmas: kasmina_lifecycle::gates::DEFAULT_HARM_SIGMAS,
        }
    }
}

/// G2 inputs, owned.
#[derive(Debug, Clone)]
pub(crate) struct G2 {
    pub(crate) alpha_schedule_complete: bool,
    pub(crate) blended_output_finite: bool,
    pub(crate) window: Vec<f32>,
    pub(crate) max_loss_variance: f64,
    pub(crate) hook_latency_ms: f64,
    pub(crate) hook_latency_budget_ms: f64,
    pub(crate) fetch_latency_ms: f64,
    pub(crate) fetch_latency_budget_ms: f64,
    pub(crate) fallback_used: bool,
}

impl G2 {
    pub(crate) fn passing() -> Self {
        Self {
            alpha_schedule_complete: true,
            blended_output_finite: true,
            window: vec![1.0, 1.02, 0.99, 1.01],
            max_loss_variance: DEFAULT_MAX_LOSS_VARIANCE,
            hook_latency_ms: 3.0,
            hook_latency_budget_ms: 5.0,
            fetch_latency_ms: 40.0,
            fetch_latency_budget_ms: 50.0,
            fallback_used: false,
        }
    }

    pub(crate) fn evidence(&self) -> StabilityEvidence<'_> {
        StabilityEvidence {
            alpha_schedule_complete: self.alpha_schedule_complete,
            blended_output_finite: self.blended_output_finite,
            loss_window: &self.window,
            max_loss_variance: self.max_loss_variance,
            hook_latency_ms: self.hook_latency_ms,
            hook_latency_budget_ms: self.hook_latency_budget_ms,
            fetch_latency_ms: self.fetch_latency_ms,
            fetch_latency_budget_ms: self.fetch_latency_budget_ms,
            fallback_used: self.fallback_used,
        }
    }
}

/// G3 inputs, owned.
#[derive(Debug, Clone)]
pub(crate) struct G3 {
    pub(crate) seed_shape: Vec<usize>,
    pub(crate) host_shape: Vec<usize>,
    pub(crate) seed_dtype: String,
    pub(crate) host_dtype: String,
    pub(crate) telemetry_complete: bool,
    pub(crate) pause_resume: PauseResumeCheck,
    pub(crate) counterfactual: Option<Counterfactual>,
    pub(crate) harm_sigmas: f64,
}

impl G3 {
    pub(crate) fn passing() -> Self {
        Self {
            seed_shape: vec![32, 128],
            host_shape: vec![32, 128],
            seed_dtype: "f32".into(),
            host_dtype: "f32".into(),
            telemetry_complete: true,
            pause_resume: PauseResumeCheck::NotExercised,
            counterfactual: Some(HELPFUL),
            harm_sigmas: DEFAULT_HARM_SIGMAS,
        }
    }

    pub(crate) fn evidence(&self) -> InterfaceEvidence<'_> {
        InterfaceEvidence {
            seed_output_shape: &self.seed_shape,
            host_output_shape: &self.host_shape,
            seed_dtype: &self.seed_dtype,
            host_dtype: &self.host_dtype,
            telemetry_complete: self.telemetry_complete,
            pause_resume: self.pause_resume,
            counterfactual: self.counterfactual,
            harm_sigmas: self.harm_sigmas,
            contribution_required: true,
        }
    }
}

/// Every breaker closed, by name.
pub(crate) const CLOSED_BREAKERS: &[(&str, CircuitBreakerState)] = &[
    ("kernel_fetch", CircuitBreakerState::CircuitStateClosed),
    ("blending", CircuitBreakerState::CircuitStateClosed),
    ("isolation", CircuitBreakerState::CircuitStateClosed),
];

/// A clearly helpful seed: mean 0.1, standard error 0.01 (10 standard errors above zero).
pub(crate) const HELPFUL: Counterfactual = Counterfactual { mean: 0.1, std_error: 0.01, batches: 16 };

pub(crate) fn g4() -> SystemImpactEvidence<'static> {
    SystemImpactEvidence {
        counterfactual: Some(HELPFUL),
        min_sigmas: DEFAULT_MIN_SIGMAS,
        min_mean: 0.0,
        isolation_violations: 0,
        breakers: CLOSED_BREAKERS,
    }
}

pub(crate) fn g5() -> ResetEvidence {
    ResetEvidence {
        kernel_dropped: true,
        parameters_deregistered: true,
        isolation_session_closed: true,
        counters_zeroed: true,
        cache_entries_removed: true,
        slot_forwards_host_unchanged: true,
    }
}
