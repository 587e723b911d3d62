//! The failure path (decisions D1, D5): cull → EMBARGOED (timed) → RESETTING (slot cleaned) →
//! G5 over what the runtime observed → DORMANT; and administrative teardown to TERMINATED.

use kasmina_lifecycle::gates::ResetEvidence;
use kasmina_lifecycle::{EmbargoEvent, GateEvidence};
use kasmina_telemetry::names;
use leyline::SeedLifecycleStage as Stage;

use kasmina_isolation::{AlphaController, AlphaCurve};

use super::{CullCause, Cx, Effect, Effects, Phase, ResetObservation, Seed, StageState};
use crate::events;
use crate::receipt::Refusal;

impl Seed {
    /// Starts the failure path. A seed blended into the model (alpha > 0) is blended out first
    /// (decisions D4): it stays CULLED while alpha ramps to 0 with its parameters frozen, then
    /// its embargo starts. A non-finite or isolation-violating seed leaves the forward at once:
    /// CULLED → EMBARGOED. Either way the parameters are deregistered and the rollback payload
    /// is recorded now.
    pub(crate) fn cull(&mut self, cause: CullCause, cx: &Cx<'_>, fx: &mut Effects) {
        let before = self.stage();
        if let Some(alpha) = self.blend_out_from(cause, cx) {
            if let Err(e) = self.lifecycle.begin_cull(cause.reason(), cx.now) {
                fx.emit(events::illegal_transition(&self.id, before, Stage::SeedStageCulled, &e));
                return;
            }
            let Some(kernel) = self.kernel().cloned() else { return };
            self.state = StageState::BlendingOut { kernel, alpha, cause };
            self.history.stages.push(Stage::SeedStageCulled);
            self.history.cull = Some(cause);
            fx.push(Effect::Deregister);
            self.emit_stage(cx.slot, fx);
            fx.push(Effect::Rollback { stage: before, cause });
            return;
        }
        let embargo = match self.lifecycle.cull(cause.reason(), cx.now) {
            Ok(e) => e,
            Err(e) => {
                fx.emit(events::illegal_transition(&self.id, before, Stage::SeedStageCulled, &e));
                return;
            }
        };
        self.history.stages.push(Stage::SeedStageCulled);
        self.history.cull = Some(cause);
        fx.push(Effect::Deregister);
        self.entered_embargo(embargo, cause, cx, fx);
        fx.push(Effect::Rollback { stage: before, cause });
    }

    /// The alpha controller a blend-out starts from: `Some` when the seed is blended in and
    /// the cause allows a gradual removal.
    fn blend_out_from(&self, cause: CullCause, cx: &Cx<'_>) -> Option<AlphaController> {
        if cause.removes_at_once() || self.alpha() <= 0.0 {
            return None;
        }
        let mut alpha = match &self.live()?.phase {
            Phase::Blending { alpha, .. } => alpha.clone(),
            Phase::Shadowing { .. } | Phase::Probationary { .. } => {
                let mut full = AlphaController::new(AlphaCurve::Linear, 1).ok()?;
                full.advance();
                full
            }
            _ => return None,
        };
        alpha.blend_out(cx.config.blend_out_steps).ok()?;
        Some(alpha)
    }

    /// A blend-out finished: the seed leaves the forward and its embargo starts.
    pub(crate) fn start_embargo(&mut self, cause: CullCause, cx: &Cx<'_>, fx: &mut Effects) {
        match self.lifecycle.cull(cause.reason(), cx.now) {
            Ok(embargo) => self.entered_embargo(embargo, cause, cx, fx),
            Err(e) => fx.emit(events::illegal_transition(&self.id, self.stage(), Stage::SeedStageEmbargoed, &e)),
        }
    }

