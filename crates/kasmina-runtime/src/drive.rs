//! The safe points (decisions D3): after each training step and at each epoch boundary the
//! runtime applies queued commands, observes every seed (forward observations, isolation
//! probe, ownership check, breaker admissions) and hands the evidence to its machine.

use candle_core::backprop::GradStore;
use std::ops::Range;

use kasmina_isolation::{Measured, PendingCheck, Probe};
use kasmina_telemetry::names;
use leyline::{SeedLifecycleStage as Stage, TelemetryLevel};

use crate::breakers::BreakerName;
use crate::error::{Error, Result};
use crate::readout::{Readout, Values};
use crate::report::CounterfactualReport;
use crate::report::{EpochOutcome, EpochReport, StepOutcome, StepReport};
use crate::seed::evidence::{IsolationEvidence, ResetObservation, StepEvidence};
use crate::seed::{Effects, Phase, Seed};
use crate::slot::{Observation, SlotCell, shadow_metrics, shadow_sums};
use crate::state::{Inner, Outbox};

impl Inner {
    /// Applies every queued command (the first thing each safe point does).
    pub(crate) fn safe_point(&self, out: &mut Outbox) -> u32 {
        let mut applied = 0;
        loop {
            let next = self.queue.lock().pop_front();
            let Some(pending) = next else { break };
            self.apply_pending(pending, out);
            applied += 1;
        }
        applied
    }

    /// The safe point after a training step.
    pub(crate) fn step(&self, grads: &GradStore, report: &StepReport) -> Result<StepOutcome> {
        if !report.loss.is_finite() {
            self.reject_report("non_finite_loss", report.loss);
            return Err(Error::InvalidReport(format!("step loss is not finite ({})", report.loss)));
        }
        let watch = self.timer.start();
        let mut out = Outbox::default();
        let mut outcome = StepOutcome { commands_applied: self.safe_point(&mut out), ..StepOutcome::default() };
        let step = {
            let mut core = self.core.lock();
            core.step += 1;
            core.stats.steps += 1;
            core.last_train_loss = report.loss;
            core.step
        };
        // Every seed's figures as tensors on the device, then the step's one device read
        // (issue 19), then every seed's evidence and transition.
        let mut readout = Readout::default();
        let mut gathered = Vec::new();
        for cell in self.cells() {
            let mut guard = cell.seed.lock();
            let Some(seed) = guard.as_mut() else { continue };
            let gathering = self.gather(&cell, seed, grads, report, step, &mut readout);
            gathered.push((cell.clone(), seed.id.clone(), gathering));
        }
        let values = readout.read(&self.device_reads)?;
        let mut monitored = false;
        for (cell, id, gathering) in gathered {
            let mut guard = cell.seed.lock();
            let Some(seed) = guard.as_mut().filter(|s| s.id == id) else { continue };
            monitored |= seed.stage().is_monitored();
            let mut gathering = match gathering {
                Gathering::Reset(change) => {
                    let transparent = change.is_some_and(|r| values.one(&r) == 0.0);
                    self.finish_reset(&cell, seed, transparent, &mut out);
                    continue;
                }
                Gathering::Step(g) => g,
            };
            let shadow_grads = gathering.shadow_grads.take();
            let seed_grads = shadow_grads.as_ref().unwrap_or(grads);
            let ev = self.observe(&cell, seed, *gathering, &values, report, &mut out, &mut outcome);
            let cx = self.cx(&cell.name, &seed.id);
            let fx = seed.on_step(&ev, &cx);
            self.perform(&cell, seed, fx, Some(seed_grads), &cx, &mut out);
        }
        if !monitored {
            // With no monitored seed left, the isolation breaker still recovers (decisions D6).
            self.breakers.probe_clean(BreakerName::Isolation, &mut out.events);
        }
        outcome.fossilized = std::mem::take(&mut out.fossilized);
        {
            let mut core = self.core.lock();
            core.stats.kasmina_ms += watch.elapsed_ms();
            core.stats.isolation_checks += u64::from(outcome.isolation_checks);
            core.stats.isolation_violations += u64::from(outcome.isolation_violations);
        }
        self.publish(out.events, false);
        Ok(outcome)
    }

