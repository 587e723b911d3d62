//! Restoring: everything is rebuilt and checked first ([`Inner::plan_restore`]), then swapped
//! in ([`Inner::apply_restore`]), so a checkpoint that does not fit leaves the runtime as it was.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Tensor};
use candle_nn::optim::{Optimizer, ParamsAdamW};
use kasmina_isolation::{
    AlphaController, AlphaCurve, IsolationMonitor, Layout, MonitorConfig, MonitorCounters, SavedAlpha, SavedRamp,
};
use kasmina_lifecycle::gates::{Counterfactual, PauseResumeCheck};
use kasmina_lifecycle::{LifecycleConfig, SavedLifecycle, SavedTransition, SeedLifecycle};
use kasmina_safety::{PausePasses, SavedBreaker, SavedQuota};
use kasmina_security::LiveNonce;
use leyline::{
    AlphaCheckpoint, CircuitBreakerState, CommandForm, CommandTransport, ContributionCheckpoint, KasminaCheckpoint,
    KernelCheckpoint, LiveCheckpoint, SeedCheckpoint, SeedLifecycleGate, SeedLifecycleStage as Stage,
    ShadowStatsCheckpoint, alpha_checkpoint, live_checkpoint, seed_checkpoint,
};

use super::capture::{config_struct, device_name};
use super::{CheckpointError, KASMINA_TENSORS};
use crate::blueprint::{KernelArtifact, SeedKernel, builtin};
use crate::breakers::BreakerName;
use crate::memory::Memory;
use crate::optim::{AdamW, AdamWState};
use crate::receipt::Origin;
use crate::seed::{
    Attached, Contribution, CullCause, GradWindow, Health, History, Interface, Live, Pause, Phase, Seed, ShadowStats,
    StageState,
};
use crate::slot::SlotCell;
use crate::state::{Core, Inner, Pending, RollbackRecord};

/// Everything a restore swaps in, built and checked.
pub(crate) struct Plan {
    seeds: Vec<(Arc<SlotCell>, Option<Seed>)>,
    core: Core,
    breakers: Vec<(BreakerName, SavedBreaker)>,
    nonces: Vec<LiveNonce>,
    pending: VecDeque<Pending>,
    quota: SavedQuota,
}

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Invalid { what: what.into(), reason: reason.into() }
}