    fn entered_embargo(&mut self, embargo: Option<EmbargoEvent>, cause: CullCause, cx: &Cx<'_>, fx: &mut Effects) {
        self.history.stages.push(self.stage());
        self.state = StageState::Embargoed { since_step: cx.step };
        if let Some(EmbargoEvent::Start { duration, .. }) = &embargo {
            fx.emit(names::EMBARGO_START.event_with([
                ("seed_id", self.id.clone()),
                ("reason", cause.reason().to_owned()),
                ("duration_ms", duration.as_millis().to_string()),
            ]));
        }
        self.emit_stage(cx.slot, fx);
    }

    /// EMBARGOED → RESETTING once the embargo elapsed (time, and steps when configured); the
    /// slot is cleaned then, and observed at the next safe point.
    pub(crate) fn poll_embargo(&mut self, cx: &Cx<'_>, fx: &mut Effects) {
        let StageState::Embargoed { since_step } = self.state else { return };
        let steps = cx.config.embargo_steps;
        if steps > 0 && cx.step.saturating_sub(since_step) < steps {
            return;
        }
        let Some(EmbargoEvent::End { embargoed_for, .. }) = self.lifecycle.poll(cx.now) else { return };
        self.history.stages.push(Stage::SeedStageResetting);
        fx.emit(
            names::EMBARGO_END
                .event_with([("seed_id", self.id.clone()), ("embargoed_ms", embargoed_for.as_millis().to_string())]),
        );
        self.clean(fx);
        self.emit_stage(cx.slot, fx);
    }

    /// Cleans the slot: no kernel, no registered parameter, no lease, no telemetry record.
    fn clean(&mut self, fx: &mut Effects) {
        self.state = StageState::Resetting;
        fx.push(Effect::Deregister);
        fx.push(Effect::ReleaseLease);
        fx.push(Effect::ForgetTelemetry);
    }

    /// G5 over what the runtime observed of the cleaned slot: DORMANT on a pass; on a failure
    /// the seed stays in RESETTING and the slot is cleaned again (observed at the next safe
    /// point).
    pub(crate) fn finish_reset(&mut self, seen: ResetObservation, cx: &Cx<'_>, fx: &mut Effects) {
        if self.stage() != Stage::SeedStageResetting {
            return;
        }
        let evidence = ResetEvidence {
            kernel_dropped: self.kernel().is_none(),
            parameters_deregistered: !seen.parameters_registered,
            isolation_session_closed: self.live().is_none(),
            counters_zeroed: matches!(self.state, StageState::Resetting),
            cache_entries_removed: seen.cache_entries == 0,
            slot_forwards_host_unchanged: seen.slot_transparent,
        };
        match self.lifecycle.guarded_transition(Stage::SeedStageDormant, &GateEvidence::Reset(evidence)) {
            Ok(outcome) => {
                if let Some(e) = outcome.gate_event {
                    self.record_gate(e, fx);
                }
                self.state = StageState::Dormant;
                self.history.stages.push(Stage::SeedStageDormant);
                self.emit_stage(cx.slot, fx);
            }
            Err(kasmina_lifecycle::Error::GateFailed { event, .. }) => {
                self.record_gate(*event, fx);
                self.clean(fx);
            }
            Err(e) => fx.emit(events::illegal_transition(&self.id, self.stage(), Stage::SeedStageDormant, &e)),
        }
    }

    /// Administrative teardown (decisions D1): TERMINATED from any non-terminal stage, the slot
    /// cleaned as for G5.
    pub(crate) fn terminate(&mut self, cx: &Cx<'_>, fx: &mut Effects) -> Result<(), Refusal> {
        let before = self.stage();
        if let Err(e) = self.lifecycle.terminate() {
            fx.emit(events::illegal_transition(&self.id, before, Stage::SeedStageTerminated, &e));
            return Err(Refusal::IllegalTransition);
        }
        self.clean(fx);
        self.state = StageState::Terminated;
        self.history.stages.push(Stage::SeedStageTerminated);
        self.emit_stage(cx.slot, fx);
        Ok(())
    }
}
