//! The evidence each gate reads (decisions D2), built from what the seed observed in its
//! window. Nothing here is asserted: every field comes from a measurement or a record.

use kasmina_lifecycle::GateEvidence;
use kasmina_lifecycle::gates::{
    GerminatedEvidence, InterfaceEvidence, StabilityEvidence, SystemImpactEvidence, TrainingEvidence,
};
use leyline::SeedLifecycleStage as Stage;

use kasmina_lifecycle::gates::{GateContext, evaluate_g3_interface};
use leyline::GateEvent;

use super::{Cx, History, Live, Phase, Seed, StageState};

/// The evidence for the gate guarding the move to `to`; `None` when the seed is not in the
/// stage that move starts from.
pub(super) fn evidence<'a>(
    state: &'a StageState,
    history: &History,
    to: Stage,
    cx: &'a Cx<'a>,
) -> Option<GateEvidence<'a>> {
    let StageState::Live(live) = state else { return None };
    let cfg = cx.config;
    Some(match (&live.phase, to) {
        (Phase::Germinated, Stage::SeedStageTraining) => GateEvidence::Germinated(germinated(live)),
        (Phase::Training { seed_losses, grads, shadow_diffs, .. }, Stage::SeedStageBlending) => {
            GateEvidence::Training(TrainingEvidence {
                seed_grad_norms: &grads.seed_norms,
                host_grad_norms: &grads.host_norms,
                min_seed_grad_norm: cfg.min_seed_grad_norm,
                max_grad_ratio: cfg.max_grad_ratio,
                seed_losses,
                isolation_violations: live.health.isolation_violations,
                hook_latency_ms: live.health.max_hook_ms,
                hook_latency_budget_ms: cfg.hook_latency_budget_ms,
                // The stand-alone contribution means something only when the seed learned it.
                shadow_contribution: (cfg.training_mode == crate::config::TrainingMode::Shadow)
                    .then(|| kasmina_lifecycle::gates::Counterfactual::from_differences(shadow_diffs))
                    .flatten(),
                harm_sigmas: cfg.harm_sigmas,
            })
        }
        (Phase::Blending { alpha, losses, finite, .. }, Stage::SeedStageShadowing) => {
            GateEvidence::Stability(StabilityEvidence {
                alpha_schedule_complete: alpha.is_complete(),
                blended_output_finite: *finite,
                loss_window: losses,
                max_loss_variance: cfg.max_loss_variance,
                hook_latency_ms: live.health.max_hook_ms,
                hook_latency_budget_ms: cfg.hook_latency_budget_ms,
                // A good fallback kernel does not fail G2 by itself: its fetch was the
                // failed one, not the kernel that serves.
                fetch_latency_ms: if live.attached.fallback_used { 0.0 } else { live.attached.fetch_latency_ms },
                fetch_latency_budget_ms: cfg.fetch_latency_budget_ms,
                fallback_used: live.attached.fallback_used,
            })
        }
        (Phase::Shadowing { .. }, Stage::SeedStageProbationary) => {
            GateEvidence::Interface(interface(live, history, cx, true))
        }
        (Phase::Probationary { contribution, .. }, Stage::SeedStageFossilized) => {
            GateEvidence::SystemImpact(SystemImpactEvidence {
                counterfactual: contribution.counterfactual,
                min_sigmas: cfg.counterfactual_sigmas,
                min_mean: cfg.min_contribution * contribution.reference_loss.abs(),
                isolation_violations: live.health.isolation_violations,
                breakers: &cx.breakers,
            })
        }
        _ => return None,
    })
}

/// G1 at GERMINATED → TRAINING. A live seed holds its kernel and its armed monitor (an attach
/// that fails never makes a live seed: its own G1 evidence says what failed); registration is
/// what the registry answered at attach.
pub(crate) fn germinated(live: &Live) -> GerminatedEvidence {
    GerminatedEvidence {
        kernel_attached: true,
        parameters_registered: live.attached.registered,
        registration_conflict: false,
        isolation_armed: true,
        isolation_violations: live.health.isolation_violations,
    }
}

/// G3: the interface the slot observed, the seed's stage events actually emitted, the
/// pause/resume record.
fn interface<'a>(live: &'a Live, history: &History, cx: &Cx<'_>, contribution_required: bool) -> InterfaceEvidence<'a> {
    let (seed_shape, host_shape, seed_dtype, host_dtype): (&[usize], &[usize], &str, &str) =
        match &live.health.interface {
            Some(i) => (&i.seed_shape, &i.host_shape, i.seed_dtype.as_str(), i.host_dtype.as_str()),
            // No forward observed the seed: the interface is unknown, which G3 reads as a mismatch.
            None => (&[], &[0], "unknown", "unobserved"),
        };
    // Every stage the seed entered since its germination was published (DORMANT is where it
    // started, not an event of its own).
    let entered: Vec<&Stage> = history.stages.iter().filter(|s| **s != Stage::SeedStageDormant).collect();
    let telemetry_complete = !entered.is_empty() && entered.iter().all(|s| cx.emitted_stages.contains(s));
    InterfaceEvidence {
        counterfactual: live.phase.contribution().and_then(|c| c.counterfactual),
        harm_sigmas: cx.config.harm_sigmas,
        contribution_required,
        seed_output_shape: seed_shape,
        host_output_shape: host_shape,
        seed_dtype,
        host_dtype,
        telemetry_complete,
        pause_resume: live.health.pause_check,
    }
}

/// G3 evaluated (not as a move) on a resumed seed, when a forward has observed its interface.
pub(super) fn interface_event(seed: &Seed, cx: &Cx<'_>) -> Option<GateEvent> {
    let live = seed.live()?;
    live.health.interface.as_ref()?;
    let ctx = GateContext { seed_id: &seed.id, from: seed.stage(), to: Stage::SeedStageProbationary, at: cx.wall };
    Some(evaluate_g3_interface(&ctx, &interface(live, &seed.history, cx, false)))
}
