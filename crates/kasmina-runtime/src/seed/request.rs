//! Tamiyo's stage requests on one seed (decisions D3): an advance still passes its gate and
//! needs its window; fine-tune restarts the window; pause and resume.

use kasmina_lifecycle::gates::{GateContext, GateReason, PauseResumeCheck, evaluate_g1_germinated};
use kasmina_safety::PausePasses;
use kasmina_telemetry::names;
use leyline::SeedLifecycleStage as Stage;

use kasmina_isolation::AlphaController;

use super::{CullCause, Cx, Effects, Live, Pause, Phase, Seed, gates};
use crate::receipt::Refusal;

/// How a command shapes a seed's alpha ramp (START_GRAFTING, FINE_TUNE in BLENDING).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct AlphaRequest {
    pub(crate) steps: Option<u64>,
    pub(crate) curve: Option<kasmina_isolation::AlphaCurve>,
    pub(crate) target: Option<f64>,
    pub(crate) hold: Option<bool>,
}

impl Seed {
    /// A requested move `from` → `to`: refused without effect unless the seed is in `from`,
    /// not paused and its window is complete; then the gate decides (and a failure culls).
    pub(crate) fn request_advance(
        &mut self,
        from: Stage,
        to: Stage,
        alpha: Option<AlphaRequest>,
        cx: &Cx<'_>,
        fx: &mut Effects,
    ) -> Result<(), Refusal> {
        if self.stage() != from {
            return Err(Refusal::IllegalTransition);
        }
        let Some(live) = self.live() else { return Err(Refusal::IllegalTransition) };
        if live.pause.is_some() {
            return Err(Refusal::SeedPaused);
        }
        let cfg = cx.config;
        let window_ok = match &live.phase {
            Phase::Training { steps, .. } => *steps >= cfg.training_steps,
            Phase::Shadowing { steps, .. } => *steps >= cfg.shadowing_steps,
            Phase::Probationary { steps, epochs, .. } => *steps >= cfg.probation_steps && *epochs >= 1,
            Phase::Germinated | Phase::Blending { .. } => true,
        };
        if !window_ok {
            return Err(Refusal::WindowIncomplete);
        }
        if let Some(req) = alpha {
            let Some(live) = self.live_mut() else { return Err(Refusal::IllegalTransition) };
            let mut template = match (req.curve, req.steps) {
                (None, None) => live.alpha_template.clone(),
                (curve, steps) => AlphaController::new(
                    curve.unwrap_or(live.alpha_template.curve()),
                    steps.unwrap_or(live.alpha_template.steps()),
                )
                .map_err(|_| Refusal::InvalidParameter)?,
            };
            if let Some(t) = req.target {
                template = template.with_target(t).map_err(|_| Refusal::InvalidParameter)?;
            }
            live.alpha_template = template;
        }
        self.advance(to, cx, fx)?;
        if let Some(hold) = alpha.and_then(|a| a.hold) {
            self.steer_alpha(AlphaRequest { hold: Some(hold), ..AlphaRequest::default() })?;
        }
        Ok(())
    }

    /// Retargets or holds the alpha ramp of a BLENDING seed (no jump: alpha stays continuous).
    fn steer_alpha(&mut self, req: AlphaRequest) -> Result<(), Refusal> {
        let Some(Live { phase: Phase::Blending { alpha, .. }, .. }) = self.live_mut() else {
            return Err(Refusal::IllegalTransition);
        };
        if let Some(t) = req.target {
            alpha.set_target(t).map_err(|_| Refusal::InvalidParameter)?;
        }
        if let Some(h) = req.hold {
            alpha.hold(h);
        }
        Ok(())
    }

    /// FINE_TUNE: the seed stays in its stage and its window starts again; in BLENDING with
    /// alpha parameters, the ramp is retargeted or held instead (partial blends).
    pub(crate) fn fine_tune(
        &mut self,
        alpha: Option<AlphaRequest>,
        cx: &Cx<'_>,
        fx: &mut Effects,
    ) -> Result<(), Refusal> {
        let stage = self.stage();
        if !stage.is_monitored() {
            return Err(Refusal::FineTuneNotAllowed);
        }
        if let Some(req) = alpha {
            return if stage == Stage::SeedStageBlending {
                self.steer_alpha(req)
            } else {
                Err(Refusal::FineTuneNotAllowed)
            };
        }
        self.entered(stage, cx, fx);
        Ok(())
    }

    /// Checks that a pause may start (before the quota is asked for passes).
    pub(crate) fn can_pause(&self) -> Result<(), Refusal> {
        match self.live() {
            None => Err(Refusal::PauseNotAllowed),
            Some(l) if l.pause.is_some() => Err(Refusal::AlreadyPaused),
            Some(_) => Ok(()),
        }
    }

    /// PAUSE with the identity passes the quota granted: the slot forwards the host activation
    /// and each pass counts.
    pub(crate) fn pause(&mut self, passes: PausePasses, fx: &mut Effects) -> Result<(), Refusal> {
        self.can_pause()?;
        let granted = passes.granted();
        let Some(live) = self.live_mut() else { return Err(Refusal::PauseNotAllowed) };
        live.pause = Some(Pause { passes });
        fx.emit(names::PAUSE.event_with([
            ("seed_id", self.id.clone()),
            ("quota", granted.to_string()),
            ("identity_kernel_active", "true".to_owned()),
        ]));
        fx.emit(names::SEED_PAUSED.event_with([("seed_id", self.id.clone())]));
        Ok(())
    }

    /// RESUME: the kernel serves again; G1 (germination checks) and G3 (interface) are
    /// re-evaluated on it, and a failure culls.
    pub(crate) fn resume(&mut self, cx: &Cx<'_>, fx: &mut Effects) -> Result<(), Refusal> {
        let id = self.id.clone();
        let stage = self.stage();
        let Some(live) = self.live_mut() else { return Err(Refusal::NotPaused) };
        let Some(pause) = live.pause.take() else { return Err(Refusal::NotPaused) };
        live.health.pause_check = PauseResumeCheck::KernelRestored;
        let blueprint = live.attached.blueprint_id.clone();
        let duration = pause.passes.duration(cx.now);
        let g1 = evaluate_g1_germinated(
            &GateContext { seed_id: &id, from: stage, to: Stage::SeedStageTraining, at: cx.wall },
            &gates::germinated(live),
        );
        fx.emit(names::RESUME.event_with([
            ("seed_id", id.clone()),
            ("blueprint_id", blueprint.clone()),
            ("duration_ms", duration.as_millis().to_string()),
            ("kernel_restored", "true".to_owned()),
        ]));
        fx.emit(names::SEED_RESUMED.event_with([("seed_id", id.clone()), ("blueprint_id", blueprint)]));
        let g3 = gates::interface_event(self, cx);
        for g in std::iter::once(g1).chain(g3) {
            let failed = (!g.passed).then(|| GateReason::from_wire(&g.reason));
            self.record_gate(g, fx);
            if let Some(reason) = failed {
                let reason = reason.unwrap_or(GateReason::KernelNotRestored);
                self.cull(CullCause::Gate(reason), cx, fx);
                return Err(Refusal::Gate(reason));
            }
        }
        Ok(())
    }
}