    /// The safe point at an epoch boundary.
    pub(crate) fn epoch(&self, report: &EpochReport) -> Result<EpochOutcome> {
        if !report.val_loss.is_finite() || !report.val_acc.is_finite() {
            self.reject_report("non_finite_validation", report.val_loss);
            return Err(Error::InvalidReport(format!(
                "validation metrics are not finite (loss {}, accuracy {})",
                report.val_loss, report.val_acc
            )));
        }
        let watch = self.timer.start();
        let mut out = Outbox::default();
        self.safe_point(&mut out);
        {
            let mut core = self.core.lock();
            core.epoch = report.epoch;
            core.last_val_loss = Some(f64::from(report.val_loss));
            core.last_val_acc = Some(f64::from(report.val_acc));
        }
        for cell in self.cells() {
            let mut guard = cell.seed.lock();
            let Some(seed) = guard.as_mut() else { continue };
            if self.reset_now(&cell, seed, &mut out) {
                continue;
            }
            let cx = self.cx(&cell.name, &seed.id);
            let fx = seed.on_epoch(&cx);
            self.perform(&cell, seed, fx, None, &cx, &mut out);
        }
        let gc = self.memory.on_epoch(u64::from(report.epoch));
        if let Some(evicted) = gc {
            out.events.push(
                names::MEMORY_GC.event_with([("epoch", report.epoch.to_string()), ("evicted", evicted.to_string())]),
            );
        }
        self.core.lock().stats.kasmina_ms += watch.elapsed_ms();
        let fossilized = std::mem::take(&mut out.fossilized);
        self.publish(out.events, true);
        Ok(EpochOutcome { fossilized, gc_evicted: gc })
    }

    /// Embargoes, resets and the idle isolation probe without a training step.
    pub(crate) fn poll(&self) {
        let mut out = Outbox::default();
        let mut monitored = false;
        for cell in self.cells() {
            let mut guard = cell.seed.lock();
            let Some(seed) = guard.as_mut() else { continue };
            monitored |= seed.stage().is_monitored();
            if self.reset_now(&cell, seed, &mut out) || seed.stage() != Stage::SeedStageEmbargoed {
                continue;
            }
            let cx = self.cx(&cell.name, &seed.id);
            let mut fx = Effects::default();
            seed.poll_embargo(&cx, &mut fx);
            self.perform(&cell, seed, fx, None, &cx, &mut out);
        }
        if !monitored {
            self.breakers.probe_clean(BreakerName::Isolation, &mut out.events);
        }
        self.publish(out.events, false);
    }

    fn reject_report(&self, reason: &str, value: f32) {
        let event = names::COMMAND_REJECTED
            .event_at(TelemetryLevel::Error, [("reason", reason.to_owned()), ("value", value.to_string())]);
        self.publish(vec![event], false);
    }

    /// Outside a training step: for a seed in RESETTING, probes the slot (one device read) and
    /// lets G5 decide. `true` when the seed was resetting.
    fn reset_now(&self, cell: &SlotCell, seed: &mut Seed, out: &mut Outbox) -> bool {
        if seed.stage() != Stage::SeedStageResetting {
            return false;
        }
        let mut readout = Readout::default();
        let change = cell.change_of_probe(&self.device).ok().flatten().map(|t| readout.push(&t));
        let transparent = match readout.read(&self.device_reads) {
            Ok(values) => change.is_some_and(|r| values.one(&r) == 0.0),
            Err(_) => false,
        };
        self.finish_reset(cell, seed, transparent, out);
        true
    }

    /// For a seed in RESETTING: observes the cleaned slot (registry, cache, and whether a probe
    /// forward came out unchanged) and lets G5 decide.
    fn finish_reset(&self, cell: &SlotCell, seed: &mut Seed, slot_transparent: bool, out: &mut Outbox) {
        let seen = ResetObservation {
            parameters_registered: self.registry.is_registered(&seed.id),
            cache_entries: self.memory.entries_for_seed(&seed.id),
            slot_transparent,
        };
        let cx = self.cx(&cell.name, &seed.id);
        let mut fx = Effects::default();
        seed.finish_reset(seen, &cx, &mut fx);
        self.perform(cell, seed, fx, None, &cx, out);
    }

