//! The training-driven lifecycle (decisions D3): germination, the per-step and per-epoch
//! evidence, gated advances, culls, timed embargo and reset.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::backprop::GradStore;
use kasmina_isolation::{AlphaSchedule, IsolationMonitor, MonitorConfig, Probe};
use kasmina_lifecycle::gates::{
    GerminatedEvidence, InterfaceEvidence, ResetEvidence, SanityEvidence, StabilityEvidence, SystemImpactEvidence,
    TrainingEvidence,
};
use kasmina_lifecycle::{EmbargoEvent, GateEvidence, LifecycleConfig, SeedLifecycle};
use kasmina_telemetry::names;
use leyline::{GateEvent, SeedLifecycleStage as Stage, wkt};

use crate::blueprint::{KernelArtifact, SeedKernel, builtin};
use crate::error::{Error, Result};
use crate::events;
use crate::manager::{Kasmina, RollbackRecord};
use crate::report::{EpochOutcome, EpochReport, FossilizedSeed, StepOutcome, StepReport};
use crate::seed::SeedRecord;
use crate::slot::{SlotCell, SlotState};

/// Why a seed left its stage for the failure path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CullCause {
    Gate,
    Isolation,
    ParameterViolations,
    Command,
}

/// The outcome of a germination request, for the receipt.
#[derive(Debug)]
pub(crate) enum Germination {
    /// GERMINATED (and maybe already culled, if attaching failed).
    Done(Stage),
    /// G0 refused: nothing changed.
    Refused(String),
}

impl Kasmina {
    // ----------------------------------------------------------------- germination

    /// DORMANT → GERMINATED through G0, then fetch, attach and register the kernel.
    pub(crate) fn germinate(
        &self,
        cell: &SlotCell,
        seed_id: &str,
        blueprint_id: &str,
        parameters: &BTreeMap<String, f32>,
    ) -> Result<Germination> {
        let inner = &self.inner;
        let descriptor = inner.blueprints.descriptor(blueprint_id);
        let already_live = self.seed_is_live(seed_id);
        let lifecycle_config = LifecycleConfig { embargo: inner.config.embargo, ..LifecycleConfig::default() };
        let mut lifecycle = SeedLifecycle::new(seed_id, inner.clock.clone(), lifecycle_config)
            .with_wall_clock(Arc::new(inner.wall.clone()));
        let evidence = SanityEvidence {
            blueprint_id,
            blueprint: descriptor.as_ref(),
            parameters,
            seed_already_live: already_live,
        };
        let outcome = match lifecycle.guarded_transition(Stage::SeedStageGerminated, &GateEvidence::Sanity(evidence)) {
            Ok(outcome) => outcome,
            Err(kasmina_lifecycle::Error::GateFailed { reason, event, .. }) => {
                // G0 at DORMANT: the seed never existed; nothing to cull, nothing changes.
                self.event(events::gate_event(&event));
                return Ok(Germination::Refused(reason));
            }
            Err(e) => return Err(e.into()),
        };
        let schedule = AlphaSchedule::new(inner.config.blending_steps, inner.config.blending_temperature)?;
        let mut seed = SeedRecord::new(seed_id, blueprint_id, lifecycle, schedule);
        seed.risk = descriptor.as_ref().map(|d| d.risk).unwrap_or(0.0);
        seed.baseline_metric = self.current_metric();
        seed.entered(Stage::SeedStageGerminated);
        if let Some(e) = outcome.gate_event {
            self.record_gate(&mut seed, &e);
        }
        self.emit_stage(&seed, &cell.name);

        // Fetch (cache, breaker, budget, fallback) and attach a kernel of the seed's own.
        let lr = parameters.get("lr").map(|v| f64::from(*v)).unwrap_or(inner.config.seed_learning_rate);
        let wd = parameters.get("weight_decay").map(|v| f64::from(*v)).unwrap_or(inner.config.seed_weight_decay);
        let attach = self.attach_kernel(&mut seed, cell.width, lr, wd);
        let mut st = cell.state.lock();
        st.last_branch = None;
        st.paused_passes = 0;
        st.seed = Some(seed);
        if let Err(reason) = attach {
            // A conflict or a failed attach is a synthetic G1 failure (kernel cannot be used).
            if let Some(seed) = st.seed.as_mut() {
                let evidence = GerminatedEvidence {
                    kernel_attached: seed.kernel.is_some(),
                    parameters_registered: seed.registered,
                    registration_conflict: seed.registration_conflict,
                    isolation_armed: seed.monitor.is_some(),
                    isolation_violations: seed.isolation_violations,
                };
                let failed =
                    self.try_advance(seed, &cell.name, Stage::SeedStageTraining, GateEvidence::Germinated(evidence));
                if failed.is_none() {
                    self.cull(seed, &cell.name, &reason, CullCause::Gate);
                }
            }
        }
        let stage = st.seed.as_ref().map(|s| s.stage()).unwrap_or(Stage::SeedStageDormant);
        Ok(Germination::Done(stage))
    }

