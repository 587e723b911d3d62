//! [`Kasmina`]: the handle a trainer embeds. It owns the locks and the shared state; each
//! method is a thin entry into the modules that do the work (`drive` for safe points,
//! `command` for requests, `attach` for germination, `publish` for telemetry).

use std::sync::Arc;
use std::time::Duration;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use kasmina_memory::TeacherBudgetReport;
use kasmina_security::{KeyRing, Rejection, VerifiedCommand};
use kasmina_telemetry::{Telemetry, names};
use leyline::{
    AdaptationCommand, CommandReceipt, CommandTransport, SeedLifecycleStage as Stage, SeedState, SignedCommand,
    SystemHealth, SystemStatePacket, TelemetryLevel, wkt::Struct,
};

use crate::Layout;
use crate::blueprint::BlueprintRuntime;
use crate::config::KasminaConfig;
use crate::error::{Error, Result};
use crate::kd::{KD_TEMPERATURE, KD_WEIGHT, Teacher, kd_loss};
use crate::memory::TeacherEntry;
use crate::receipt::{Origin, Refusal, Verdict, receipt};
use crate::report::{EpochOutcome, EpochReport, Gauges, RuntimeStats, SeedSummary, StepOutcome, StepReport};
use crate::slot::{SeedSlot, SlotCell};
use crate::state::{Inner, Outbox, Pending};

/// A queued command's receipt: `queued` now, final once it has been applied at a safe point.
#[derive(Debug)]
pub struct Ticket {
    queued: CommandReceipt,
    rx: crossbeam_channel::Receiver<CommandReceipt>,
}

impl Ticket {
    /// The command's id.
    pub fn command_id(&self) -> &str {
        &self.queued.command_id
    }

    /// The receipt given when the command was verified and queued (`accepted`, `queued`).
    pub fn queued(&self) -> &CommandReceipt {
        &self.queued
    }

    /// Waits for the final receipt; `None` when it did not come within `timeout` (the command is
    /// still queued; [`Kasmina::receipt`] finds its final receipt later).
    pub fn wait(&self, timeout: Duration) -> Option<CommandReceipt> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The final receipt if the command has been applied already.
    pub fn try_receipt(&self) -> Option<CommandReceipt> {
        self.rx.try_recv().ok()
    }
}

/// Kasmina's seed manager: slots, seeds, commands and the training-driven lifecycle.
///
/// A cheap handle (`Clone`, `Send + Sync`): the training thread drives it with
/// [`on_step`](Self::on_step) and [`on_epoch`](Self::on_epoch) (the safe points where commands
/// are applied), while other threads (a gRPC server) may [`submit`](Self::submit) signed
/// commands and read states at any time.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use kasmina_runtime::{Kasmina, StepReport};
///
/// let kasmina = Kasmina::builder().device(Device::Cpu).build()?;
/// let slot = kasmina.slot("layer1", 8)?;
/// let h = Tensor::ones((4, 8), candle_core::DType::F32, &Device::Cpu)?;
/// // Without a seed the slot is the identity.
/// assert_eq!(slot.forward(&h)?.to_vec2::<f32>()?, h.to_vec2::<f32>()?);
/// let loss = h.sum_all()?;
/// let grads = loss.backward()?;
/// kasmina.on_step(&grads, StepReport::new(1.0))?;
/// assert_eq!(kasmina.export_seed_states().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Kasmina {
    pub(crate) inner: Arc<Inner>,
}

impl Kasmina {
    /// Creates a dense seed slot (activations `[batch, width]`; a name may be used once).
    pub fn slot(&self, name: &str, width: usize) -> Result<SeedSlot> {
        self.slot_with_layout(name, width, Layout::Dense)
    }

    /// Creates a seed slot for activations of `layout`: `width` is the feature size of a dense
    /// (`[batch, width]`) or sequence (`[batch, time, width]`) activation, the channel count of
    /// an image one (`[batch, width, height, width_px]`). Every forward is checked against it,
    /// and a kernel must produce a delta of the same shape on a probe input before gate G0 lets
    /// it in.
    pub fn slot_with_layout(&self, name: &str, width: usize, layout: Layout) -> Result<SeedSlot> {
        if name.trim().is_empty() {
            return Err(Error::InvalidConfig { field: "slot", reason: "a slot needs a name".into() });
        }
        if width == 0 {
            return Err(Error::InvalidConfig { field: "slot", reason: "width must be at least 1".into() });
        }
        let mut slots = self.inner.slots.write();
        if slots.iter().any(|s| s.name == name) {
            return Err(Error::DuplicateSlot(name.to_owned()));
        }
        let cell = Arc::new(SlotCell {
            name: name.to_owned(),
            layout,
            width,
            depth: slots.len() as u32 + 1,
            seed: Default::default(),
            fwd: Default::default(),
            evaluating: self.inner.evaluating.clone(),
        });
        slots.push(cell.clone());
        Ok(SeedSlot { cell })
    }

