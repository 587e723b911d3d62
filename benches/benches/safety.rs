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
    let seed_loss = [2.0f32, 1.9, 1.7, 1.6, 1.4, 1.3, 1.2, 1.1];
    let blend_loss = [1.0f32, 1.02, 0.99, 1.01];
    let shape = [32usize, 128];
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
                seed_loss_window: &seed_loss,
                window_part: DEFAULT_LOSS_WINDOW_PART,
                isolation_violations: 0,
                hook_latency_ms: 2.0,
                hook_latency_budget_ms: 10.0,
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
            }
            .into(),
        ),
        (
            Stage::SeedStageFossilized,
            SystemImpactEvidence {
                direction: MetricDirection::LowerIsBetter,
                validation_metric: 0.95,
                baseline_metric: 1.0,
                tolerance: DEFAULT_G4_TOLERANCE,
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