    /// The first half of a training step's safe point for one seed: everything it will need from
    /// the device, pushed onto `readout` as tensors (nothing is read). A seed in RESETTING gets
    /// G5's slot probe; any other, its forward observations, its isolation probe (when due), its
    /// gradient norms (TRAINING), its shadow metrics (SHADOWING, PROBATIONARY) and, in the
    /// shadow training mode, its shadow backward. A figure whose tensor operation fails is left
    /// out (the evidence goes without it, as when it was read on its own); an isolation probe that
    /// fails is reported as such.
    fn gather(
        &self,
        cell: &SlotCell,
        seed: &mut Seed,
        grads: &GradStore,
        report: &StepReport,
        step: u64,
        readout: &mut Readout,
    ) -> Gathering {
        if seed.stage() == Stage::SeedStageResetting {
            let change = cell.change_of_probe(&self.device).ok().flatten().map(|t| readout.push(&t));
            return Gathering::Reset(change);
        }
        let seen = cell.take_observation();
        let shadow_grads = self.shadow_grads(seed, &cell.name, report);
        let mut g = StepGathering {
            nonfinite: None,
            shadow: None,
            shadow_loss: None,
            probe: None,
            seed_norm: None,
            host_norm: None,
            seen,
            shadow_grads: None,
        };
        g.nonfinite = g.seen.finite_checks.as_ref().map(|check| readout.push(check));
        if let Some((h, d)) = g.seen.shadow_pair.as_ref() {
            g.shadow = shadow_sums(h, d).ok().map(|t| readout.push(&t));
        }
        if !report.shadow_losses.contains_key(&cell.name)
            && let Some(loss) = report.shadow_loss_tensors.get(&cell.name)
        {
            g.shadow_loss = Some(readout.push(loss));
        }
        let candidate = seed.stage().is_monitored() && !seed.is_paused();
        if candidate && let Some(branch) = g.seen.branch.as_ref() {
            g.probe = self.measure_probe(seed, branch, grads, step, readout);
        }
        if candidate && seed.live().is_some_and(|l| matches!(l.phase, Phase::Training { .. })) {
            // G1's evidence: the seed's and the host's gradient norms at this step.
            g.seed_norm = match (&shadow_grads, &g.probe) {
                // The same variables and gradients as the probe's norm: read that once.
                (None, Some(ProbeGathering::Pending { norm: Some(norm), .. })) => Some(norm.clone()),
                _ => {
                    let seed_grads = shadow_grads.as_ref().unwrap_or(grads);
                    sum_of_squares(&seed.vars(), seed_grads).map(|t| readout.push(&t))
                }
            };
            if report.host_grad_norm.is_none() {
                g.host_norm = sum_of_squares(self.host_vars.iter().map(|(_, v)| v), grads).map(|t| readout.push(&t));
            }
        }
        g.shadow_grads = shadow_grads;
        Gathering::Step(Box::new(g))
    }

    /// The isolation probe of decisions D6 on this step's seed branch, measured on the device
    /// ([`kasmina_isolation::IsolationMonitor::measure`]) with the seed kernel's gradient norm.
    /// `None` when the step is not sampled.
    fn measure_probe(
        &self,
        seed: &mut Seed,
        branch: &kasmina_isolation::SeedBranch,
        grads: &GradStore,
        step: u64,
        readout: &mut Readout,
    ) -> Option<ProbeGathering> {
        let stage = seed.stage();
        let live = seed.live_mut()?;
        if !live.attached.monitor.should_check(step) {
            return None;
        }
        let kernel = live.attached.kernel.clone();
        // The kernel's weights as constants: the probe's backward goes only as far as it must,
        // through the seed's input towards the host (decisions D24).
        let frozen = kernel.frozen();
        let probe = Probe::rerun(&branch.input, &frozen).with_step_grads(grads);
        let pending = match live.attached.monitor.measure(step, stage, &probe) {
            Ok(Measured::Pending(p)) => p,
            Ok(Measured::Skipped(_)) => return None,
            Err(e) => return Some(ProbeGathering::Failed(e.to_string())),
        };
        let ranges = pending.scalars().iter().map(|t| readout.push(t)).collect();
        let norm = sum_of_squares(kernel.named_vars().iter().map(|(_, v)| v), grads).map(|t| readout.push(&t));
        Some(ProbeGathering::Pending { pending, ranges, norm })
    }