    /// The slot named `name`.
    pub fn get_slot(&self, name: &str) -> Result<SeedSlot> {
        self.inner
            .cells()
            .into_iter()
            .find(|s| s.name == name)
            .map(|cell| SeedSlot { cell })
            .ok_or_else(|| Error::UnknownSlot(name.to_owned()))
    }

    /// Every slot, in creation order.
    pub fn slots(&self) -> Vec<SeedSlot> {
        self.inner.cells().into_iter().map(|cell| SeedSlot { cell }).collect()
    }

    /// The device seeds live on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The settings.
    pub fn config(&self) -> &KasminaConfig {
        &self.inner.config
    }

    /// The telemetry handle (subscribe, stats, flush).
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// The blueprint source.
    pub fn blueprints(&self) -> &Arc<dyn BlueprintRuntime> {
        &self.inner.blueprints
    }

    /// The key ring (add or remove keys at run time for rotation).
    pub fn keys(&self) -> &KeyRing {
        self.inner.verifier.keys()
    }

    /// Counters over the runtime's life.
    pub fn stats(&self) -> RuntimeStats {
        let mut stats = self.inner.core.lock().stats;
        stats.device_reads = self.inner.device_reads.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }

    /// The size of every traffic-driven store (nonce ledger, command queue, caches, receipts,
    /// telemetry queues) now; flat under steady load when nothing leaks.
    pub fn gauges(&self) -> Gauges {
        let memory = self.inner.memory.stats();
        Gauges {
            nonces_held: self.inner.verifier.ledger().len(),
            commands_queued: self.inner.queue.lock().len(),
            kernel_cache_entries: memory.kernel.size,
            kernel_cache_bytes: memory.kernel.weighted_size_bytes,
            descriptor_cache_entries: memory.blueprint.size,
            receipts_held: memory.telemetry.size,
            telemetry: self.inner.telemetry.stats(),
        }
    }

    /// The rollback payload recorded when `seed_id` was last culled.
    pub fn rollback_payload(&self, seed_id: &str) -> Option<Struct> {
        self.inner.core.lock().rollbacks.get(seed_id).map(|r| r.payload.clone())
    }

    /// Every rollback payload recorded, with the time each cull took in ms.
    pub fn rollback_payloads(&self) -> Vec<(String, Struct, f64)> {
        self.inner.core.lock().rollbacks.iter().map(|(k, r)| (k.clone(), r.payload.clone(), r.elapsed_ms)).collect()
    }

    // ------------------------------------------------------------------ training

    /// The safe point after a training step: applies queued commands, checks parameter
    /// ownership, runs the isolation probe, feeds the gates and advances or culls seeds, steps
    /// every training seed's optimiser with `grads`, times embargoes. Call it after the host's
    /// backward (and the host optimiser's step), with the same `GradStore`.
    ///
    /// Everything it needs from the device (every seed's checks, probes and norms) is read in one
    /// transfer ([`RuntimeStats::device_reads`]); nothing is read inside a slot forward.
    ///
    /// A non-finite loss is refused with [`Error::InvalidReport`] (and an ERROR event); no seed
    /// changes. A failed device read (a lost device) is [`Error::Candle`]: the commands queued
    /// before it were applied, and no seed's evidence of this step was used.
    pub fn on_step(&self, grads: &GradStore, report: StepReport) -> Result<StepOutcome> {
        self.inner.step(grads, &report)
    }

    /// The safe point at an epoch boundary: applies queued commands, records the validation
    /// metrics, ages seeds, ends probation (G4), runs the memory GC.
    pub fn on_epoch(&self, report: EpochReport) -> Result<EpochOutcome> {
        self.inner.epoch(&report)
    }

    /// Checks embargoes and resets without a training step (a serving loop that idles calls
    /// this).
    pub fn poll(&self) {
        self.inner.poll();
    }

    /// Slots whose seed is in TRAINING and needs a shadow seed loss for this step (see
    /// [`with_shadow`](Self::with_shadow)).
    pub fn shadow_slots(&self) -> Vec<String> {
        self.inner
            .cells()
            .iter()
            .filter(|cell| {
                cell.seed.lock().as_ref().is_some_and(|s| s.stage() == Stage::SeedStageTraining && !s.is_paused())
            })
            .map(|cell| cell.name.clone())
            .collect()
    }