fn stage(raw: i32, what: &str) -> Result<Stage, CheckpointError> {
    Stage::try_from(raw).map_err(|_| invalid(what, format!("unknown stage {raw}")))
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn curve(name: &str) -> Result<AlphaCurve, CheckpointError> {
    match name {
        "linear" => Ok(AlphaCurve::Linear),
        "cosine" => Ok(AlphaCurve::Cosine),
        other => other
            .strip_prefix("sigmoid:")
            .and_then(|t| t.parse::<f64>().ok())
            .map(|temperature| AlphaCurve::Sigmoid { temperature })
            .ok_or_else(|| invalid("alpha curve", format!("`{other}`"))),
    }
}

fn alpha(a: Option<&AlphaCheckpoint>, what: &str) -> Result<AlphaController, CheckpointError> {
    let a = a.ok_or_else(|| invalid(what, "missing"))?;
    let ramp = match &a.ramp {
        Some(alpha_checkpoint::Ramp::RampIn(r)) => SavedRamp::In { from: r.from, start: r.start, end: r.end },
        Some(alpha_checkpoint::Ramp::RampOut(r)) => SavedRamp::Out { from: r.from, steps: r.steps, done: r.done },
        None => return Err(invalid(what, "no ramp")),
    };
    let saved = SavedAlpha {
        curve: curve(&a.curve)?,
        steps: a.steps,
        target: a.target,
        step: a.step,
        alpha: a.alpha,
        held: a.held,
        ramp,
    };
    AlphaController::restored(saved).map_err(|e| invalid(what, e.to_string()))
}

fn shadow(s: Option<&ShadowStatsCheckpoint>) -> ShadowStats {
    s.map(|s| ShadowStats { samples: s.samples, rel_l2_sum: s.rel_l2_sum, cosine_sum: s.cosine_sum })
        .unwrap_or_default()
}

fn contribution(c: Option<&ContributionCheckpoint>) -> Contribution {
    let Some(c) = c else { return Contribution::default() };
    Contribution {
        counterfactual: c.measured.then_some(Counterfactual {
            mean: c.mean,
            std_error: c.std_error,
            batches: c.batches,
        }),
        reference_loss: c.reference_loss,
        missing_reported: c.missing_reported,
    }
}

fn phase(p: Option<&live_checkpoint::Phase>, seed_id: &str) -> Result<Phase, CheckpointError> {
    use live_checkpoint::Phase as P;
    Ok(match p.ok_or_else(|| invalid(format!("seed `{seed_id}`"), "a live seed without a phase"))? {
        P::Germinated(_) => Phase::Germinated,
        P::Training(t) => Phase::Training {
            steps: t.steps,
            seed_losses: t.seed_losses.clone(),
            last_vs_host: t.last_vs_host,
            grads: GradWindow { seed_norms: t.seed_grad_norms.clone(), host_norms: t.host_grad_norms.clone() },
            shadow_diffs: t.shadow_diffs.clone(),
        },
        P::Blending(b) => Phase::Blending {
            steps: b.steps,
            alpha: alpha(b.alpha.as_ref(), "blending alpha")?,
            losses: b.losses.clone(),
            finite: b.finite,
        },
        P::Shadowing(s) => Phase::Shadowing {
            steps: s.steps,
            shadow: shadow(s.shadow.as_ref()),
            contribution: contribution(s.contribution.as_ref()),
        },
        P::Probationary(p) => Phase::Probationary {
            steps: p.steps,
            epochs: p.epochs,
            shadow: shadow(p.shadow.as_ref()),
            contribution: contribution(p.contribution.as_ref()),
        },
    })
}

fn dims(v: &[u64]) -> Vec<usize> {
    v.iter().map(|d| usize::try_from(*d).unwrap_or(usize::MAX)).collect()
}

fn health(l: &LiveCheckpoint) -> Result<Health, CheckpointError> {
    let h = l.health.clone().unwrap_or_default();
    let interface = if h.seed_dtype.is_empty() {
        None
    } else {
        let dtype = |s: &str| s.parse::<DType>().map_err(|_| invalid("interface dtype", format!("`{s}`")));
        Some(Interface {
            seed_shape: dims(&h.seed_shape),
            host_shape: dims(&h.host_shape),
            seed_dtype: dtype(&h.seed_dtype)?,
            host_dtype: dtype(&h.host_dtype)?,
        })
    };
    let pause_check = match (h.pause_resume_exercised, h.pause_resume_passed) {
        (false, _) => PauseResumeCheck::NotExercised,
        (true, true) => PauseResumeCheck::KernelRestored,
        (true, false) => PauseResumeCheck::KernelNotRestored,
    };
    Ok(Health {
        isolation_violations: h.isolation_violations,
        update_violations: h.update_violations,
        max_hook_ms: h.max_hook_ms,
        last_hook_ms: h.last_hook_ms,
        last_grad_norm: h.last_grad_norm,
        pause_check,
        interface,
    })
}

/// A seed's optimiser over the restored kernel's variables, with the saved moments.
fn optimizer(
    kernel: &SeedKernel,
    o: &leyline::OptimizerCheckpoint,
    moments: Vec<(Tensor, Tensor)>,
    seed_id: &str,
) -> Result<AdamW, CheckpointError> {
    let what = || format!("seed `{seed_id}` optimiser");
    let params = ParamsAdamW { lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weight_decay: o.weight_decay };
    let mut opt = AdamW::new(kernel.vars(), params.clone()).map_err(|e| invalid(what(), e.to_string()))?;
    opt.load_state(&AdamWState { step: o.steps, params, moments }).map_err(|e| invalid(what(), e.to_string()))?;
    Ok(opt)
}

/// The largest count a checkpoint may hold (2^53: exact in every JSON reader; a run at a
/// million steps a second would take 285 years to reach it). Counters the runtime increments
/// can then never overflow after a restore.
const MAX_COUNT: u64 = 1 << 53;
/// The largest 32-bit count (epochs, violations, passes).
const MAX_COUNT32: u32 = 1 << 30;
/// The longest duration (ms) a checkpoint may hold: about 34 years.
const MAX_MS: u64 = 1 << 40;

fn bound64(what: &str, v: u64, max: u64) -> Result<(), CheckpointError> {
    if v <= max { Ok(()) } else { Err(invalid(what, format!("{v} is beyond {max}"))) }
}

fn bound32(what: &str, v: u32) -> Result<(), CheckpointError> {
    bound64(what, u64::from(v), u64::from(MAX_COUNT32))
}

fn check_alpha(what: &str, a: Option<&AlphaCheckpoint>) -> Result<(), CheckpointError> {
    let Some(a) = a else { return Ok(()) };
    let ramp = match &a.ramp {
        Some(alpha_checkpoint::Ramp::RampIn(r)) => [r.start, r.end],
        Some(alpha_checkpoint::Ramp::RampOut(r)) => [r.steps, r.done],
        None => [0, 0],
    };
    for v in [a.steps, a.step, ramp[0], ramp[1]] {
        bound64(what, v, MAX_COUNT)?;
    }
    Ok(())
}

fn check_live(what: &str, l: &LiveCheckpoint) -> Result<(), CheckpointError> {
    use live_checkpoint::Phase as P;
    for v in [l.monitor_checks, l.monitor_violations, l.monitor_nan_outputs, l.monitor_skipped] {
        bound64(what, v, MAX_COUNT)?;
    }
    let h = l.health.clone().unwrap_or_default();
    bound32(what, h.isolation_violations)?;
    bound32(what, h.update_violations)?;
    if let Some(p) = &l.pause {
        bound32(what, p.granted)?;
        bound32(what, p.used)?;
        bound64(what, p.elapsed_ms, MAX_MS)?;
    }
    check_alpha(what, l.alpha_template.as_ref())?;
    match &l.phase {
        Some(P::Training(t)) => bound64(what, t.steps, MAX_COUNT),
        Some(P::Blending(b)) => {
            check_alpha(what, b.alpha.as_ref())?;
            bound64(what, b.steps, MAX_COUNT)
        }
        Some(P::Shadowing(s)) => bound64(what, s.steps, MAX_COUNT),
        Some(P::Probationary(p)) => {
            bound32(what, p.epochs)?;
            bound64(what, p.steps, MAX_COUNT)
        }
        _ => Ok(()),
    }
}

fn check_seed(s: &SeedCheckpoint, step: u64) -> Result<(), CheckpointError> {
    use seed_checkpoint::State as S;
    let what = format!("seed `{}`", s.seed_id);
    bound32(&what, s.epochs)?;
    if let Some(l) = &s.lifecycle {
        bound64(&what, l.transitions, MAX_COUNT)?;
        for v in [l.in_stage_ms, l.embargo_elapsed_ms.unwrap_or(0), l.embargo_remaining_ms.unwrap_or(0)] {
            bound64(&what, v, MAX_MS)?;
        }
        for t in &l.history {
            bound64(&what, t.ago_ms, MAX_MS)?;
        }
    }
    if let Some(h) = &s.history {
        bound64(&what, h.isolation_checks, MAX_COUNT)?;
        bound32(&what, h.isolation_violations)?;
    }
    if let Some(k) = &s.kernel {
        bound64(&what, k.steps, MAX_COUNT)?;
        bound64(&what, k.optimizer.as_ref().map_or(0, |o| o.steps), MAX_COUNT)?;
    }
    match &s.state {
        Some(S::Live(l)) => check_live(&what, l),
        Some(S::BlendingOut(b)) => check_alpha(&what, b.alpha.as_ref()),
        Some(S::Fossilized(f)) => bound64(&what, f.ramp, MAX_COUNT),
        Some(S::Embargoed(e)) => bound64(&what, e.since_step, step),
        _ => Ok(()),
    }
}

/// Every count within [`MAX_COUNT`] (or [`MAX_COUNT32`]), every duration within [`MAX_MS`], an
/// embargo's start not after the checkpoint's step: what a running runtime could have saved,
/// and what it can count on from without overflowing.
fn check_bounds(state: &KasminaCheckpoint) -> Result<(), CheckpointError> {
    bound64("step", state.step, MAX_COUNT)?;
    bound32("epoch", state.epoch)?;
    let c = state.counters.clone().unwrap_or_default();
    for v in [c.steps, c.isolation_checks, c.isolation_violations, c.commands_accepted, c.commands_rejected] {
        bound64("counters", v, MAX_COUNT)?;
    }
    bound64("counters", c.events_dropped, MAX_COUNT)?;
    for b in &state.breakers {
        bound32("breaker", b.failures)?;
        bound32("breaker", b.successes)?;
        for v in [b.opened_total, b.denied_total] {
            bound64("breaker", v, MAX_COUNT)?;
        }
        for v in [b.open_remaining_ms.unwrap_or(0), b.probe_age_ms.unwrap_or(0)] {
            bound64("breaker", v, MAX_MS)?;
        }
    }
    for n in &state.nonces {
        bound64("nonce", n.remaining_ms, MAX_MS)?;
    }
    for p in &state.pending {
        bound64("pending command", p.deadline_remaining_ms.unwrap_or(0), MAX_MS)?;
    }
    let q = state.pause_quota.unwrap_or_default();
    bound32("pause quota", q.used)?;
    bound64("pause quota", q.window_elapsed_ms, MAX_MS)?;
    for slot in &state.slots {
        if let Some(s) = &slot.seed {
            check_seed(s, state.step)?;
        }
    }
    Ok(())
}

/// A restored kernel and, for a seed that trains, its optimiser.
struct Rebuilt {
    kernel: Arc<SeedKernel>,
    optimizer: Option<AdamW>,
}

impl Inner {
    /// The artefact a seed's kernel was built from: the blueprint source's, or the identity
    /// the fallback builds in memory when the source has none.
    pub(crate) fn artifact_for(
        &self,
        seed_id: &str,
        blueprint_id: &str,
        width: usize,
    ) -> Result<Arc<KernelArtifact>, CheckpointError> {
        if let Some(hit) = self.memory.kernel(blueprint_id, width) {
            return Ok(hit);
        }
        match self.blueprints.fetch(blueprint_id, width, &self.device) {
            Ok(a) => Ok(Arc::new(a)),
            Err(_) if blueprint_id == builtin::IDENTITY => Ok(Arc::new(KernelArtifact::identity(blueprint_id, width))),
            Err(e) => Err(CheckpointError::Blueprint {
                seed_id: seed_id.to_owned(),
                blueprint_id: blueprint_id.to_owned(),
                reason: format!("cannot be fetched: {e}"),
            }),
        }
    }

    /// Builds and checks everything `state` describes, changing nothing.
    pub(crate) fn plan_restore(&self, state: &KasminaCheckpoint, tensor_bytes: &[u8]) -> Result<Plan, CheckpointError> {
        let running = device_name(&self.device);
        if state.device != running {
            return Err(CheckpointError::Device { saved: state.device.clone(), running });
        }
        self.check_config(state)?;
        check_bounds(state)?;
        let cells = self.check_slots(state)?;
        let tensors = candle_core::safetensors::load_buffer(tensor_bytes, &self.device)
            .map_err(|e| CheckpointError::Tensor { name: KASMINA_TENSORS.into(), reason: e.to_string() })?;
        let mut seeds = Vec::with_capacity(cells.len());
        for (cell, saved) in cells {
            let seed = match &saved.seed {
                Some(s) => Some(self.rebuild_seed(&cell, s, &tensors)?),
                None => None,
            };
            seeds.push((cell, seed));
        }
        let mut breakers = Vec::new();
        for b in &state.breakers {
            let name =
                BreakerName::parse(&b.name).ok_or_else(|| invalid("breaker", format!("unknown `{}`", b.name)))?;
            let st = CircuitBreakerState::try_from(b.state)
                .ok()
                .filter(|s| *s != CircuitBreakerState::CircuitStateUnknown)
                .ok_or_else(|| invalid(format!("breaker `{}`", b.name), format!("state {}", b.state)))?;
            breakers.push((
                name,
                SavedBreaker {
                    state: st,
                    failures: b.failures,
                    successes: b.successes,
                    open_remaining: b.open_remaining_ms.map(millis),
                    probe_age: b.probe_age_ms.map(millis),
                    opened_total: b.opened_total,
                    denied_total: b.denied_total,
                },
            ));
        }
        let nonces = state
            .nonces
            .iter()
            .map(|n| LiveNonce { nonce: n.nonce.clone(), remaining: millis(n.remaining_ms) })
            .collect();
        let pending = state
            .pending
            .iter()
            .map(|p| {
                let command = p.command.clone().ok_or_else(|| invalid("pending command", "empty"))?;
                let origin = Origin {
                    key_id: p.key_id.clone(),
                    form: CommandForm::try_from(p.form).unwrap_or(CommandForm::Unspecified),
                    transport: CommandTransport::try_from(p.transport).unwrap_or(CommandTransport::Unspecified),
                };
                let deadline = p.deadline_remaining_ms.map(|ms| self.timer.deadline("command", millis(ms)));
                Ok(Pending { command, origin, deadline, reply: None })
            })
            .collect::<Result<_, CheckpointError>>()?;
        let quota = state.pause_quota.unwrap_or_default();
        let quota = SavedQuota { used: quota.used, window_elapsed: millis(quota.window_elapsed_ms) };
        Ok(Plan { seeds, core: self.rebuild_core(state)?, breakers, nonces, pending, quota })
    }

    fn check_config(&self, state: &KasminaCheckpoint) -> Result<(), CheckpointError> {
        let saved = state.config.as_ref().ok_or_else(|| invalid("configuration", "missing"))?;
        let running = config_struct(&self.config);
        let text = |v: Option<&leyline::wkt::Value>| match v.and_then(|v| v.kind.as_ref()) {
            Some(leyline::wkt::value::Kind::StringValue(s)) => s.clone(),
            _ => "(absent)".to_owned(),
        };
        for (field, value) in &running.fields {
            let (saved_value, running_value) = (text(saved.fields.get(field)), text(Some(value)));
            if saved_value != running_value {
                return Err(CheckpointError::Config {
                    field: field.clone(),
                    saved: saved_value,
                    running: running_value,
                });
            }
        }
        Ok(())
    }

    /// The runtime's slots paired with the checkpoint's: the same names, widths and layouts,
    /// and no live seed in the runtime.
    fn check_slots<'a>(
        &self,
        state: &'a KasminaCheckpoint,
    ) -> Result<Vec<(Arc<SlotCell>, &'a leyline::SlotCheckpoint)>, CheckpointError> {
        let cells = self.cells();
        let mismatch = |slot: &str, reason: String| CheckpointError::SlotMismatch { slot: slot.to_owned(), reason };
        let mut paired = Vec::with_capacity(state.slots.len());
        for saved in &state.slots {
            let cell = cells
                .iter()
                .find(|c| c.name == saved.name)
                .ok_or_else(|| mismatch(&saved.name, "in the checkpoint, not in this runtime".into()))?;
            if cell.width as u64 != u64::from(saved.width) {
                return Err(mismatch(
                    &saved.name,
                    format!("width {} here, {} in the checkpoint", cell.width, saved.width),
                ));
            }
            if Layout::parse(&saved.layout) != Some(cell.layout) {
                let here = cell.layout.as_str();
                return Err(mismatch(&saved.name, format!("layout {here} here, `{}` in the checkpoint", saved.layout)));
            }
            paired.push((Arc::clone(cell), saved));
        }
        let saved_names: BTreeSet<&str> = state.slots.iter().map(|s| s.name.as_str()).collect();
        if let Some(extra) = cells.iter().find(|c| !saved_names.contains(c.name.as_str())) {
            return Err(mismatch(&extra.name, "in this runtime, not in the checkpoint".into()));
        }
        for cell in &cells {
            if let Some(seed) = cell.seed.lock().as_ref().filter(|s| s.is_live()) {
                return Err(CheckpointError::NotFresh { slot: cell.name.clone(), seed_id: seed.id.clone() });
            }
        }
        Ok(paired)
    }

    fn rebuild_seed(
        &self,
        cell: &SlotCell,
        s: &SeedCheckpoint,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Seed, CheckpointError> {
        use seed_checkpoint::State as S;
        let what = format!("seed `{}`", s.seed_id);
        let lifecycle = self.rebuild_lifecycle(s)?;
        let h = s.history.clone().unwrap_or_default();
        let history = History {
            stages: h.stages.iter().map(|raw| stage(*raw, &what)).collect::<Result<_, _>>()?,
            gates: h.gates,
            cull: if h.cull.is_empty() {
                None
            } else {
                Some(CullCause::from_reason(&h.cull).ok_or_else(|| invalid(&what, format!("cull `{}`", h.cull)))?)
            },
            isolation_checks: h.isolation_checks,
            isolation_violations: h.isolation_violations,
            kernel_blueprint_id: h.kernel_blueprint_id,
            fallback_used: h.fallback_used,
        };
        let trains = matches!(s.state, Some(S::Live(_)) | Some(S::Fossilized(_)));
        let rebuilt = match &s.kernel {
            Some(k) => Some(self.rebuild_kernel(cell, &s.seed_id, k, trains, tensors)?),
            None => None,
        };
        let kernel_of = |rebuilt: &Option<Rebuilt>| {
            rebuilt.as_ref().map(|r| Arc::clone(&r.kernel)).ok_or_else(|| invalid(&what, "its stage needs a kernel"))
        };
        let state = match s.state.as_ref().ok_or_else(|| invalid(&what, "no stage data"))? {
            S::Dormant(_) => StageState::Dormant,
            S::Resetting(_) => StageState::Resetting,
            S::Terminated(_) => StageState::Terminated,
            S::Embargoed(e) => StageState::Embargoed { since_step: e.since_step },
            S::BlendingOut(b) => StageState::BlendingOut {
                kernel: kernel_of(&rebuilt)?,
                alpha: alpha(b.alpha.as_ref(), "blend-out alpha")?,
                cause: CullCause::from_reason(&b.cause)
                    .ok_or_else(|| invalid(&what, format!("cause `{}`", b.cause)))?,
            },
            S::Fossilized(f) => {
                let kernel = kernel_of(&rebuilt)?;
                let optimizer = rebuilt.and_then(|r| r.optimizer).ok_or_else(|| invalid(&what, "no optimiser"))?;
                StageState::Fossilized { kernel, optimizer: Box::new(optimizer), ramp: f.ramp }
            }
            S::Live(l) => {
                let kernel = kernel_of(&rebuilt)?;
                let optimizer = rebuilt.and_then(|r| r.optimizer).ok_or_else(|| invalid(&what, "no optimiser"))?;
                StageState::Live(Box::new(self.rebuild_live(s, l, kernel, optimizer)?))
            }
        };
        Ok(Seed {
            id: s.seed_id.clone(),
            blueprint_id: s.blueprint_id.clone(),
            lifecycle,
            state,
            history,
            epochs: s.epochs,
            risk: s.risk,
        })
    }

    fn rebuild_lifecycle(&self, s: &SeedCheckpoint) -> Result<SeedLifecycle, CheckpointError> {
        let what = format!("seed `{}`", s.seed_id);
        let l = s.lifecycle.as_ref().ok_or_else(|| invalid(&what, "no lifecycle"))?;
        let history = l
            .history
            .iter()
            .map(|t| {
                Ok(SavedTransition {
                    from: stage(t.from, &what)?,
                    to: stage(t.to, &what)?,
                    ago: millis(t.ago_ms),
                    gate: match SeedLifecycleGate::try_from(t.gate) {
                        Ok(SeedLifecycleGate::SeedGateUnknown) => None,
                        Ok(g) => Some(g),
                        Err(_) => return Err(invalid(&what, format!("gate {}", t.gate))),
                    },
                })
            })
            .collect::<Result<_, CheckpointError>>()?;
        let saved = SavedLifecycle {
            seed_id: s.seed_id.clone(),
            stage: stage(l.stage, &what)?,
            history,
            transitions: l.transitions,
            in_stage: millis(l.in_stage_ms),
            embargo_elapsed: l.embargo_elapsed_ms.map(millis),
            embargo_remaining: l.embargo_remaining_ms.map(millis),
            cull_reason: (!l.cull_reason.is_empty()).then(|| l.cull_reason.clone()),
        };
        let config = LifecycleConfig { embargo: self.config.embargo, ..LifecycleConfig::default() };
        SeedLifecycle::restored(saved, self.clock.clone(), config)
            .map(|lc| lc.with_wall_clock(self.wall.clone()))
            .map_err(|e| invalid(&what, e.to_string()))
    }

    fn rebuild_kernel(
        &self,
        cell: &SlotCell,
        seed_id: &str,
        k: &KernelCheckpoint,
        trains: bool,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Rebuilt, CheckpointError> {
        let width = usize::try_from(k.width).unwrap_or(usize::MAX);
        if width != cell.width {
            return Err(CheckpointError::SlotMismatch {
                slot: cell.name.clone(),
                reason: format!("a kernel of width {width} in a slot of width {}", cell.width),
            });
        }
        let blueprint_err = |reason: String| CheckpointError::Blueprint {
            seed_id: seed_id.to_owned(),
            blueprint_id: k.blueprint_id.clone(),
            reason,
        };
        let artifact = self.artifact_for(seed_id, &k.blueprint_id, width)?;
        let found = artifact.fingerprint().map_err(|e| blueprint_err(format!("cannot be fingerprinted: {e}")))?;
        if found != k.artifact_sha256 {
            return Err(blueprint_err(format!(
                "changed: its artefact's SHA-256 is {found}, the seed was built from {}",
                k.artifact_sha256
            )));
        }
        let kernel = SeedKernel::instantiate(&artifact, &self.device)
            .map_err(|e| blueprint_err(format!("cannot be instantiated: {e}")))?;
        let names: Vec<&str> = kernel.named_vars().iter().map(|(n, _)| n.as_str()).collect();
        if names != k.params.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(blueprint_err(format!("has parameters {names:?}, the checkpoint {:?}", k.params)));
        }
        let tensor = |name: String, like: &Tensor| -> Result<Tensor, CheckpointError> {
            let t = tensors
                .get(&name)
                .ok_or_else(|| CheckpointError::Tensor { name: name.clone(), reason: "missing".into() })?;
            if t.dims() != like.dims() || t.dtype() != like.dtype() {
                return Err(CheckpointError::Tensor {
                    name,
                    reason: format!(
                        "{:?} {:?}, the parameter is {:?} {:?}",
                        t.dims(),
                        t.dtype(),
                        like.dims(),
                        like.dtype()
                    ),
                });
            }
            Ok(t.clone())
        };
        let mut moments = Vec::new();
        for (name, var) in kernel.named_vars() {
            let value = tensor(format!("{}param.{name}", k.tensor_prefix), var.as_tensor())?;
            var.set(&value).map_err(|e| CheckpointError::Tensor { name: name.clone(), reason: e.to_string() })?;
            if trains {
                moments.push((
                    tensor(format!("{}adam_m.{name}", k.tensor_prefix), var.as_tensor())?,
                    tensor(format!("{}adam_v.{name}", k.tensor_prefix), var.as_tensor())?,
                ));
            }
        }
        kernel.set_steps(k.steps);
        if !k.noise_word_pos.is_empty() {
            let pos =
                k.noise_word_pos.parse::<u128>().map_err(|_| blueprint_err("noise position unreadable".into()))?;
            kernel.set_noise_position(pos);
        }
        let optimizer = match (trains, &k.optimizer) {
            (false, _) => None,
            (true, None) => return Err(invalid(format!("seed `{seed_id}`"), "a training seed without its optimiser")),
            (true, Some(o)) => Some(optimizer(&kernel, o, moments, seed_id)?),
        };
        Ok(Rebuilt { kernel: Arc::new(kernel), optimizer })
    }

    fn rebuild_live(
        &self,
        s: &SeedCheckpoint,
        l: &LiveCheckpoint,
        kernel: Arc<SeedKernel>,
        optimizer: AdamW,
    ) -> Result<Live, CheckpointError> {
        let what = format!("seed `{}`", s.seed_id);
        let monitor_config = MonitorConfig {
            sample_every: self.config.isolation_sample_every,
            grad_norms: false,
            ..MonitorConfig::default()
        };
        let mut monitor = IsolationMonitor::new(self.host_vars.clone(), kernel.named_vars().to_vec(), monitor_config)
            .map_err(|e| invalid(&what, e.to_string()))?
            .with_clock(self.clock.clone());
        monitor.restore_counters(MonitorCounters {
            checks: l.monitor_checks,
            violations: l.monitor_violations,
            nan_outputs: l.monitor_nan_outputs,
            skipped: l.monitor_skipped,
        });
        let now = self.clock.now();
        let blueprint_id = s.kernel.as_ref().map(|k| k.blueprint_id.clone()).unwrap_or_default();
        Ok(Live {
            attached: Attached {
                kernel,
                blueprint_id,
                optimizer,
                monitor,
                fallback_used: l.fallback_used,
                fetch_latency_ms: l.fetch_latency_ms,
                registered: true,
            },
            alpha_template: alpha(l.alpha_template.as_ref(), "alpha template")?,
            phase: phase(l.phase.as_ref(), &s.seed_id)?,
            pause: l
                .pause
                .as_ref()
                .map(|p| Pause { passes: PausePasses::resumed(p.granted, p.used, millis(p.elapsed_ms), now) }),
            health: health(l)?,
        })
    }

    fn rebuild_core(&self, state: &KasminaCheckpoint) -> Result<Core, CheckpointError> {
        let c = state.counters.clone().unwrap_or_default();
        let mut emitted = BTreeMap::new();
        for (seed, list) in &c.emitted {
            let stages = list.stages.iter().map(|raw| stage(*raw, "emitted stages")).collect::<Result<_, _>>()?;
            emitted.insert(seed.clone(), stages);
        }
        let mut core = Core {
            step: state.step,
            epoch: state.epoch,
            last_val_loss: c.last_val_loss,
            last_val_acc: c.last_val_acc,
            last_train_loss: c.last_train_loss,
            isolation_cull_step: c.isolation_cull_step,
            latency_breach_step: c.latency_breach_step,
            last_fetch_ms: c.last_fetch_ms,
            last_hook_ms: c.last_hook_ms,
            last_dot_product: c.last_dot_product,
            deferred: state.deferred_events.clone(),
            emitted,
            ..Core::default()
        };
        core.stats.steps = c.steps;
        core.stats.isolation_checks = c.isolation_checks;
        core.stats.isolation_violations = c.isolation_violations;
        core.stats.kasmina_ms = c.kasmina_ms;
        core.stats.commands_accepted = c.commands_accepted;
        core.stats.commands_rejected = c.commands_rejected;
        core.stats.events_dropped = c.events_dropped;
        for (seed, r) in &state.rollbacks {
            let payload = r.payload.clone().unwrap_or_default();
            core.rollbacks.insert(seed.clone(), RollbackRecord { payload, elapsed_ms: r.elapsed_ms });
        }
        Ok(core)
    }

    /// Swaps a checked plan in. Only the registry can still refuse (a parameter owned
    /// elsewhere); then what was registered is undone and nothing else has changed.
    pub(crate) fn apply_restore(&self, plan: Plan) -> Result<(), CheckpointError> {
        let mut registered: Vec<String> = Vec::new();
        for (_, seed) in &plan.seeds {
            let Some(seed) = seed else { continue };
            let vars = match &seed.state {
                StageState::Live(l) => l.attached.kernel.vars(),
                StageState::Fossilized { kernel, .. } => kernel.vars(),
                _ => continue,
            };
            if !vars.is_empty() {
                if let Err(e) = self.registry.register_seed(&seed.id, &vars, kasmina_registry::DEFAULT_LR_GROUP) {
                    for id in &registered {
                        self.registry.deregister_seed(id);
                    }
                    return Err(invalid(format!("seed `{}` parameters", seed.id), e.to_string()));
                }
                registered.push(seed.id.clone());
                if matches!(seed.state, StageState::Fossilized { .. }) {
                    let _ = self.registry.transfer_to_host(&seed.id);
                }
            }
        }
        for (name, saved) in &plan.breakers {
            // Checked in the plan: UNKNOWN was refused there.
            let _ = self.breakers.get(*name).restore(saved);
        }
        self.pause_quota.restore(&plan.quota);
        self.verifier.ledger().restore(plan.nonces);
        *self.queue.lock() = plan.pending;
        *self.core.lock() = plan.core;
        for (cell, seed) in plan.seeds {
            let route = seed
                .as_ref()
                .map(|s| s.route(self.config.fossil_ramp_steps, self.config.training_mode))
                .unwrap_or_default();
            if let Some(s) = &seed
                && !matches!(s.state, StageState::Dormant | StageState::Resetting | StageState::Terminated)
                && !s.history.kernel_blueprint_id.is_empty()
            {
                self.memory.lease(&s.id, Memory::key(&s.history.kernel_blueprint_id, cell.width));
            }
            *cell.seed.lock() = seed;
            cell.set_route(route);
            let _ = cell.take_observation();
        }
        Ok(())
    }
}