    /// In [`crate::TrainingMode::Shadow`], the seed's gradients from its shadow loss (a second
    /// backward, through the seed's stand-alone output); `None` in any other case.
    fn shadow_grads(&self, seed: &Seed, slot: &str, report: &StepReport) -> Option<GradStore> {
        let training = seed.live().is_some_and(|l| matches!(l.phase, Phase::Training { .. }) && l.pause.is_none());
        if !training || self.config.training_mode != crate::config::TrainingMode::Shadow {
            return None;
        }
        report.shadow_loss_tensors.get(slot).and_then(|loss| loss.backward().ok())
    }

    /// The second half of a training step's safe point for one seed: everything this step
    /// observed for it, from the values of the step's one read.
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &self,
        cell: &SlotCell,
        seed: &mut Seed,
        gathered: StepGathering,
        values: &Values,
        report: &StepReport,
        out: &mut Outbox,
        outcome: &mut StepOutcome,
    ) -> StepEvidence {
        let StepGathering { seen, nonfinite, shadow, shadow_loss, probe, seed_norm, host_norm, .. } = gathered;
        let mut ev = StepEvidence {
            loss: report.loss,
            shadow_loss: report
                .shadow_losses
                .get(&cell.name)
                .copied()
                .or_else(|| shadow_loss.map(|r| values.one(&r) as f32)),
            nan_output: nonfinite.is_some_and(|r| values.one(&r) != 0.0),
            interface: seen.interface,
            paused_passes: seen.paused_passes,
            shadow: shadow.and_then(|r| shadow_metrics(values.get(&r))),
            ..StepEvidence::default()
        };
        let active = seed.stage().is_monitored() && !seed.is_paused() && !ev.nan_output;
        if !active {
            return ev;
        }
        if let Some(probe) = probe {
            ev.isolation = self.conclude_probe(seed, probe, values, out);
        }
        if let Some(iso) = &ev.isolation {
            outcome.isolation_checks += 1;
            outcome.isolation_violations += u32::from(iso.violation);
        }
        let culls_now = ev.isolation.as_ref().is_some_and(|i| {
            i.violation
                && (i.breaker_open
                    || seed
                        .live()
                        .is_some_and(|l| l.health.isolation_violations + 1 >= self.config.violation_threshold))
        });
        let vars = seed.vars();
        if !culls_now && !vars.is_empty() {
            ev.update_violation = self.registry.validate_update(&seed.id, &vars).err();
        }
        if seed.live().is_some_and(|l| matches!(l.phase, Phase::Training { .. })) {
            ev.seed_grad_norm = seed_norm.map(|r| values.one(&r).sqrt() as f32);
            ev.host_grad_norm = report.host_grad_norm.or_else(|| host_norm.map(|r| values.one(&r).sqrt() as f32));
        }
        if seed.live().is_some_and(|l| matches!(l.phase, Phase::Blending { .. })) {
            ev.blend_admitted = self.breakers.admit(BreakerName::Blending, &mut out.events);
        }
        ev
    }

    /// The isolation probe's verdict from the step's values, with the isolation breaker's
    /// accounting.
    fn conclude_probe(
        &self,
        seed: &mut Seed,
        probe: ProbeGathering,
        values: &Values,
        out: &mut Outbox,
    ) -> Option<IsolationEvidence> {
        let id = seed.id.clone();
        let live = seed.live_mut()?;
        let (pending, ranges, norm) = match probe {
            ProbeGathering::Pending { pending, ranges, norm } => (pending, ranges, norm),
            ProbeGathering::Failed(error) => {
                out.events.push(
                    names::ISOLATION_VIOLATION.event_at(TelemetryLevel::Error, [("seed_id", id), ("error", error)]),
                );
                return None;
            }
        };
        let read: Vec<f64> = ranges.iter().map(|r| values.one(r)).collect();
        let report = match live.attached.monitor.conclude(pending, &read) {
            Ok(r) => r,
            Err(e) => {
                out.events.push(
                    names::ISOLATION_VIOLATION
                        .event_at(TelemetryLevel::Error, [("seed_id", id), ("error", e.to_string())]),
                );
                return None;
            }
        };
        let violation = report.is_violation();
        if violation {
            self.breakers.failure(BreakerName::Isolation, "isolation_violation", &mut out.events);
        } else {
            self.breakers.probe_clean(BreakerName::Isolation, &mut out.events);
        }
        {
            let mut core = self.core.lock();
            core.last_hook_ms = report.elapsed_ms;
            core.last_dot_product = report.dot_product.unwrap_or(0.0);
        }
        let seed_grad_norm =
            report.seed_grad_norm.map(|n| n as f32).or_else(|| norm.map(|r| values.one(&r).sqrt() as f32));
        Some(IsolationEvidence {
            violation,
            offending: report.offending.clone(),
            elapsed_ms: report.elapsed_ms,
            seed_grad_norm,
            breaker_open: self.breakers.state(BreakerName::Isolation) == leyline::CircuitBreakerState::CircuitStateOpen,
        })
    }
}