    /// Runs `f` (a forward pass of the model) with slot `slot` in shadow mode: the slot outputs
    /// its seed's stand-alone output `sg(h) + delta(sg(h))` (with the seed's graph; no gradient
    /// reaches the layers upstream of the slot), while every other slot forwards normally (a
    /// non-finite seed bypassed) and records nothing. Report the result's loss as that slot's
    /// shadow seed loss, as a tensor ([`StepReport::with_shadow_loss_tensor`]) in
    /// [`crate::TrainingMode::Shadow`], where the runtime trains the seed on it.
    pub fn with_shadow<R>(&self, slot: &str, f: impl FnOnce() -> R) -> Result<R> {
        let cell = self.get_slot(slot)?.cell;
        Ok(cell.shadowed(f))
    }

    /// Measures the counterfactual contribution of every seed in SHADOWING or PROBATIONARY
    /// (decisions D2): `eval` — the trainer's validation, returning the loss of each batch, on
    /// the same batches in the same order every call, without training — runs once with the
    /// seed as it is and once with its slot bypassed. Gates G3 and G4 read the result; without
    /// one they refuse with `counterfactual_missing` and do not cull. Call it at least once per
    /// shadowing and probation window (e.g. every epoch, before [`on_epoch`](Self::on_epoch)).
    ///
    /// An `eval` error is [`Error::Evaluation`] (and an ERROR event); no seed changes.
    pub fn evaluate_counterfactual(
        &self,
        mut eval: impl FnMut() -> candle_core::Result<Vec<f32>>,
    ) -> Result<Vec<crate::CounterfactualReport>> {
        self.inner.counterfactual(&mut eval)
    }

    // ------------------------------------------------------------------ commands

    /// Verifies a signed command now and queues it for the next safe point (in-process
    /// transport). A rejected command is answered at once (`Err` with its receipt) and changes
    /// nothing.
    pub fn submit(&self, signed: &SignedCommand) -> std::result::Result<Ticket, CommandReceipt> {
        self.submit_via(signed, CommandTransport::InProcess)
    }

    /// [`submit`](Self::submit), naming the transport the command came by (for its receipt).
    pub fn submit_via(
        &self,
        signed: &SignedCommand,
        transport: CommandTransport,
    ) -> std::result::Result<Ticket, CommandReceipt> {
        let verified = self.inner.verifier.verify_signed(signed);
        self.admit(verified, transport)
    }

    /// [`submit`](Self::submit) for an encoded `SignedCommand`.
    pub fn submit_bytes(&self, bytes: &[u8]) -> std::result::Result<Ticket, CommandReceipt> {
        self.submit_bytes_via(bytes, CommandTransport::InProcess)
    }

    /// [`submit_bytes`](Self::submit_bytes), naming the transport.
    pub fn submit_bytes_via(
        &self,
        bytes: &[u8],
        transport: CommandTransport,
    ) -> std::result::Result<Ticket, CommandReceipt> {
        let verified = self.inner.verifier.verify_envelope_bytes(bytes);
        self.admit(verified, transport)
    }

    /// Verifies the command of an Oona bus entry — its `payload` field (an encoded
    /// `BusEnvelope`) and its `signature` field — and queues it for the next safe point
    /// (transport `OONA`, form `BUS`; decisions D12). A rejected entry is answered at once and
    /// changes nothing; a redelivered one is `nonce_replayed`.
    pub fn submit_bus_entry(&self, envelope: &[u8], signature: &str) -> std::result::Result<Ticket, CommandReceipt> {
        let verified = self.inner.verifier.verify_bus_entry(envelope, signature);
        self.admit(verified, CommandTransport::Oona)
    }

    fn admit(
        &self,
        verified: std::result::Result<VerifiedCommand, Rejection>,
        transport: CommandTransport,
    ) -> std::result::Result<Ticket, CommandReceipt> {
        match verified {
            Ok(v) => {
                let (command, key_id, form) = v.into_parts();
                Ok(self.queue(command, Origin::verified(key_id, form, transport)))
            }
            Err(rejection) => Err(self.reject_envelope(&rejection, transport)),
        }
    }

    /// Queues a trusted in-process command (the host trainer's own path; no envelope) for the
    /// next safe point.
    pub fn enqueue(&self, command: AdaptationCommand) -> Ticket {
        self.queue(command, Origin::trusted())
    }

