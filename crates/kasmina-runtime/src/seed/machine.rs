//! The seed machine's transitions at a training step and at an epoch boundary (decisions D3):
//! evidence in, next stage and effects out.

use kasmina_lifecycle::Error as LifecycleError;
use kasmina_telemetry::names;
use leyline::{GateEvent, SeedLifecycleStage as Stage, TelemetryLevel};

use super::{
    Contribution, CullCause, Cx, Effect, Effects, IsolationEvidence, Live, Phase, Seed, ShadowStats, StageState,
    StepEvidence,
};
use crate::breakers::BreakerName;
use crate::events;
use crate::receipt::Refusal;

/// How a step ended for a live seed: go on to the phase's own bookkeeping, or stop here.
enum Flow {
    Continue,
    Stop,
}

impl Seed {
    /// One training step's evidence.
    pub(crate) fn on_step(&mut self, ev: &StepEvidence, cx: &Cx<'_>) -> Effects {
        let mut fx = Effects::default();
        match self.stage() {
            Stage::SeedStageGerminated if cx.config.auto_advance => {
                let _ = self.advance(Stage::SeedStageTraining, cx, &mut fx);
            }
            s if s.is_monitored() => {
                if let Flow::Continue = self.live_step(ev, cx, &mut fx) {
                    self.phase_step(ev, cx, &mut fx);
                }
            }
            Stage::SeedStageEmbargoed => self.poll_embargo(cx, &mut fx),
            Stage::SeedStageCulled => self.blend_out_step(cx, &mut fx),
            Stage::SeedStageFossilized => {
                if let StageState::Fossilized { ramp, .. } = &mut self.state {
                    *ramp += 1;
                    fx.push(Effect::Train);
                }
            }
            _ => {}
        }
        fx
    }

    /// An epoch boundary: ages the seed and ends probation when its window is complete.
    pub(crate) fn on_epoch(&mut self, cx: &Cx<'_>) -> Effects {
        let mut fx = Effects::default();
        if self.is_live() {
            self.epochs += 1;
        }
        let probation_done = self.live_mut().is_some_and(|l| match &mut l.phase {
            Phase::Probationary { steps, epochs, contribution, .. } if l.pause.is_none() => {
                *epochs += 1;
                *steps >= cx.config.probation_steps && contribution.ready()
            }
            _ => false,
        });
        if probation_done && cx.config.auto_advance && cx.config.auto_fossilize {
            let _ = self.advance(Stage::SeedStageFossilized, cx, &mut fx);
        }
        if self.stage() == Stage::SeedStageEmbargoed {
            self.poll_embargo(cx, &mut fx);
        }
        fx
    }

    /// The checks every live stage shares: pause, non-finite output, isolation, ownership.
    fn live_step(&mut self, ev: &StepEvidence, cx: &Cx<'_>, fx: &mut Effects) -> Flow {
        let stage = self.stage();
        let id = self.id.clone();
        let Some(live) = self.live_mut() else { return Flow::Stop };
        if live.pause.is_some() {
            live.count_paused_passes(ev.paused_passes, fx, &id);
            return Flow::Stop;
        }
        live.bump_window();
        if let Some(i) = &ev.interface {
            live.health.interface = Some(i.clone());
        }
        if ev.nan_output {
            self.non_finite_output(stage, cx, fx);
            return Flow::Stop;
        }
        if let Some(iso) = &ev.isolation
            && let Flow::Stop = self.isolation_checked(iso, cx, fx)
        {
            return Flow::Stop;
        }
        if let Some(v) = &ev.update_violation {
            if let Some(live) = self.live_mut() {
                live.health.update_violations = v.count;
            }
            fx.emit(events::parameter_violation(v));
            if v.threshold_reached {
                self.cull(CullCause::ParameterViolations, cx, fx);
            }
            return Flow::Stop;
        }
        fx.push(Effect::Train);
        Flow::Continue
    }

    /// A non-finite seed output: G1 (TRAINING) or G2 (BLENDING) refuses it; later stages cull.
    fn non_finite_output(&mut self, stage: Stage, cx: &Cx<'_>, fx: &mut Effects) {
        match stage {
            Stage::SeedStageTraining => {
                if let Some(Live { phase: Phase::Training { seed_losses, .. }, .. }) = self.live_mut() {
                    seed_losses.push(f32::NAN);
                }
                let _ = self.advance(Stage::SeedStageBlending, cx, fx);
            }
            Stage::SeedStageBlending => {
                if let Some(Live { phase: Phase::Blending { finite, .. }, .. }) = self.live_mut() {
                    *finite = false;
                }
                fx.push(Effect::BreakerFailure(BreakerName::Blending, "blended_output_not_finite"));
                let _ = self.advance(Stage::SeedStageShadowing, cx, fx);
            }
            _ => self.cull(CullCause::SeedOutputNotFinite, cx, fx),
        }
    }