/// What the first half of a step's safe point gathered for one seed.
enum Gathering {
    /// A seed in RESETTING: where G5's slot probe (the largest change of a probe activation) is
    /// in the values; `None` when the probe's output had another shape or failed.
    Reset(Option<Range<usize>>),
    /// Any other seed.
    Step(Box<StepGathering>),
}

/// A seed's forward observations and where its figures are in the step's values.
struct StepGathering {
    seen: Observation,
    shadow_grads: Option<GradStore>,
    nonfinite: Option<Range<usize>>,
    shadow: Option<Range<usize>>,
    shadow_loss: Option<Range<usize>>,
    probe: Option<ProbeGathering>,
    seed_norm: Option<Range<usize>>,
    host_norm: Option<Range<usize>>,
}

/// An isolation probe measured on the device, or why it could not be.
enum ProbeGathering {
    Pending { pending: PendingCheck, ranges: Vec<Range<usize>>, norm: Option<Range<usize>> },
    Failed(String),
}

impl Inner {
    /// Counterfactual evaluation (decisions D2): for every seed in SHADOWING or PROBATIONARY,
    /// `eval` runs once with the seed as it is and once with its slot bypassed; the paired
    /// per-batch differences (bypassed − with the seed) are the seed's contribution.
    pub(crate) fn counterfactual(
        &self,
        eval: &mut dyn FnMut() -> candle_core::Result<Vec<f32>>,
    ) -> Result<Vec<CounterfactualReport>> {
        let mut events = Vec::new();
        let mut reports = Vec::new();
        for cell in self.cells() {
            let wanted = cell.seed.lock().as_ref().is_some_and(|s| {
                !s.is_paused() && matches!(s.stage(), Stage::SeedStageShadowing | Stage::SeedStageProbationary)
            });
            if !wanted {
                continue;
            }
            let result =
                cell.evaluated(false, &mut *eval).and_then(|with| Ok((with, cell.evaluated(true, &mut *eval)?)));
            let (with, bypassed) = match result {
                Ok(pair) => pair,
                Err(e) => {
                    self.publish(vec![counterfactual_failed(&cell.name, &e.to_string())], false);
                    return Err(Error::Evaluation(e.to_string()));
                }
            };
            let diffs = paired(&with, &bypassed);
            let mut guard = cell.seed.lock();
            let Some(seed) = guard.as_mut() else { continue };
            let Some(cf) = diffs.as_deref().and_then(kasmina_lifecycle::gates::Counterfactual::from_differences) else {
                events.push(counterfactual_failed(
                    &cell.name,
                    "batches differ in number, or are fewer than 2, or not finite",
                ));
                continue;
            };
            let reference = with.iter().map(|&l| f64::from(l)).sum::<f64>() / with.len().max(1) as f64;
            if seed.record_counterfactual(cf, reference) {
                events.push(names::COUNTERFACTUAL.event_with([
                    ("seed_id", seed.id.clone()),
                    ("slot", cell.name.clone()),
                    ("mean", format!("{:.6}", cf.mean)),
                    ("std_error", format!("{:.6}", cf.std_error)),
                    ("batches", cf.batches.to_string()),
                ]));
                reports.push(CounterfactualReport {
                    seed_id: seed.id.clone(),
                    slot: cell.name.clone(),
                    stage: seed.stage(),
                    mean: cf.mean,
                    std_error: cf.std_error,
                    batches: cf.batches,
                });
            }
        }
        self.publish(events, false);
        Ok(reports)
    }
}