    /// Whether a live seed with this id exists in any slot.
    pub(crate) fn seed_is_live(&self, seed_id: &str) -> bool {
        self.inner
            .slots
            .read()
            .iter()
            .any(|cell| cell.state.lock().seed.as_ref().is_some_and(|s| s.id == seed_id && s.is_live()))
    }

    /// The validation metric G4 compares, as last reported.
    pub(crate) fn current_metric(&self) -> Option<f64> {
        let core = self.inner.core.lock();
        match self.inner.config.g4_metric {
            crate::config::G4Metric::ValidationLoss => core.last_val_loss,
            crate::config::G4Metric::ValidationAccuracy => core.last_val_acc,
        }
    }

    /// Fetches a kernel for the seed and attaches it: own instance, registered parameters, its own
    /// optimiser, an armed isolation monitor. `Err(reason)` when the kernel cannot serve.
    fn attach_kernel(&self, seed: &mut SeedRecord, width: usize, lr: f64, wd: f64) -> std::result::Result<(), String> {
        let artifact = self.fetch_kernel(seed, width)?;
        let kernel = SeedKernel::instantiate(&artifact, &self.inner.device).map_err(|e| e.to_string())?;
        let named = kernel.named_vars().to_vec();
        let vars = kernel.vars();
        seed.kernel = Some(Arc::new(kernel));
        seed.kernel_blueprint_id = artifact.blueprint_id.clone();
        if !vars.is_empty() {
            match self.inner.registry.register_seed(&seed.id, &vars, kasmina_registry::DEFAULT_LR_GROUP) {
                Ok(reg) => {
                    seed.registered = true;
                    self.event(names::PARAMETER_REGISTRATION.event_with([
                        ("seed_id", reg.seed_id.clone()),
                        ("lr_group", reg.lr_group.clone()),
                        ("params", reg.total_params.to_string()),
                    ]));
                }
                Err(e) => {
                    seed.registration_conflict = true;
                    self.event(names::PARAMETER_REGISTRATION.event_at(
                        leyline::TelemetryLevel::Warning,
                        [
                            ("seed_id", seed.id.clone()),
                            ("error", "registry_conflict".to_owned()),
                            ("reason", e.to_string()),
                        ],
                    ));
                    return Err(e.to_string());
                }
            }
        } else {
            seed.registered = true;
        }
        // The host's gradient norm is the trainer's to report (`StepReport::host_grad_norm`);
        // computing it here would cost a pass over every host gradient each step, so the monitor
        // keeps the dot product only and the runtime takes the seed's norm itself.
        let monitor_config = MonitorConfig {
            sample_every: self.inner.config.isolation_sample_every,
            grad_norms: false,
            ..MonitorConfig::default()
        };
        let monitor = IsolationMonitor::new(self.inner.host_vars.clone(), named, monitor_config)
            .map_err(|e| e.to_string())?
            .with_clock(self.inner.clock.clone());
        seed.monitor = Some(monitor);
        seed.build_optimizer(lr, wd).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The kernel fetch of D10: cache by (blueprint, width), breaker-protected, timed against the
    /// budget; falls back to the fallback blueprint, then to identity. A fallback is never cached
    /// under the requested key.
    fn fetch_kernel(&self, seed: &mut SeedRecord, width: usize) -> std::result::Result<Arc<KernelArtifact>, String> {
        let inner = &self.inner;
        let requested = seed.blueprint_id.clone();
        if let Some(hit) = inner.kernels.get(&requested, width) {
            seed.cache_hit = true;
            seed.fetch_latency_ms = 0.0;
            return Ok(hit);
        }
        let failure = if !inner.breakers.fetch_allow(self) {
            Some("breaker_denied".to_owned())
        } else {
            let start = inner.clock.now();
            let result = inner.blueprints.fetch(&requested, width, &inner.device);
            let elapsed_ms = inner.clock.now().duration_since(start).as_secs_f64() * 1e3;
            seed.fetch_latency_ms = elapsed_ms;
            self.inner.core.lock().last_fetch_ms = elapsed_ms;
            self.event(names::KERNEL_FETCH.event_with([
                ("seed_id", seed.id.clone()),
                ("blueprint_id", requested.clone()),
                ("latency_ms", format!("{elapsed_ms:.3}")),
                ("cache", "miss".to_owned()),
            ]));
            match result {
                Ok(artifact) if elapsed_ms <= inner.config.fetch_latency_budget_ms => {
                    for e in inner.breakers.fetch_success() {
                        self.event(e);
                    }
                    let artifact = Arc::new(artifact);
                    inner.kernels.insert(&requested, width, artifact.clone());
                    return Ok(artifact);
                }
                Ok(_) => {
                    let step = self.inner.core.lock().step;
                    self.inner.core.lock().latency_breach_step = Some(step);
                    self.breaker_failure_fetch("latency_budget_exceeded");
                    Some(format!(
                        "latency_budget_exceeded ({elapsed_ms:.1} ms > {} ms)",
                        inner.config.fetch_latency_budget_ms
                    ))
                }
                Err(e) => {
                    self.breaker_failure_fetch("fetch_error");
                    Some(format!("fetch_error: {e}"))
                }
            }
        };
        let reason = failure.unwrap_or_default();
        // Fallback: the configured blueprint, else identity; never cached under `requested`.
        seed.fallback_used = true;
        for fallback in [inner.config.fallback_blueprint.as_str(), builtin::IDENTITY] {
            if fallback == requested {
                continue;
            }
            let artifact = match inner.kernels.get(fallback, width) {
                Some(a) => Some(a),
                None => inner.blueprints.fetch(fallback, width, &inner.device).ok().map(Arc::new),
            };
            if let Some(artifact) = artifact {
                self.event(names::FALLBACK_APPLIED.event_with([
                    ("seed_id", seed.id.clone()),
                    ("requested", requested.clone()),
                    ("fallback", fallback.to_owned()),
                    ("reason", reason.clone()),
                ]));
                inner.kernels.insert(fallback, width, artifact.clone());
                return Ok(artifact);
            }
        }
        let identity = Arc::new(KernelArtifact::identity(builtin::IDENTITY, width));
        self.event(names::FALLBACK_APPLIED.event_with([
            ("seed_id", seed.id.clone()),
            ("requested", requested),
            ("fallback", builtin::IDENTITY.to_owned()),
            ("reason", reason),
        ]));
        Ok(identity)
    }

    fn breaker_failure_fetch(&self, reason: &'static str) {
        for e in self.inner.breakers.fetch_failure(reason) {
            self.event(e);
        }
    }

    // ----------------------------------------------------------------- moves

    /// Records a gate event on the seed and in telemetry.
    pub(crate) fn record_gate(&self, seed: &mut SeedRecord, event: &GateEvent) {
        self.event(events::gate_event(event));
        if !event.passed {
            self.event(events::gate_failure(event));
        }
        seed.gate_log.push(event.clone());
    }

    pub(crate) fn emit_stage(&self, seed: &SeedRecord, slot: &str) {
        for e in events::seed_state(&seed.id, slot, seed.stage(), seed.current_alpha()) {
            self.event(e);
        }
    }

    /// Runs the gate for `to`; on a pass moves the seed, on a failure culls it. Returns the
    /// gate's failure reason (`None` on a pass).
    pub(crate) fn try_advance(
        &self,
        seed: &mut SeedRecord,
        slot: &str,
        to: Stage,
        evidence: GateEvidence<'_>,
    ) -> Option<String> {
        match seed.lifecycle.guarded_transition(to, &evidence) {
            Ok(outcome) => {
                if let Some(e) = outcome.gate_event {
                    self.record_gate(seed, &e);
                }
                seed.entered(to);
                self.emit_stage(seed, slot);
                None
            }
            Err(kasmina_lifecycle::Error::GateFailed { reason, event, .. }) => {
                self.record_gate(seed, &event);
                self.cull(seed, slot, &reason, CullCause::Gate);
                Some(reason)
            }
            Err(e) => {
                self.event(names::ILLEGAL_TRANSITION.event_with([
                    ("seed_id", seed.id.clone()),
                    ("from", seed.stage().as_str_name().to_owned()),
                    ("to", to.as_str_name().to_owned()),
                    ("error", e.to_string()),
                ]));
                Some(e.to_string())
            }
        }
    }

    /// Builds the evidence for the gate guarding the seed's next forward move.
    pub(crate) fn advance_seed(&self, seed: &mut SeedRecord, slot: &str, to: Stage) -> Option<String> {
        let cfg = &self.inner.config;
        let breaker_state = self.inner.breakers.fetch_state();
        let metric = self.current_metric();
        let seed_losses = seed.seed_losses.clone();
        let blend_losses = seed.blend_losses.clone();
        let seed_shape = seed.seed_output_shape.clone();
        let host_shape = seed.host_output_shape.clone();
        let seed_dtype = seed.seed_dtype.clone();
        let host_dtype = seed.host_dtype.clone();
        let evidence = match to {
            Stage::SeedStageTraining => GateEvidence::Germinated(GerminatedEvidence {
                kernel_attached: seed.kernel.is_some(),
                parameters_registered: seed.registered,
                registration_conflict: seed.registration_conflict,
                isolation_armed: seed.monitor.is_some(),
                isolation_violations: seed.isolation_violations,
            }),
            Stage::SeedStageBlending => GateEvidence::Training(TrainingEvidence {
                seed_loss_window: &seed_losses,
                window_part: cfg.loss_window_part,
                isolation_violations: seed.isolation_violations,
                hook_latency_ms: seed.max_hook_ms,
                hook_latency_budget_ms: cfg.hook_latency_budget_ms,
            }),
            Stage::SeedStageShadowing => GateEvidence::Stability(StabilityEvidence {
                alpha_schedule_complete: seed.alpha.is_complete(),
                blended_output_finite: seed.blended_finite && !seed.nan_output,
                loss_window: &blend_losses,
                max_loss_variance: cfg.max_loss_variance,
                latency_ms: seed.max_hook_ms.max(if seed.fallback_used { 0.0 } else { seed.fetch_latency_ms }),
                latency_budget_ms: cfg.hook_latency_budget_ms.max(cfg.fetch_latency_budget_ms),
                fallback_used: seed.fallback_used,
            }),
            Stage::SeedStageProbationary => GateEvidence::Interface(InterfaceEvidence {
                seed_output_shape: &seed_shape,
                host_output_shape: &host_shape,
                seed_dtype: &seed_dtype,
                host_dtype: &host_dtype,
                telemetry_complete: !seed.gate_log.is_empty() && seed.isolation_checks > 0,
                pause_resume: seed.pause_check,
            }),
            Stage::SeedStageFossilized => GateEvidence::SystemImpact(SystemImpactEvidence {
                direction: cfg.g4_metric.direction(),
                validation_metric: metric.unwrap_or(f64::NAN),
                baseline_metric: seed.baseline_metric.or(metric).unwrap_or(f64::NAN),
                tolerance: cfg.g4_tolerance,
                isolation_violations: seed.isolation_violations,
                breaker_state,
            }),
            _ => return Some(format!("no forward move to {}", to.short_name())),
        };
        let failed = self.try_advance(seed, slot, to, evidence);
        if failed.is_none() && to == Stage::SeedStageFossilized {
            self.hand_over(seed, slot);
        }
        failed
    }

    /// FOSSILIZED: the seed's parameters become the host's.
    fn hand_over(&self, seed: &mut SeedRecord, slot: &str) {
        if seed.handed_over {
            return;
        }
        seed.handed_over = true;
        let _ = self.inner.registry.transfer_to_host(&seed.id);
        seed.optimizer = None;
        seed.monitor = None;
        self.inner.core.lock().fossilized.push(FossilizedSeed {
            seed_id: seed.id.clone(),
            slot: slot.to_owned(),
            vars: seed.vars(),
        });
    }

    /// Starts the failure path: CULLED → EMBARGOED, drops the kernel, deregisters, records the
    /// rollback payload (timed against the 500 ms fast-rollback budget).
    pub(crate) fn cull(&self, seed: &mut SeedRecord, slot: &str, reason: &str, cause: CullCause) {
        let start = self.inner.clock.now();
        let stage_before = seed.stage();
        let embargo = match seed.lifecycle.cull(reason, start) {
            Ok(e) => e,
            Err(e) => {
                self.event(names::ILLEGAL_TRANSITION.event_with([
                    ("seed_id", seed.id.clone()),
                    ("from", stage_before.as_str_name().to_owned()),
                    ("to", Stage::SeedStageCulled.as_str_name().to_owned()),
                    ("error", e.to_string()),
                ]));
                return;
            }
        };
        seed.stages.push(Stage::SeedStageCulled);
        seed.entered(seed.stage());
        seed.cull_reason = Some(reason.to_owned());
        seed.embargo_step = Some(self.inner.core.lock().step);
        seed.kernel = None;
        seed.optimizer = None;
        seed.monitor = None;
        seed.pause = None;
        seed.registered = false;
        self.inner.registry.deregister_seed(&seed.id);
        if let Some(EmbargoEvent::Start { duration, .. }) = &embargo {
            self.event(names::EMBARGO_START.event_with([
                ("seed_id", seed.id.clone()),
                ("reason", reason.to_owned()),
                ("duration_ms", duration.as_millis().to_string()),
            ]));
        }
        self.emit_stage(seed, slot);
        let (step, epoch) = {
            let core = self.inner.core.lock();
            (core.step, core.epoch)
        };
        let payload = rollback_payload(&seed.id, stage_before, reason, step, epoch);
        let elapsed_ms = self.inner.clock.now().duration_since(start).as_secs_f64() * 1e3;
        {
            let mut core = self.inner.core.lock();
            core.rollbacks.insert(seed.id.clone(), RollbackRecord { payload, elapsed_ms });
            if cause == CullCause::Isolation {
                core.isolation_cull_step = Some(step);
            }
        }
        let level = if cause == CullCause::Isolation {
            leyline::TelemetryLevel::Critical
        } else {
            leyline::TelemetryLevel::Warning
        };
        self.event(names::ROLLBACK_READY.event_at(
            level,
            [
                ("seed_id", seed.id.clone()),
                ("stage", stage_before.as_str_name().to_owned()),
                ("reason", reason.to_owned()),
                ("rollback_ms", format!("{elapsed_ms:.3}")),
                ("budget_ms", leyline::constants::PERFORMANCE_BUDGETS.fast_rollback_ms.to_string()),
            ],
        ));
    }

    /// EMBARGOED → RESETTING once the embargo elapsed, then the slot-clean report and G5.
    fn poll_embargo(&self, seed: &mut SeedRecord, slot: &str) {
        let now = self.inner.clock.now();
        let steps = self.inner.config.embargo_steps;
        if steps > 0 && seed.stage() == Stage::SeedStageEmbargoed {
            let step = self.inner.core.lock().step;
            if step.saturating_sub(seed.embargo_step.unwrap_or(step)) < steps {
                return;
            }
        }
        if let Some(EmbargoEvent::End { embargoed_for, .. }) = seed.lifecycle.poll(now) {
            seed.stages.push(Stage::SeedStageResetting);
            self.event(
                names::EMBARGO_END.event_with([
                    ("seed_id", seed.id.clone()),
                    ("embargoed_ms", embargoed_for.as_millis().to_string()),
                ]),
            );
            self.emit_stage(seed, slot);
        }
        if seed.stage() != Stage::SeedStageResetting {
            return;
        }
        // Clean the slot, then let G5 confirm it.
        seed.kernel = None;
        seed.optimizer = None;
        seed.monitor = None;
        self.inner.registry.deregister_seed(&seed.id);
        seed.zero_counters();
        let evidence = ResetEvidence {
            kernel_dropped: seed.kernel.is_none(),
            parameters_deregistered: !self.inner.registry.is_registered(&seed.id),
            isolation_session_closed: seed.monitor.is_none(),
            counters_zeroed: seed.counters_zeroed(),
            cache_entries_removed: true,
        };
        match seed.lifecycle.guarded_transition(Stage::SeedStageDormant, &GateEvidence::Reset(evidence)) {
            Ok(outcome) => {
                if let Some(e) = outcome.gate_event {
                    self.record_gate(seed, &e);
                }
                seed.entered(Stage::SeedStageDormant);
                self.emit_stage(seed, slot);
            }
            Err(kasmina_lifecycle::Error::GateFailed { event, .. }) => self.record_gate(seed, &event),
            Err(_) => {}
        }
    }

    // ----------------------------------------------------------------- step and epoch

    /// The safe point after a training step: applies queued commands, checks parameter
    /// ownership, steps every seed's optimiser with `grads`, runs the isolation probe, feeds
    /// the gates and advances or culls seeds, times embargoes. Call it after the host's backward
    /// (and the host optimiser's step), with the same `GradStore`.
    ///
    /// A non-finite loss is refused with [`Error::InvalidReport`] (and an ERROR event); no seed
    /// changes.
    pub fn on_step(&self, grads: &GradStore, report: StepReport) -> Result<StepOutcome> {
        let started = self.inner.clock.now();
        if !report.loss.is_finite() {
            self.event(names::COMMAND_REJECTED.event_at(
                leyline::TelemetryLevel::Error,
                [("reason", "non_finite_loss".to_owned()), ("loss", report.loss.to_string())],
            ));
            self.flush_events(false);
            return Err(Error::InvalidReport(format!("step loss is not finite ({})", report.loss)));
        }
        let mut outcome = StepOutcome { commands_applied: self.safe_point(), ..StepOutcome::default() };
        let step = {
            let mut core = self.inner.core.lock();
            core.step += 1;
            core.stats.steps += 1;
            core.last_train_loss = report.loss;
            core.step
        };
        let cells: Vec<Arc<SlotCell>> = self.inner.slots.read().clone();
        for cell in &cells {
            let mut st = cell.state.lock();
            let branch = st.last_branch.take();
            let paused_passes = std::mem::take(&mut st.paused_passes);
            let SlotState { seed, .. } = &mut *st;
            let Some(seed) = seed.as_mut() else { continue };
            self.step_seed(seed, &cell.name, grads, &report, branch, paused_passes, step, &mut outcome);
            self.poll_embargo(seed, &cell.name);
        }
        outcome.fossilized = std::mem::take(&mut self.inner.core.lock().fossilized);
        let elapsed = self.inner.clock.now().duration_since(started).as_secs_f64() * 1e3;
        {
            let mut core = self.inner.core.lock();
            core.stats.kasmina_ms += elapsed;
            core.stats.isolation_checks += u64::from(outcome.isolation_checks);
            core.stats.isolation_violations += u64::from(outcome.isolation_violations);
        }
        self.flush_events(false);
        Ok(outcome)
    }

    #[allow(clippy::too_many_arguments)]
    fn step_seed(
        &self,
        seed: &mut SeedRecord,
        slot: &str,
        grads: &GradStore,
        report: &StepReport,
        branch: Option<kasmina_isolation::SeedBranch>,
        paused_passes: u64,
        step: u64,
        outcome: &mut StepOutcome,
    ) {
        let cfg = &self.inner.config;
        let stage = seed.stage();
        // Pause quota: a paused seed may pass through the identity kernel a bounded number of times.
        if let Some(p) = seed.pause.as_mut() {
            p.passes_left = p.passes_left.saturating_sub(paused_passes);
            if p.passes_left == 0 {
                self.event(names::PAUSE.event_at(
                    leyline::TelemetryLevel::Warning,
                    [("seed_id", seed.id.clone()), ("quota", "exhausted".to_owned())],
                ));
            }
            return;
        }
        if stage == Stage::SeedStageGerminated {
            if cfg.auto_advance {
                self.advance_seed(seed, slot, Stage::SeedStageTraining);
            }
            return;
        }
        if !stage.is_monitored() {
            return;
        }
        seed.steps_in_stage += 1;
        seed.steps_total += 1;

        // A non-finite seed output: G1 (in TRAINING) or G2 (in BLENDING) refuses it; later
        // stages cull directly.
        if seed.nan_output {
            match stage {
                Stage::SeedStageTraining => {
                    seed.seed_losses.push(f32::NAN);
                    self.advance_seed(seed, slot, Stage::SeedStageBlending);
                }
                Stage::SeedStageBlending => {
                    self.advance_seed(seed, slot, Stage::SeedStageShadowing);
                }
                _ => self.cull(seed, slot, "seed_output_not_finite", CullCause::Gate),
            }
            return;
        }

        // Isolation probe (D6) on the branch of this step's forward.
        if let (Some(branch), Some(kernel), Some(monitor)) =
            (branch.as_ref(), seed.kernel.clone(), seed.monitor.as_mut())
            && monitor.should_check(step)
        {
            {
                let probe = Probe::rerun(&branch.input, crate::slot::as_module(&kernel)).with_step_grads(grads);
                match monitor.check(step, stage, &probe) {
                    Ok(r) if !r.is_skipped() => {
                        outcome.isolation_checks += 1;
                        seed.isolation_checks += 1;
                        seed.last_hook_ms = r.elapsed_ms;
                        seed.max_hook_ms = seed.max_hook_ms.max(r.elapsed_ms);
                        seed.last_dot_product = r.dot_product.unwrap_or(0.0);
                        // The monitor measured it already (`MonitorConfig::grad_norms`); a second
                        // pass over every seed gradient only without it.
                        if let Some(n) = r.seed_grad_norm.map(|n| n as f32).or_else(|| seed_grad_norm(&kernel, grads)) {
                            seed.last_grad_norm = n;
                        }
                        {
                            let mut core = self.inner.core.lock();
                            core.last_hook_ms = r.elapsed_ms;
                            core.last_dot_product = seed.last_dot_product;
                        }
                        if r.is_violation() {
                            outcome.isolation_violations += 1;
                            if self.isolation_violation(seed, slot, &r.offending) {
                                return;
                            }
                        } else {
                            for e in self.inner.breakers.isolation_success() {
                                self.event(e);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => self.event(names::ISOLATION_VIOLATION.event_at(
                        leyline::TelemetryLevel::Error,
                        [("seed_id", seed.id.clone()), ("error", e.to_string())],
                    )),
                }
            }
        }

        // Ownership check before the seed optimiser's step (the registry's rules).
        let vars = seed.vars();
        if !vars.is_empty()
            && let Err(v) = self.inner.registry.validate_update(&seed.id, &vars)
        {
            seed.update_violations = v.count;
            self.event(events::parameter_violation(&v));
            if v.threshold_reached {
                self.cull(seed, slot, "parameter_violations", CullCause::ParameterViolations);
            }
            return;
        }
        if let Some(opt) = seed.optimizer.as_mut() {
            use candle_nn::optim::Optimizer;
            if let Err(e) = opt.step(grads) {
                self.cull(seed, slot, &format!("optimizer_error: {e}"), CullCause::Gate);
                return;
            }
        }
        if let Some(k) = seed.kernel.as_ref() {
            k.advance_step();
        }

        // Evidence and training-driven advances (D3).
        match stage {
            Stage::SeedStageTraining => {
                // G1 reads the shadow seed loss (decisions D2). Its difference with the host's
                // loss on the same batch is exported too (`seed_loss_vs_host`): at a plateau it
                // shows how little the straight-through signal moves the seed's standalone loss.
                if let Some(l) = report.shadow_losses.get(slot) {
                    seed.seed_losses.push(*l);
                    seed.last_seed_loss_vs_host = Some(*l - report.loss);
                }
                if cfg.auto_advance && seed.steps_in_stage >= cfg.training_steps {
                    self.advance_seed(seed, slot, Stage::SeedStageBlending);
                }
            }
            Stage::SeedStageBlending => {
                seed.blend_losses.push(report.loss);
                seed.alpha.advance();
                if cfg.auto_advance && seed.alpha.is_complete() {
                    self.advance_seed(seed, slot, Stage::SeedStageShadowing);
                }
            }
            Stage::SeedStageShadowing if cfg.auto_advance && seed.steps_in_stage >= cfg.shadowing_steps => {
                self.advance_seed(seed, slot, Stage::SeedStageProbationary);
            }
            _ => {}
        }
    }

    /// Counts an isolation violation; returns `true` when the seed was culled for it.
    fn isolation_violation(&self, seed: &mut SeedRecord, slot: &str, offending: &[String]) -> bool {
        seed.isolation_violations += 1;
        let breaker_events = self.inner.breakers.isolation_failure();
        let open = self.inner.breakers.isolation_open();
        let level = if open { leyline::TelemetryLevel::Critical } else { leyline::TelemetryLevel::Warning };
        self.event(names::ISOLATION_VIOLATION.event_at(
            level,
            [
                ("seed_id", seed.id.clone()),
                ("violations", seed.isolation_violations.to_string()),
                ("offending", offending.join(",")),
            ],
        ));
        self.event(
            names::VIOLATION_RECORDED
                .event_at(level, [("seed_id", seed.id.clone()), ("violations", seed.isolation_violations.to_string())]),
        );
        for e in breaker_events {
            self.event(e);
        }
        if seed.isolation_violations >= self.inner.config.violation_threshold || open {
            self.cull(seed, slot, "isolation_violation", CullCause::Isolation);
            return true;
        }
        false
    }

    /// The safe point at an epoch boundary: applies queued commands, records the validation
    /// metrics, ages seeds, evaluates G4 at the end of probation, runs the memory GC.
    pub fn on_epoch(&self, report: EpochReport) -> Result<EpochOutcome> {
        if !report.val_loss.is_finite() || !report.val_acc.is_finite() {
            self.event(
                names::COMMAND_REJECTED
                    .event_at(leyline::TelemetryLevel::Error, [("reason", "non_finite_validation".to_owned())]),
            );
            self.flush_events(false);
            return Err(Error::InvalidReport(format!(
                "validation metrics are not finite (loss {}, accuracy {})",
                report.val_loss, report.val_acc
            )));
        }
        let started = self.inner.clock.now();
        self.safe_point();
        {
            let mut core = self.inner.core.lock();
            core.epoch = report.epoch;
            core.last_val_loss = Some(f64::from(report.val_loss));
            core.last_val_acc = Some(f64::from(report.val_acc));
        }
        let cfg = &self.inner.config;
        let cells: Vec<Arc<SlotCell>> = self.inner.slots.read().clone();
        for cell in &cells {
            let mut st = cell.state.lock();
            let Some(seed) = st.seed.as_mut() else { continue };
            if !seed.is_live() {
                continue;
            }
            seed.epochs += 1;
            seed.epochs_in_stage += 1;
            if seed.baseline_metric.is_none() && seed.stage() == Stage::SeedStageGerminated {
                seed.baseline_metric = self.current_metric();
            }
            if seed.stage() == Stage::SeedStageProbationary
                && cfg.auto_advance
                && cfg.auto_fossilize
                && seed.pause.is_none()
                && seed.steps_in_stage >= cfg.probation_steps
            {
                self.advance_seed(seed, &cell.name, Stage::SeedStageFossilized);
            }
            self.poll_embargo(seed, &cell.name);
        }
        let gc = self.inner.kernels.on_epoch(u64::from(report.epoch));
        if let Some(evicted) = gc {
            self.event(
                names::MEMORY_GC.event_with([("epoch", report.epoch.to_string()), ("evicted", evicted.to_string())]),
            );
        }
        let elapsed = self.inner.clock.now().duration_since(started).as_secs_f64() * 1e3;
        self.inner.core.lock().stats.kasmina_ms += elapsed;
        let fossilized = std::mem::take(&mut self.inner.core.lock().fossilized);
        self.flush_events(true);
        Ok(EpochOutcome { fossilized, gc_evicted: gc })
    }

    /// Checks embargoes without a training step (a serving loop that idles calls this).
    pub fn poll(&self) {
        let cells: Vec<Arc<SlotCell>> = self.inner.slots.read().clone();
        for cell in &cells {
            let mut st = cell.state.lock();
            if let Some(seed) = st.seed.as_mut() {
                self.poll_embargo(seed, &cell.name);
            }
        }
        self.flush_events(false);
    }
}

/// L2 norm of the step's gradients over the seed's own variables.
fn seed_grad_norm(kernel: &SeedKernel, grads: &GradStore) -> Option<f32> {
    let mut total = 0.0f32;
    for var in kernel.vars() {
        let g = grads.get(var.as_tensor())?;
        total += g.sqr().ok()?.sum_all().ok()?.to_scalar::<f32>().ok()?;
    }
    Some(total.sqrt())
}

/// The rollback payload of a cull (`google.protobuf.Struct`: seed_id, stage, reason, step, epoch).
pub(crate) fn rollback_payload(seed_id: &str, stage: Stage, reason: &str, step: u64, epoch: u32) -> wkt::Struct {
    use wkt::value::Kind;
    let s = |v: &str| wkt::Value { kind: Some(Kind::StringValue(v.to_owned())) };
    let n = |v: f64| wkt::Value { kind: Some(Kind::NumberValue(v)) };
    wkt::Struct {
        fields: [
            ("seed_id".to_owned(), s(seed_id)),
            ("stage".to_owned(), s(stage.as_str_name())),
            ("reason".to_owned(), s(reason)),
            ("step".to_owned(), n(step as f64)),
            ("epoch".to_owned(), n(f64::from(epoch))),
        ]
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use leyline::adaptation_command::Payload;
    use leyline::{AdaptationCommand, CommandSeedOperation, CommandType, HealthStatus, SeedOperation};

    use super::*;

    /// The escalation path of D6 (unreachable through the public forward, which always detaches
    /// and whose registry refuses shared parameters first): violations count per seed, open the
    /// isolation breaker at the threshold, cull the seed and make health CRITICAL.
    #[test]
    fn isolation_violations_escalate_to_breaker_cull_and_critical_health() {
        let dir = std::env::temp_dir().join(format!("kasmina-escalation-{}", std::process::id()));
        let library = builtin::write_library(&dir, &[8], 0).unwrap();
        let k = Kasmina::builder().blueprints(library).build().unwrap();
        let slot = k.slot("s", 8).unwrap();
        let receipt = k.apply(AdaptationCommand {
            command_id: "c1".into(),
            command_type: CommandType::CommandSeed as i32,
            target_seed_id: "seed-1".into(),
            payload: Some(Payload::SeedOperation(CommandSeedOperation {
                operation: SeedOperation::SeedOpGerminate as i32,
                blueprint_id: builtin::RESIDUAL_MLP.into(),
                parameters: Default::default(),
            })),
            ..Default::default()
        });
        assert!(receipt.accepted, "{receipt:?}");
        let mut st = slot.cell.state.lock();
        let seed = st.seed.as_mut().unwrap();
        assert!(!k.isolation_violation(seed, "s", &["l1.weight".into()]));
        assert!(!k.isolation_violation(seed, "s", &["l1.weight".into()]));
        drop(st);
        assert_eq!(k.health_inputs().violations, 2);
        let mut st = slot.cell.state.lock();
        let seed = st.seed.as_mut().unwrap();
        assert!(k.isolation_violation(seed, "s", &["l1.weight".into()]), "culled at the threshold");
        assert_eq!(seed.stage(), Stage::SeedStageEmbargoed);
        assert_eq!(seed.cull_reason.as_deref(), Some("isolation_violation"));
        drop(st);
        assert!(k.inner.breakers.isolation_open());
        assert_eq!(k.health().status(), HealthStatus::Critical);
        let _ = std::fs::remove_dir_all(dir);
    }
}