    /// Records an isolation probe; a violation counts, and at the threshold (or with the
    /// isolation breaker open) culls the seed.
    fn isolation_checked(&mut self, iso: &IsolationEvidence, cx: &Cx<'_>, fx: &mut Effects) -> Flow {
        self.history.isolation_checks += 1;
        let id = self.id.clone();
        let Some(live) = self.live_mut() else { return Flow::Stop };
        live.health.last_hook_ms = iso.elapsed_ms;
        live.health.max_hook_ms = live.health.max_hook_ms.max(iso.elapsed_ms);
        if let Some(n) = iso.seed_grad_norm {
            live.health.last_grad_norm = n;
        }
        if !iso.violation {
            return Flow::Continue;
        }
        live.health.isolation_violations += 1;
        let count = live.health.isolation_violations;
        self.history.isolation_violations += 1;
        let level = if iso.breaker_open { TelemetryLevel::Critical } else { TelemetryLevel::Warning };
        fx.emit(names::ISOLATION_VIOLATION.event_at(
            level,
            [("seed_id", id.clone()), ("violations", count.to_string()), ("offending", iso.offending.join(","))],
        ));
        fx.emit(names::VIOLATION_RECORDED.event_at(level, [("seed_id", id), ("violations", count.to_string())]));
        if count >= cx.config.violation_threshold || iso.breaker_open {
            self.cull(CullCause::Isolation, cx, fx);
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// The phase's own window and its training-driven advance.
    fn phase_step(&mut self, ev: &StepEvidence, cx: &Cx<'_>, fx: &mut Effects) {
        let cfg = cx.config;
        let Some(live) = self.live_mut() else { return };
        let next = match &mut live.phase {
            Phase::Training { steps, seed_losses, last_vs_host, grads, shadow_diffs } => {
                if let Some(l) = ev.shadow_loss {
                    seed_losses.push(l);
                    *last_vs_host = Some(l - ev.loss);
                    shadow_diffs.push(f64::from(ev.loss) - f64::from(l));
                }
                if let Some(n) = ev.seed_grad_norm {
                    grads.record(n, ev.host_grad_norm);
                }
                (*steps >= cfg.training_steps).then_some(Stage::SeedStageBlending)
            }
            Phase::Blending { alpha, losses, .. } => {
                losses.push(ev.loss);
                if ev.blend_admitted {
                    alpha.advance();
                    fx.push(Effect::BreakerSuccess(BreakerName::Blending));
                }
                alpha.is_complete().then_some(Stage::SeedStageShadowing)
            }
            Phase::Shadowing { steps, shadow, contribution } => {
                record_shadow(shadow, ev);
                (*steps >= cfg.shadowing_steps && contribution.ready()).then_some(Stage::SeedStageProbationary)
            }
            Phase::Probationary { shadow, .. } => {
                record_shadow(shadow, ev);
                None
            }
            Phase::Germinated => None,
        };
        if let Some(to) = next
            && cfg.auto_advance
        {
            let _ = self.advance(to, cx, fx);
        }
    }

    /// Runs the gate guarding the move to `to`; on a pass moves the seed, on a failure culls
    /// it.
    pub(crate) fn advance(&mut self, to: Stage, cx: &Cx<'_>, fx: &mut Effects) -> Result<(), Refusal> {
        let Seed { lifecycle, state, history, .. } = self;
        let outcome = match super::gates::evidence(state, history, to, cx) {
            Some(evidence) => lifecycle.guarded_transition(to, &evidence),
            None => Err(LifecycleError::IllegalTransition { from: lifecycle.stage(), to }),
        };
        match outcome {
            Ok(outcome) => {
                if let Some(e) = outcome.gate_event {
                    self.record_gate(e, fx);
                }
                self.entered(to, cx, fx);
                Ok(())
            }
            Err(LifecycleError::GateFailed { reason, event, .. }) if reason.is_retryable() => {
                // The gate lacks its evidence (no counterfactual yet): refused, not culled.
                self.record_gate(*event, fx);
                if let Some(c) = self.live_mut().and_then(|l| l.phase.contribution_mut()) {
                    c.missing_reported = true;
                }
                Err(Refusal::Gate(reason))
            }
            Err(LifecycleError::GateFailed { reason, event, .. }) => {
                self.record_gate(*event, fx);
                self.cull(CullCause::Gate(reason), cx, fx);
                Err(Refusal::Gate(reason))
            }
            Err(e) => {
                fx.emit(events::illegal_transition(&self.id, self.stage(), to, &e));
                Err(Refusal::IllegalTransition)
            }
        }
    }

    /// Records a gate event in the history and in telemetry.
    pub(crate) fn record_gate(&mut self, event: GateEvent, fx: &mut Effects) {
        fx.emit(events::gate_event(&event));
        if !event.passed {
            fx.emit(events::gate_failure(&event));
        }
        self.history.gates.push(event);
    }

    /// The seed entered `to` (the lifecycle moved already): new stage data, stage events.
    pub(crate) fn entered(&mut self, to: Stage, cx: &Cx<'_>, fx: &mut Effects) {
        if self.history.stages.last() != Some(&to) {
            self.history.stages.push(to);
        }
        if to == Stage::SeedStageFossilized {
            self.fossilize(fx);
        } else if let Some(live) = self.live_mut() {
            live.phase = match to {
                Stage::SeedStageTraining => Phase::Training {
                    steps: 0,
                    seed_losses: Vec::new(),
                    last_vs_host: None,
                    grads: super::GradWindow::default(),
                    shadow_diffs: Vec::new(),
                },
                Stage::SeedStageBlending => {
                    let mut alpha = live.alpha_template.clone();
                    alpha.reset();
                    Phase::Blending { steps: 0, alpha, losses: Vec::new(), finite: true }
                }
                Stage::SeedStageShadowing => {
                    Phase::Shadowing { steps: 0, shadow: ShadowStats::default(), contribution: Contribution::default() }
                }
                Stage::SeedStageProbationary => Phase::Probationary {
                    steps: 0,
                    epochs: 0,
                    shadow: ShadowStats::default(),
                    contribution: Contribution::default(),
                },
                _ => Phase::Germinated,
            };
            live.health.max_hook_ms = 0.0;
        }
        self.emit_stage(cx.slot, fx);
    }

    /// `seed_state` and `seed_stage` events for the stage the seed is in.
    pub(crate) fn emit_stage(&self, slot: &str, fx: &mut Effects) {
        fx.extend_events(events::seed_state(&self.id, slot, self.stage(), self.alpha()));
    }

    /// FOSSILIZED: the kernel stays in the model, optimiser and monitor go, the parameters are
    /// handed to the host.
    fn fossilize(&mut self, fx: &mut Effects) {
        let state = std::mem::replace(&mut self.state, StageState::Dormant);
        self.state = match state {
            StageState::Live(live) => {
                let a = live.attached;
                fx.push(Effect::HandOver(a.kernel.vars()));
                // The seed keeps its optimiser (and its moments); the trainer's is left alone.
                StageState::Fossilized { kernel: a.kernel, optimizer: Box::new(a.optimizer), ramp: 0 }
            }
            other => other,
        };
    }
}

impl Live {
    fn bump_window(&mut self) {
        match &mut self.phase {
            Phase::Training { steps, .. }
            | Phase::Blending { steps, .. }
            | Phase::Shadowing { steps, .. }
            | Phase::Probationary { steps, .. } => *steps += 1,
            Phase::Germinated => {}
        }
    }

    /// A paused seed's forwards take identity passes from its quota; an exhausted quota ends
    /// the pause, once, with an event.
    fn count_paused_passes(&mut self, passes: u64, fx: &mut Effects, seed_id: &str) {
        let Some(pause) = self.pause.as_mut() else { return };
        let exhausted = (0..passes).any(|_| pause.passes.try_pass().is_err()) || pause.passes.remaining() == 0;
        if !exhausted {
            return;
        }
        let granted = pause.passes.granted();
        self.pause = None;
        self.health.pause_check = kasmina_lifecycle::gates::PauseResumeCheck::KernelRestored;
        fx.emit(names::PAUSE.event_at(
            TelemetryLevel::Warning,
            [
                ("seed_id", seed_id.to_owned()),
                ("quota", "exhausted".to_owned()),
                ("granted", granted.to_string()),
                ("action", "pause_ended".to_owned()),
            ],
        ));
    }
}

impl Contribution {
    /// The gate may run: a counterfactual was measured, or its absence was not reported yet
    /// (the gate then refuses once with `counterfactual_missing`, without culling).
    pub(crate) fn ready(&self) -> bool {
        self.counterfactual.is_some() || !self.missing_reported
    }
}

impl Seed {
    /// Records a counterfactual evaluation of the seed's current stage (SHADOWING,
    /// PROBATIONARY); `false` when the seed is in no such stage.
    pub(crate) fn record_counterfactual(
        &mut self,
        cf: kasmina_lifecycle::gates::Counterfactual,
        reference_loss: f64,
    ) -> bool {
        let Some(c) = self.live_mut().and_then(|l| l.phase.contribution_mut()) else { return false };
        c.counterfactual = Some(cf);
        c.reference_loss = reference_loss;
        c.missing_reported = false;
        true
    }

    /// One step of a blend-out: alpha moves toward 0; at 0 the seed leaves the forward and its
    /// embargo starts.
    fn blend_out_step(&mut self, cx: &Cx<'_>, fx: &mut Effects) {
        let StageState::BlendingOut { alpha, cause, .. } = &mut self.state else { return };
        alpha.advance();
        if !alpha.is_out() {
            return;
        }
        let cause = *cause;
        self.start_embargo(cause, cx, fx);
    }
}

fn record_shadow(shadow: &mut ShadowStats, ev: &StepEvidence) {
    if let Some((rel_l2, cosine)) = ev.shadow {
        shadow.record(rel_l2, cosine);
    }
}