    fn queue(&self, command: AdaptationCommand, origin: Origin) -> Ticket {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let queued = receipt(
            &command.command_id,
            Verdict::Queued,
            command.target_seed_id.trim(),
            Stage::SeedStageUnknown,
            &origin,
        );
        self.inner.memory.record_receipt(&queued);
        let deadline = (command.execution_deadline_ms > 0).then(|| {
            self.inner.timer.deadline("command", Duration::from_millis(u64::from(command.execution_deadline_ms)))
        });
        self.inner.queue.lock().push_back(Pending { command, origin, deadline, reply: Some(tx) });
        Ticket { queued, rx }
    }

    /// Applies a trusted in-process command now. Call it between steps (it is a safe point):
    /// never from inside a forward or backward.
    pub fn apply(&self, command: AdaptationCommand) -> CommandReceipt {
        let mut out = Outbox::default();
        let pending = Pending { command, origin: Origin::trusted(), deadline: None, reply: None };
        let receipt = self.inner.apply_pending(pending, &mut out);
        self.inner.publish(out.events, false);
        receipt
    }

    /// Applies every queued command now (also done at the start of `on_step` and `on_epoch`).
    pub fn safe_point(&self) -> u32 {
        let mut out = Outbox::default();
        let applied = self.inner.safe_point(&mut out);
        self.inner.publish(out.events, false);
        applied
    }

    /// The latest receipt of a command by id: `queued` until its safe point, then its final
    /// receipt (kept for [`KasminaConfig::receipt_ttl`]). Envelope rejections are kept too.
    pub fn receipt(&self, command_id: &str) -> Option<CommandReceipt> {
        self.inner.memory.receipt(command_id)
    }

    fn reject_envelope(&self, rejection: &Rejection, transport: CommandTransport) -> CommandReceipt {
        let origin = Origin::verified("", leyline::CommandForm::Unspecified, transport);
        let command_id = rejection.command_id().unwrap_or_default();
        let r = receipt(
            command_id,
            Verdict::Refused(Refusal::Envelope(rejection.reason())),
            "",
            Stage::SeedStageUnknown,
            &origin,
        );
        let mut attrs = vec![("reason".to_owned(), rejection.reason().to_owned())];
        if !command_id.is_empty() {
            attrs.push(("command_id".to_owned(), command_id.to_owned()));
        }
        self.inner.core.lock().stats.commands_rejected += 1;
        // A replayed command's receipt stays the one of its first, accepted delivery — also when
        // the replay comes after the freshness window (`stale_command`): a refused delivery never
        // replaces the receipt of one that passed the verifier.
        let verified_before =
            self.inner.memory.receipt(command_id).is_some_and(|earlier| {
                earlier.provenance.is_some_and(|p| p.form() != leyline::CommandForm::Unspecified)
            });
        if rejection.reason() != "nonce_replayed" && !verified_before {
            self.inner.memory.record_receipt(&r);
        }
        let (publish, suppressed) = self.inner.rejections.lock().admit(self.inner.clock.now());
        let mut events = Vec::new();
        if let Some(n) = suppressed {
            events.push(names::COMMAND_REJECTED.event_at(
                TelemetryLevel::Warning,
                [("reason", "rate_limited".to_owned()), ("suppressed", n.to_string())],
            ));
        }
        if publish {
            events.push(names::COMMAND_REJECTED.event_with(attrs));
        }
        if !events.is_empty() {
            self.inner.publish(events, false);
        }
        r
    }

    /// Checks that `params` may be updated by `seed_id`'s optimiser (the registry's ownership
    /// rules). A violation is counted and published.
    pub fn validate_update(
        &self,
        seed_id: &str,
        params: &[Var],
    ) -> std::result::Result<(), kasmina_registry::Violation> {
        let result = self.inner.registry.validate_update(seed_id, params);
        if let Err(v) = &result {
            self.inner.publish(vec![crate::events::parameter_violation(v)], false);
        }
        result
    }

    /// Registers the host's parameters (if not given to the builder).
    pub fn register_host_vars(&self, vars: &[Var]) -> Result<usize> {
        Ok(self.inner.registry.register_host(vars)?)
    }

    // ------------------------------------------------------------------ knowledge distillation

