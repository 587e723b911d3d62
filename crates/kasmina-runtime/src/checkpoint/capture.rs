//! The runtime's state, captured at a safe point: the Leyline [`KasminaCheckpoint`] message
//! and the safetensors bytes of every seed's parameters and optimiser moments.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use candle_core::Tensor;
use kasmina_isolation::{AlphaController, AlphaCurve, SavedRamp};
use kasmina_lifecycle::gates::{Counterfactual, PauseResumeCheck};
use leyline::{
    AlphaCheckpoint, AlphaRampIn, AlphaRampOut, BlendingOutCheckpoint, BlendingPhase, BreakerCheckpoint,
    ContributionCheckpoint, DormantCheckpoint, EmbargoedCheckpoint, FossilizedCheckpoint, GerminatedPhase,
    HealthCheckpoint, KasminaCheckpoint, KernelCheckpoint, LifecycleCheckpoint, LiveCheckpoint, NonceCheckpoint,
    OptimizerCheckpoint, PauseCheckpoint, PauseQuotaCheckpoint, PendingCommandCheckpoint, ProbationaryPhase,
    ResettingCheckpoint, RollbackCheckpoint, RuntimeCountersCheckpoint, SeedCheckpoint, SeedHistoryCheckpoint,
    ShadowStatsCheckpoint, ShadowingPhase, SlotCheckpoint, StageList, TerminatedCheckpoint, TrainingPhase,
    TransitionCheckpoint, alpha_checkpoint, live_checkpoint, seed_checkpoint, wkt,
};

use super::CheckpointError;
use crate::breakers::BreakerName;
use crate::config::{KasminaConfig, TrainingMode};
use crate::optim::AdamW;
use crate::seed::{Contribution, Live, Phase, Seed, ShadowStats, StageState};
use crate::slot::SlotCell;
use crate::state::{Core, Inner};

/// Milliseconds of a duration, saturating.
pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A wall-clock time as a protobuf timestamp.
pub(super) fn timestamp(t: SystemTime) -> wkt::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    wkt::Timestamp { seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX), nanos: d.subsec_nanos() as i32 }
}

/// The curve as the manifest writes it.
pub(super) fn curve_name(curve: AlphaCurve) -> String {
    match curve {
        AlphaCurve::Linear => "linear".into(),
        AlphaCurve::Cosine => "cosine".into(),
        AlphaCurve::Sigmoid { temperature } => format!("sigmoid:{temperature:?}"),
    }
}

/// The settings that shape a seed's lifecycle, as the manifest writes them (restore compares
/// them; latency budgets and cache sizes are operational and may change across a restart).
pub(super) fn config_struct(c: &KasminaConfig) -> wkt::Struct {
    let mode = match c.training_mode {
        TrainingMode::StraightThrough => "straight_through",
        _ => "shadow",
    };
    let fields: [(&str, String); 21] = [
        ("training_steps", c.training_steps.to_string()),
        ("training_mode", mode.into()),
        ("blending_steps", c.blending_steps.to_string()),
        ("alpha_curve", curve_name(c.alpha_curve)),
        ("blend_out_steps", c.blend_out_steps.to_string()),
        ("fossil_ramp_steps", c.fossil_ramp_steps.to_string()),
        ("shadowing_steps", c.shadowing_steps.to_string()),
        ("probation_steps", c.probation_steps.to_string()),
        ("auto_advance", c.auto_advance.to_string()),
        ("auto_fossilize", c.auto_fossilize.to_string()),
        ("embargo_ms", ms(c.embargo).to_string()),
        ("embargo_steps", c.embargo_steps.to_string()),
        ("isolation_sample_every", c.isolation_sample_every.to_string()),
        ("violation_threshold", c.violation_threshold.to_string()),
        ("counterfactual_sigmas", format!("{:?}", c.counterfactual_sigmas)),
        ("min_contribution", format!("{:?}", c.min_contribution)),
        ("harm_sigmas", format!("{:?}", c.harm_sigmas)),
        ("min_seed_grad_norm", format!("{:?}", c.min_seed_grad_norm)),
        ("max_grad_ratio", format!("{:?}", c.max_grad_ratio)),
        ("max_loss_variance", format!("{:?}", c.max_loss_variance)),
        ("health_window_steps", c.health_window_steps.to_string()),
    ];
    let value = |s: String| wkt::Value { kind: Some(wkt::value::Kind::StringValue(s)) };
    wkt::Struct { fields: fields.into_iter().map(|(k, v)| (k.to_owned(), value(v))).collect() }
}