/// `bypassed - with` per batch, when both evaluations saw the same number of batches.
fn paired(with: &[f32], bypassed: &[f32]) -> Option<Vec<f64>> {
    (with.len() == bypassed.len())
        .then(|| with.iter().zip(bypassed).map(|(w, b)| f64::from(*b) - f64::from(*w)).collect())
}

fn counterfactual_failed(slot: &str, error: &str) -> leyline::TelemetryEvent {
    names::COUNTERFACTUAL.event_at(TelemetryLevel::Error, [("slot", slot.to_owned()), ("error", error.to_owned())])
}

/// `Σ g²` of the step's gradients over `vars`, as a scalar on the device (nothing is read).
/// `None` when a variable has no gradient, when there is none, or when an operation fails.
fn sum_of_squares<'a>(
    vars: impl IntoIterator<Item = &'a candle_core::Var>,
    grads: &GradStore,
) -> Option<candle_core::Tensor> {
    let mut total: Option<candle_core::Tensor> = None;
    for var in vars {
        let sq = grads.get(var.as_tensor())?.sqr().ok()?.sum_all().ok()?.to_dtype(candle_core::DType::F32).ok()?;
        total = Some(match total {
            Some(t) => (t + sq).ok()?,
            None => sq,
        });
    }
    total
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use candle_core::{DType, Device, Tensor};
    use kasmina_lifecycle::gates::GateReason;
    use leyline::adaptation_command::Payload;
    use leyline::{AdaptationCommand, CircuitBreakerState, CommandSeedOperation, CommandType, SeedOperation};

    use super::*;
    use crate::blueprint::SeedKernel;
    use crate::seed::Route;
    use crate::{Kasmina, KasminaConfig};

    fn seed_op(op: SeedOperation, id: &str) -> AdaptationCommand {
        AdaptationCommand {
            command_id: format!("{op:?}-{id}"),
            command_type: CommandType::CommandSeed as i32,
            target_seed_id: id.into(),
            payload: Some(Payload::SeedOperation(CommandSeedOperation {
                operation: op as i32,
                blueprint_id: crate::blueprint::builtin::RESIDUAL_MLP.into(),
                parameters: Default::default(),
            })),
            ..Default::default()
        }
    }

    /// A runtime with one slot whose seed `seed-1` was culled and whose embargo just ended: the
    /// slot is cleaned (RESETTING) and G5 runs at the next safe point.
    fn resetting() -> (Kasmina, std::sync::Arc<quanta::Mock>) {
        let (clock, mock) = quanta::Clock::mock();
        let config = KasminaConfig { auto_advance: false, ..KasminaConfig::default() };
        let k = Kasmina::builder().config(config).clock(clock).build().unwrap();
        k.slot("s", 8).unwrap();
        assert!(k.apply(seed_op(SeedOperation::SeedOpGerminate, "seed-1")).accepted);
        assert!(k.apply(seed_op(SeedOperation::SeedOpCull, "seed-1")).accepted);
        mock.increment(Duration::from_secs(31));
        k.poll();
        assert_eq!(k.get_slot("s").unwrap().stage(), Stage::SeedStageResetting);
        (k, mock)
    }

    fn last_g5(k: &Kasmina) -> leyline::GateEvent {
        k.seed_summaries()[0].gates.last().cloned().unwrap()
    }

    #[test]
    fn g5_passes_on_a_clean_slot() {
        let (k, _) = resetting();
        k.poll();
        assert_eq!(k.get_slot("s").unwrap().stage(), Stage::SeedStageDormant);
        assert!(last_g5(&k).passed);
    }

    #[test]
    fn g5_fails_for_a_leftover_registry_entry_then_recleans() {
        let (k, _) = resetting();
        let var = candle_core::Var::zeros(4, DType::F32, &Device::Cpu).unwrap();
        k.inner.registry.register_seed("seed-1", &[var], kasmina_registry::DEFAULT_LR_GROUP).unwrap();
        k.poll();
        let g5 = last_g5(&k);
        assert_eq!((g5.passed, g5.reason.as_str()), (false, GateReason::ParametersNotDeregistered.as_str()));
        assert_eq!(k.get_slot("s").unwrap().stage(), Stage::SeedStageResetting);
        k.poll();
        assert_eq!(k.get_slot("s").unwrap().stage(), Stage::SeedStageDormant, "cleaned again, then passed");
    }

    #[test]
    fn g5_fails_for_a_leftover_cache_entry() {
        let (k, _) = resetting();
        k.inner.memory.lease("seed-1", "BP001/w8".into());
        k.poll();
        let g5 = last_g5(&k);
        assert_eq!((g5.passed, g5.reason.as_str()), (false, GateReason::CacheEntriesRemaining.as_str()));
    }

    #[test]
    fn g5_fails_for_a_slot_that_still_changes_its_input() {
        let (k, _) = resetting();
        let artifact = crate::blueprint::builtin::artifact("BP003", 8, 0, &Device::Cpu).unwrap();
        let kernel = SeedKernel::instantiate(&artifact, &Device::Cpu).unwrap();
        for (_, v) in kernel.named_vars() {
            v.set(&Tensor::ones(v.shape(), DType::F32, &Device::Cpu).unwrap()).unwrap();
        }
        let cell = k.get_slot("s").unwrap().cell;
        cell.set_route(Route::Seed { kernel: std::sync::Arc::new(kernel), mode: kasmina_isolation::SlotMode::Full });
        k.poll();
        let g5 = last_g5(&k);
        assert_eq!((g5.passed, g5.reason.as_str()), (false, GateReason::SlotOutputChanged.as_str()));
        k.poll();
        assert_eq!(k.get_slot("s").unwrap().stage(), Stage::SeedStageDormant);
    }

    /// Decisions D6: violations cull the seed and open the isolation breaker (health CRITICAL);
    /// with no monitored seed left the breaker still recovers, and health with it.
    #[test]
    fn the_isolation_breaker_closes_again_after_an_isolation_cull_with_no_other_seed() {
        let (clock, mock) = quanta::Clock::mock();
        let config = KasminaConfig { health_window_steps: 2, ..KasminaConfig::default() };
        let k = Kasmina::builder().config(config).clock(clock).build().unwrap();
        let slot = k.slot("s", 8).unwrap();
        assert!(k.apply(seed_op(SeedOperation::SeedOpGerminate, "seed-1")).accepted);
        let mut out = Outbox::default();
        {
            let cell = slot.cell.clone();
            let mut guard = cell.seed.lock();
            let seed = guard.as_mut().unwrap();
            let cx = k.inner.cx("s", "seed-1");
            let fx = seed.on_step(&StepEvidence::default(), &cx);
            k.inner.perform(&cell, seed, fx, None, &cx, &mut out);
            assert_eq!(seed.stage(), Stage::SeedStageTraining);
            for _ in 0..3 {
                k.inner.breakers.failure(BreakerName::Isolation, "isolation_violation", &mut out.events);
                let open = k.inner.breakers.state(BreakerName::Isolation) == CircuitBreakerState::CircuitStateOpen;
                let iso = IsolationEvidence { violation: true, breaker_open: open, ..IsolationEvidence::default() };
                let ev = StepEvidence { isolation: Some(iso), ..StepEvidence::default() };
                let fx = seed.on_step(&ev, &cx);
                k.inner.perform(&cell, seed, fx, None, &cx, &mut out);
            }
            assert_eq!(seed.stage(), Stage::SeedStageEmbargoed);
            assert_eq!(seed.history.cull, Some(crate::CullCause::Isolation));
        }
        assert_eq!(k.health().status(), leyline::HealthStatus::Critical);
        assert_eq!(k.inner.breakers.state(BreakerName::Isolation), CircuitBreakerState::CircuitStateOpen);
        k.poll();
        assert_eq!(k.inner.breakers.state(BreakerName::Isolation), CircuitBreakerState::CircuitStateOpen);
        mock.increment(Duration::from_secs(31));
        let h = Tensor::ones((2, 8), DType::F32, &Device::Cpu).unwrap();
        for _ in 0..3 {
            let grads = slot.forward(&h).unwrap().sum_all().unwrap().backward().unwrap();
            k.on_step(&grads, StepReport::new(1.0)).unwrap();
        }
        assert_eq!(k.inner.breakers.state(BreakerName::Isolation), CircuitBreakerState::CircuitStateClosed);
        assert_ne!(k.health().status(), leyline::HealthStatus::Critical);
    }
}
