//! Safety and lifecycle hot paths: the breaker's closed path (design budget < 10 µs per call,
//! aim: tens of ns) and a full gated lifecycle walk DORMANT → … → FOSSILIZED → TERMINATED.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kasmina_lifecycle::gates::*;
use kasmina_lifecycle::{GateEvidence, LifecycleConfig, SeedLifecycle};
use kasmina_safety::{BreakerConfig, CircuitBreaker};
use leyline::{BlueprintDescriptor, BlueprintParameterBounds, CircuitBreakerState, SeedLifecycleStage as Stage};

fn breaker(c: &mut Criterion) {
    let closed =
        CircuitBreaker::new("kernel_fetch", BreakerConfig::default(), quanta::Clock::new()).expect("valid config");
    c.bench_function("cpu/safety/breaker_closed_allow_success", |b| {
        b.iter(|| {
            let permit = black_box(&closed).allow();
            black_box(&permit);
            black_box(closed.record_success())
        })
    });

    // OPEN for a year: every call takes the slow path and is denied.
    let config = BreakerConfig { open_timeout: Duration::from_secs(365 * 24 * 3600), ..BreakerConfig::DEFAULT };
    let open = CircuitBreaker::new("kernel_fetch", config, quanta::Clock::new()).expect("valid config");
    open.force_state(CircuitBreakerState::CircuitStateOpen, "bench").expect("forcible state");
    c.bench_function("cpu/safety/breaker_open_denied", |b| b.iter(|| black_box(black_box(&open).allow().is_err())));
}

fn lifecycle(c: &mut Criterion) {
    let clock = quanta::Clock::new();
    let mut allowed = BTreeMap::new();
    allowed.insert("rank".to_owned(), BlueprintParameterBounds { min_value: 1.0, max_value: 64.0 });
    let blueprint =
        BlueprintDescriptor { blueprint_id: "BP001".into(), allowed_parameters: allowed, ..Default::default() };
    let parameters: BTreeMap<String, f32> = [("rank".to_owned(), 8.0)].into_iter().collect();
    let seed_grad_norms = [0.10f32, 0.12, 0.11, 0.13, 0.12, 0.14, 0.13, 0.12];
    let host_grad_norms = [1.0f32, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.0];
    let seed_loss = [2.0f32, 1.9, 1.7, 1.6, 1.4, 1.3, 1.2, 1.1];
    let blend_loss = [1.0f32, 1.02, 0.99, 1.01];
    let shape = [32usize, 128];
    // A seed that helps: mean 0.1, standard error 0.01.
    let counterfactual = Counterfactual { mean: 0.1, std_error: 0.01, batches: 16 };
    let breakers = [
        ("kernel_fetch", CircuitBreakerState::CircuitStateClosed),
        ("blending", CircuitBreakerState::CircuitStateClosed),
        ("isolation", CircuitBreakerState::CircuitStateClosed),
    ];
    let ladder: [(Stage, GateEvidence<'_>); 6] = [
        (
            Stage::SeedStageGerminated,
            SanityEvidence {
                blueprint_id: "BP001",
                blueprint: Some(&blueprint),
                parameters: &parameters,
                seed_already_live: false,
                shape_probe: None,
            }
            .into(),
        ),
        (
            Stage::SeedStageTraining,
            GerminatedEvidence {
                kernel_attached: true,
                parameters_registered: true,
                registration_conflict: false,
                isolation_armed: true,
                isolation_violations: 0,
            }
            .into(),
        ),
        (
            Stage::SeedStageBlending,
            TrainingEvidence {
                seed_grad_norms: &seed_grad_norms,
                host_grad_norms: &host_grad_norms,
                min_seed_grad_norm: DEFAULT_MIN_SEED_GRAD_NORM,
                max_grad_ratio: DEFAULT_MAX_GRAD_RATIO,
                seed_losses: &seed_loss,
                isolation_violations: 0,
                hook_latency_ms: 2.0,
                hook_latency_budget_ms: 10.0,
                shadow_contribution: None,
                harm_sigmas: kasmina_lifecycle::gates::DEFAULT_HARM_SIGMAS,
            }
            .into(),
        ),
        (
            Stage::SeedStageShadowing,
            StabilityEvidence {
                alpha_schedule_complete: true,
                blended_output_finite: true,
                loss_window: &blend_loss,
                max_loss_variance: DEFAULT_MAX_LOSS_VARIANCE,
                hook_latency_ms: 3.0,
                hook_latency_budget_ms: 10.0,
                fetch_latency_ms: 20.0,
                fetch_latency_budget_ms: 50.0,
                fallback_used: false,
            }
            .into(),
        ),
        (
            Stage::SeedStageProbationary,
            InterfaceEvidence {
                seed_output_shape: &shape,
                host_output_shape: &shape,
                seed_dtype: "f32",
                host_dtype: "f32",
                telemetry_complete: true,
                pause_resume: PauseResumeCheck::NotExercised,
                counterfactual: Some(counterfactual),
                harm_sigmas: DEFAULT_HARM_SIGMAS,
                contribution_required: true,
            }
            .into(),
        ),
        (
            Stage::SeedStageFossilized,
            SystemImpactEvidence {
                counterfactual: Some(counterfactual),
                min_sigmas: DEFAULT_MIN_SIGMAS,
                min_mean: 0.0,
                isolation_violations: 0,
                breakers: &breakers,
            }
            .into(),
        ),
    ];
    c.bench_function("cpu/lifecycle/walk_7_transitions_with_gates", |b| {
        b.iter(|| {
            let mut seed = SeedLifecycle::new("seed-1", clock.clone(), LifecycleConfig::default());
            for (to, evidence) in black_box(&ladder) {
                black_box(seed.guarded_transition(*to, evidence).is_ok());
            }
            black_box(seed.terminate().is_ok());
            seed
        })
    });
}

criterion_group!(benches, breaker, lifecycle);
criterion_main!(benches);