/// The device as the manifest writes it.
pub(super) fn device_name(device: &candle_core::Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

pub(super) fn alpha_checkpoint(a: &AlphaController) -> AlphaCheckpoint {
    let s = a.saved();
    let ramp = match s.ramp {
        SavedRamp::In { from, start, end } => alpha_checkpoint::Ramp::RampIn(AlphaRampIn { from, start, end }),
        SavedRamp::Out { from, steps, done } => alpha_checkpoint::Ramp::RampOut(AlphaRampOut { from, steps, done }),
    };
    AlphaCheckpoint {
        curve: curve_name(s.curve),
        steps: s.steps,
        target: s.target,
        step: s.step,
        alpha: s.alpha,
        held: s.held,
        ramp: Some(ramp),
    }
}

fn shadow(s: &ShadowStats) -> ShadowStatsCheckpoint {
    ShadowStatsCheckpoint { samples: s.samples, rel_l2_sum: s.rel_l2_sum, cosine_sum: s.cosine_sum }
}

fn contribution(c: &Contribution) -> ContributionCheckpoint {
    let cf = c.counterfactual.unwrap_or(Counterfactual { mean: 0.0, std_error: 0.0, batches: 0 });
    ContributionCheckpoint {
        measured: c.counterfactual.is_some(),
        mean: cf.mean,
        std_error: cf.std_error,
        batches: cf.batches,
        reference_loss: c.reference_loss,
        missing_reported: c.missing_reported,
    }
}

fn phase(p: &Phase) -> live_checkpoint::Phase {
    use live_checkpoint::Phase as P;
    match p {
        Phase::Germinated => P::Germinated(GerminatedPhase {}),
        Phase::Training { steps, seed_losses, last_vs_host, grads, shadow_diffs } => P::Training(TrainingPhase {
            steps: *steps,
            seed_losses: seed_losses.clone(),
            last_vs_host: *last_vs_host,
            seed_grad_norms: grads.seed_norms.clone(),
            host_grad_norms: grads.host_norms.clone(),
            shadow_diffs: shadow_diffs.clone(),
        }),
        Phase::Blending { steps, alpha, losses, finite } => P::Blending(BlendingPhase {
            steps: *steps,
            alpha: Some(alpha_checkpoint(alpha)),
            losses: losses.clone(),
            finite: *finite,
        }),
        Phase::Shadowing { steps, shadow: s, contribution: c } => {
            P::Shadowing(ShadowingPhase { steps: *steps, shadow: Some(shadow(s)), contribution: Some(contribution(c)) })
        }
        Phase::Probationary { steps, epochs, shadow: s, contribution: c } => P::Probationary(ProbationaryPhase {
            steps: *steps,
            epochs: *epochs,
            shadow: Some(shadow(s)),
            contribution: Some(contribution(c)),
        }),
    }
}

fn live(l: &Live, now: quanta::Instant) -> LiveCheckpoint {
    let h = &l.health;
    let counters = l.attached.monitor.counters();
    let (seed_shape, host_shape, seed_dtype, host_dtype) = match &h.interface {
        Some(i) => (
            i.seed_shape.iter().map(|d| *d as u64).collect(),
            i.host_shape.iter().map(|d| *d as u64).collect(),
            i.seed_dtype.as_str().to_owned(),
            i.host_dtype.as_str().to_owned(),
        ),
        None => (Vec::new(), Vec::new(), String::new(), String::new()),
    };
    LiveCheckpoint {
        fallback_used: l.attached.fallback_used,
        fetch_latency_ms: l.attached.fetch_latency_ms,
        alpha_template: Some(alpha_checkpoint(&l.alpha_template)),
        health: Some(HealthCheckpoint {
            isolation_violations: h.isolation_violations,
            update_violations: h.update_violations,
            max_hook_ms: h.max_hook_ms,
            last_hook_ms: h.last_hook_ms,
            last_grad_norm: h.last_grad_norm,
            pause_resume_exercised: h.pause_check != PauseResumeCheck::NotExercised,
            pause_resume_passed: h.pause_check == PauseResumeCheck::KernelRestored,
            seed_shape,
            host_shape,
            seed_dtype,
            host_dtype,
        }),
        pause: l.pause.as_ref().map(|p| PauseCheckpoint {
            granted: p.passes.granted(),
            used: p.passes.used(),
            elapsed_ms: ms(p.passes.duration(now)),
        }),
        phase: Some(phase(&l.phase)),
        monitor_checks: counters.checks,
        monitor_violations: counters.violations,
        monitor_nan_outputs: counters.nan_outputs,
        monitor_skipped: counters.skipped,
    }
}

fn optimizer_checkpoint(o: &AdamW) -> OptimizerCheckpoint {
    let p = o.params();
    OptimizerCheckpoint {
        steps: o.steps(),
        lr: p.lr,
        beta1: p.beta1,
        beta2: p.beta2,
        eps: p.eps,
        weight_decay: p.weight_decay,
    }
}

/// The runtime's counters and last values.
fn counters(core: &Core) -> RuntimeCountersCheckpoint {
    RuntimeCountersCheckpoint {
        last_val_loss: core.last_val_loss,
        last_val_acc: core.last_val_acc,
        last_train_loss: core.last_train_loss,
        isolation_cull_step: core.isolation_cull_step,
        latency_breach_step: core.latency_breach_step,
        steps: core.stats.steps,
        isolation_checks: core.stats.isolation_checks,
        isolation_violations: core.stats.isolation_violations,
        kasmina_ms: core.stats.kasmina_ms,
        commands_accepted: core.stats.commands_accepted,
        commands_rejected: core.stats.commands_rejected,
        events_dropped: core.stats.events_dropped,
        last_fetch_ms: core.last_fetch_ms,
        last_hook_ms: core.last_hook_ms,
        last_dot_product: core.last_dot_product,
        emitted: core
            .emitted
            .iter()
            .map(|(k, v)| (k.clone(), StageList { stages: v.iter().map(|s| *s as i32).collect() }))
            .collect(),
    }
}

/// One breaker, as the manifest writes it.
fn breaker(name: BreakerName, s: kasmina_safety::SavedBreaker) -> BreakerCheckpoint {
    BreakerCheckpoint {
        name: name.as_str().to_owned(),
        state: s.state as i32,
        failures: s.failures,
        successes: s.successes,
        denied_total: s.denied_total,
        open_remaining_ms: s.open_remaining.map(ms),
        probe_age_ms: s.probe_age.map(ms),
        opened_total: s.opened_total,
    }
}

/// The tensor names of slot `slot`'s kernel in the tensor file.
pub(super) fn prefix(slot: &str) -> String {
    format!("slot.{slot}.")
}

impl Inner {
    /// The whole state and the tensor file's bytes. Takes each lock briefly, in the runtime's
    /// order (a slot's seed, then the core).
    pub(crate) fn capture(&self) -> Result<(KasminaCheckpoint, Vec<u8>), CheckpointError> {
        let now = self.clock.now();
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let mut slots = Vec::new();
        for cell in self.cells() {
            slots.push(self.capture_slot(&cell, now, &mut tensors)?);
        }
        let pending = self
            .queue
            .lock()
            .iter()
            .map(|p| PendingCommandCheckpoint {
                command: Some(p.command.clone()),
                form: p.origin.form as i32,
                transport: p.origin.transport as i32,
                key_id: p.origin.key_id.clone(),
                deadline_remaining_ms: p.deadline.as_ref().map(|d| ms(d.remaining())),
            })
            .collect();
        let nonces = self
            .verifier
            .ledger()
            .snapshot()
            .into_iter()
            .map(|n| NonceCheckpoint { nonce: n.nonce, remaining_ms: ms(n.remaining).max(1) })
            .collect();
        let breakers = BreakerName::ALL.iter().map(|&name| breaker(name, self.breakers.get(name).saved())).collect();
        let quota = self.pause_quota.saved();
        let core = self.core.lock();
        let counters = counters(&core);
        let state = KasminaCheckpoint {
            step: core.step,
            epoch: core.epoch,
            device: device_name(&self.device),
            config: Some(config_struct(&self.config)),
            slots,
            breakers,
            nonces,
            pending,
            counters: Some(counters),
            rollbacks: core
                .rollbacks
                .iter()
                .map(|(k, r)| {
                    (k.clone(), RollbackCheckpoint { payload: Some(r.payload.clone()), elapsed_ms: r.elapsed_ms })
                })
                .collect(),
            pause_quota: Some(PauseQuotaCheckpoint { used: quota.used, window_elapsed_ms: ms(quota.window_elapsed) }),
            deferred_events: core.deferred.clone(),
        };
        drop(core);
        let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), None).map_err(|e| {
            CheckpointError::Tensor { name: crate::checkpoint::KASMINA_TENSORS.into(), reason: e.to_string() }
        })?;
        Ok((state, bytes))
    }

    fn capture_slot(
        &self,
        cell: &SlotCell,
        now: quanta::Instant,
        tensors: &mut Vec<(String, Tensor)>,
    ) -> Result<SlotCheckpoint, CheckpointError> {
        let guard = cell.seed.lock();
        let seed = guard.as_ref().map(|s| self.capture_seed(cell, s, now, tensors)).transpose()?;
        Ok(SlotCheckpoint {
            name: cell.name.clone(),
            width: u32::try_from(cell.width).unwrap_or(u32::MAX),
            layout: cell.layout.as_str().to_owned(),
            depth: cell.depth,
            seed,
        })
    }

    fn capture_seed(
        &self,
        cell: &SlotCell,
        seed: &Seed,
        now: quanta::Instant,
        tensors: &mut Vec<(String, Tensor)>,
    ) -> Result<SeedCheckpoint, CheckpointError> {
        use seed_checkpoint::State as S;
        let saved = seed.lifecycle.saved();
        let lifecycle = LifecycleCheckpoint {
            stage: saved.stage as i32,
            history: saved
                .history
                .iter()
                .map(|t| TransitionCheckpoint {
                    from: t.from as i32,
                    to: t.to as i32,
                    ago_ms: ms(t.ago),
                    gate: t.gate.map_or(0, |g| g as i32),
                })
                .collect(),
            transitions: saved.transitions,
            in_stage_ms: ms(saved.in_stage),
            embargo_elapsed_ms: saved.embargo_elapsed.map(ms),
            embargo_remaining_ms: saved.embargo_remaining.map(ms),
            cull_reason: saved.cull_reason.unwrap_or_default(),
        };
        let h = &seed.history;
        let history = SeedHistoryCheckpoint {
            stages: h.stages.iter().map(|s| *s as i32).collect(),
            gates: h.gates.clone(),
            cull: h.cull.map(|c| c.reason().to_owned()).unwrap_or_default(),
            isolation_checks: h.isolation_checks,
            isolation_violations: h.isolation_violations,
            kernel_blueprint_id: h.kernel_blueprint_id.clone(),
            fallback_used: h.fallback_used,
        };
        let optimizer_of: Option<&AdamW> = match &seed.state {
            StageState::Live(l) => Some(&l.attached.optimizer),
            StageState::Fossilized { optimizer, .. } => Some(optimizer),
            _ => None,
        };
        let kernel = match seed.kernel() {
            Some(k) => Some(self.capture_kernel(cell, &seed.id, k, optimizer_of, tensors)?),
            None => None,
        };
        let state = match &seed.state {
            StageState::Dormant => S::Dormant(DormantCheckpoint {}),
            StageState::Live(l) => S::Live(live(l, now)),
            StageState::BlendingOut { alpha, cause, .. } => S::BlendingOut(BlendingOutCheckpoint {
                alpha: Some(alpha_checkpoint(alpha)),
                cause: cause.reason().to_owned(),
            }),
            StageState::Fossilized { ramp, .. } => S::Fossilized(FossilizedCheckpoint { ramp: *ramp }),
            StageState::Embargoed { since_step } => S::Embargoed(EmbargoedCheckpoint { since_step: *since_step }),
            StageState::Resetting => S::Resetting(ResettingCheckpoint {}),
            StageState::Terminated => S::Terminated(TerminatedCheckpoint {}),
        };
        Ok(SeedCheckpoint {
            seed_id: seed.id.clone(),
            blueprint_id: seed.blueprint_id.clone(),
            lifecycle: Some(lifecycle),
            history: Some(history),
            epochs: seed.epochs,
            risk: seed.risk,
            kernel,
            state: Some(state),
        })
    }

    fn capture_kernel(
        &self,
        cell: &SlotCell,
        seed_id: &str,
        kernel: &crate::blueprint::SeedKernel,
        optimizer: Option<&AdamW>,
        tensors: &mut Vec<(String, Tensor)>,
    ) -> Result<KernelCheckpoint, CheckpointError> {
        let tensor_err =
            |name: &str, e: candle_core::Error| CheckpointError::Tensor { name: name.into(), reason: e.to_string() };
        let pre = prefix(&cell.name);
        let artifact = self.artifact_for(seed_id, kernel.blueprint_id(), kernel.width())?;
        let mut params = Vec::new();
        for (name, var) in kernel.named_vars() {
            let key = format!("{pre}param.{name}");
            let t = var.as_tensor().copy().map_err(|e| tensor_err(&key, e))?;
            tensors.push((key, t));
            params.push(name.clone());
        }
        let optimizer = match optimizer {
            Some(o) => {
                let state = o.state().map_err(|e| tensor_err(&pre, e))?;
                for (name, (m, v)) in params.iter().zip(state.moments) {
                    tensors.push((format!("{pre}adam_m.{name}"), m));
                    tensors.push((format!("{pre}adam_v.{name}"), v));
                }
                Some(optimizer_checkpoint(o))
            }
            None => None,
        };
        Ok(KernelCheckpoint {
            blueprint_id: kernel.blueprint_id().to_owned(),
            width: u32::try_from(kernel.width()).unwrap_or(u32::MAX),
            artifact_sha256: artifact.fingerprint().map_err(|e| tensor_err(&pre, e))?,
            steps: kernel.steps(),
            tensor_prefix: pre,
            params,
            optimizer,
            noise_word_pos: kernel.noise_position().map(|p| p.to_string()).unwrap_or_default(),
        })
    }
}