    /// Registers a teacher: its parameters are fenced in the registry (never claimable or
    /// updatable by a seed), its size is checked against the teacher budget (7 GB by default;
    /// over budget is reported, not refused), and KD becomes available. Event
    /// `teacher_registered` (WARNING when over budget).
    pub fn register_teacher(&self, name: &str, vars: &[Var]) -> Result<TeacherBudgetReport> {
        self.inner.registry.register_teacher(vars)?;
        let bytes: u64 = vars.iter().map(|v| (v.elem_count() * v.dtype().size_in_bytes()) as u64).sum();
        let report = self.inner.memory.governor().register_teacher(TeacherEntry, bytes);
        let level = if report.is_over_budget() { TelemetryLevel::Warning } else { TelemetryLevel::Info };
        let event = names::TEACHER_REGISTERED.event_at(
            level,
            [
                ("teacher", name.to_owned()),
                ("memory_gb", format!("{:.2}", bytes as f64 / 1e9)),
                ("budget_gb", format!("{:.2}", report.budget_bytes as f64 / 1e9)),
            ],
        );
        *self.inner.teacher.lock() = Some(Teacher { name: name.to_owned(), vars: vars.to_vec(), bytes });
        self.inner.publish(vec![event], false);
        Ok(report)
    }

    /// Whether a teacher is registered (and KD therefore possible).
    pub fn has_teacher(&self) -> bool {
        self.inner.teacher.lock().is_some()
    }

    /// The KD term for this batch, or `None` when KD is off (no teacher, or after an emergency
    /// cleanup that released it).
    pub fn kd_loss(&self, student_logits: &Tensor, teacher_logits: &Tensor) -> Result<Option<Tensor>> {
        if !self.has_teacher() {
            return Ok(None);
        }
        kd_loss(student_logits, teacher_logits, KD_TEMPERATURE, KD_WEIGHT).map(Some)
    }

    // ------------------------------------------------------------------ state out

    /// One `SeedState` per slot (a slot never germinated reports an empty seed id in DORMANT; a
    /// slot whose seed was culled and reset keeps that seed's id, in DORMANT).
    pub fn export_seed_states(&self) -> Vec<SeedState> {
        self.inner.cells().iter().map(|cell| crate::export::seed_state(cell)).collect()
    }

    /// A `SystemStatePacket` with every seed's state and the last reported metrics.
    pub fn system_state_packet(&self) -> SystemStatePacket {
        let seeds = self.export_seed_states();
        let core = self.inner.core.lock();
        let now = self.inner.wall.now();
        SystemStatePacket {
            version: leyline::constants::LEYLINE_VERSION,
            current_epoch: core.epoch,
            validation_accuracy: core.last_val_acc.unwrap_or(0.0) as f32,
            validation_loss: core.last_val_loss.unwrap_or(0.0) as f32,
            timestamp_ns: now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0),
            hardware_context: Some(crate::export::hardware(&self.inner.device)),
            seed_states: seeds,
            packet_id: format!("kasmina-state-{}", core.step),
            global_step: core.step,
            training_loss: core.last_train_loss,
            source_subsystem: "kasmina".into(),
            ..SystemStatePacket::default()
        }
    }

    /// A summary of every seed now in a slot.
    pub fn seed_summaries(&self) -> Vec<SeedSummary> {
        self.inner
            .cells()
            .iter()
            .filter_map(|cell| {
                let guard = cell.seed.lock();
                guard.as_ref().map(|s| SeedSummary {
                    seed_id: s.id.clone(),
                    slot: cell.name.clone(),
                    blueprint_id: s.blueprint_id.clone(),
                    kernel_blueprint_id: s.history.kernel_blueprint_id.clone(),
                    stage: s.stage(),
                    stages: s.history.stages.clone(),
                    gates: s.history.gates.clone(),
                    isolation_checks: s.history.isolation_checks,
                    isolation_violations: s.history.isolation_violations,
                    cull_reason: s.history.cull,
                    counterfactual: s
                        .live()
                        .and_then(|l| l.phase.contribution())
                        .and_then(|c| c.counterfactual)
                        .map(|c| (c.mean, c.std_error, c.batches)),
                    shadow: s.live().and_then(|l| l.phase.shadow()).and_then(|sh| sh.means()),
                })
            })
            .collect()
    }

    /// The system's health now (decisions D9).
    pub fn health(&self) -> SystemHealth {
        kasmina_telemetry::system_health(&self.inner.health_inputs(), leyline::MessagePriority::Normal)
    }

    /// Emits a packet with the current metrics, and waits until the telemetry worker delivered
    /// what is queued.
    pub fn flush_telemetry(&self) -> Result<()> {
        self.inner.publish(Vec::new(), true);
        self.inner.telemetry.flush()?;
        Ok(())
    }
}
