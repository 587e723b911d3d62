//! [`Kasmina`]: the seed manager the trainer embeds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use candle_core::{Device, Var};
use candle_nn::VarMap;
use kasmina_registry::ParameterRegistry;
use kasmina_security::{CommandVerifier, KeyRing, VerifierConfig};
use kasmina_telemetry::{HealthInputs, NullSink, Telemetry, TelemetryAssembler, TelemetryConfig};
use leyline::{
    AdaptationCommand, CommandReceipt, MetricPoint, SeedLifecycleStage as Stage, SeedState, SignedCommand,
    SystemHealth, SystemStatePacket, TelemetryEvent, wkt::Struct,
};
use parking_lot::{Mutex, RwLock};

use crate::blueprint::{BlueprintRuntime, builtin};
use crate::cache::KernelCache;
use crate::config::KasminaConfig;
use crate::error::{Error, Result};
use crate::guard::Breakers;
use crate::report::{FossilizedSeed, RuntimeStats, SeedSummary};
use crate::slot::{SeedSlot, SlotCell, SlotState};
use crate::time::WallTime;

/// A command waiting for the next safe point, and where its receipt goes.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) command: AdaptationCommand,
    pub(crate) reply: Option<crossbeam_channel::Sender<CommandReceipt>>,
}

/// A receipt that will arrive once the command has been applied at the next safe point.
#[derive(Debug)]
pub struct Ticket {
    pub(crate) command_id: String,
    pub(crate) rx: crossbeam_channel::Receiver<CommandReceipt>,
}

impl Ticket {
    /// The command's id.
    pub fn command_id(&self) -> &str {
        &self.command_id
    }

    /// Waits for the receipt; `None` when it did not come within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<CommandReceipt> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The receipt if the command has been applied already.
    pub fn try_receipt(&self) -> Option<CommandReceipt> {
        self.rx.try_recv().ok()
    }
}

/// A rollback payload recorded when a seed was culled, and what the cull cost.
#[derive(Debug, Clone)]
pub(crate) struct RollbackRecord {
    pub(crate) payload: Struct,
    pub(crate) elapsed_ms: f64,
}

/// State shared by the whole manager (behind one lock; slots have their own).
#[derive(Debug, Default)]
pub(crate) struct Core {
    pub(crate) step: u64,
    pub(crate) epoch: u32,
    pub(crate) last_val_loss: Option<f64>,
    pub(crate) last_val_acc: Option<f64>,
    pub(crate) last_train_loss: f32,
    pub(crate) rollbacks: BTreeMap<String, RollbackRecord>,
    pub(crate) isolation_cull_step: Option<u64>,
    pub(crate) latency_breach_step: Option<u64>,
    pub(crate) events: Vec<TelemetryEvent>,
    pub(crate) stats: RuntimeStats,
    pub(crate) last_fetch_ms: f64,
    pub(crate) last_hook_ms: f64,
    pub(crate) last_dot_product: f64,
    pub(crate) fossilized: Vec<FossilizedSeed>,
}

pub(crate) struct Inner {
    pub(crate) config: KasminaConfig,
    pub(crate) device: Device,
    pub(crate) clock: quanta::Clock,
    pub(crate) wall: WallTime,
    pub(crate) blueprints: Arc<dyn BlueprintRuntime>,
    pub(crate) verifier: CommandVerifier,
    pub(crate) telemetry: Telemetry,
    pub(crate) assembler: TelemetryAssembler,
    pub(crate) registry: ParameterRegistry,
    pub(crate) kernels: KernelCache,
    pub(crate) breakers: Breakers,
    pub(crate) host_vars: Vec<(String, Var)>,
    pub(crate) slots: RwLock<Vec<Arc<SlotCell>>>,
    pub(crate) core: Mutex<Core>,
    pub(crate) queue: Mutex<VecDeque<Pending>>,
    pub(crate) teacher: Mutex<Option<crate::kd::Teacher>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kasmina")
            .field("device", &self.device)
            .field("slots", &self.slots.read().iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            .finish_non_exhaustive()
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

/// Builds a [`Kasmina`].
#[derive(Debug)]
pub struct KasminaBuilder {
    config: KasminaConfig,
    device: Device,
    keys: Option<KeyRing>,
    verifier_config: Option<VerifierConfig>,
    blueprints: Option<Arc<dyn BlueprintRuntime>>,
    telemetry: Option<Telemetry>,
    host_vars: Vec<(String, Var)>,
    clock: Option<quanta::Clock>,
    wall: Option<WallTime>,
}

impl Kasmina {
    /// A builder with the defaults: CPU, [`KasminaConfig::default`], keys from
    /// `ESPER_LEYLINE_SECRET` (none: every signed command is refused), the built-in blueprints
    /// in a temporary directory, telemetry dropped.
    pub fn builder() -> KasminaBuilder {
        KasminaBuilder {
            config: KasminaConfig::default(),
            device: Device::Cpu,
            keys: None,
            verifier_config: None,
            blueprints: None,
            telemetry: None,
            host_vars: Vec::new(),
            clock: None,
            wall: None,
        }
    }
}

impl KasminaBuilder {
    /// The device seeds live on (CPU by default; CUDA with the `cuda` feature).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Settings.
    pub fn config(mut self, config: KasminaConfig) -> Self {
        self.config = config;
        self
    }

    /// The key ring signed commands are verified with.
    pub fn signing_keys(mut self, keys: KeyRing) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Envelope settings (freshness window, nonce TTL, size limit).
    pub fn verifier_config(mut self, config: VerifierConfig) -> Self {
        self.verifier_config = Some(config);
        self
    }

    /// Where blueprints come from.
    pub fn blueprints(mut self, runtime: impl BlueprintRuntime + 'static) -> Self {
        self.blueprints = Some(Arc::new(runtime));
        self
    }

    /// Where telemetry goes.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// The host model's parameters with their names: registered as the host's (a seed can never
    /// claim one) and watched by every seed's isolation monitor.
    pub fn host_vars(mut self, vars: impl IntoIterator<Item = (String, Var)>) -> Self {
        self.host_vars.extend(vars);
        self.host_vars.sort_by(|a, b| a.0.cmp(&b.0));
        self
    }

    /// The host model's parameters from a candle `VarMap`.
    pub fn host_varmap(self, varmap: &VarMap) -> Self {
        let vars: Vec<(String, Var)> =
            varmap.data().lock().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        self.host_vars(vars)
    }

    /// The monotonic clock (embargo, breakers, nonce TTL); inject `quanta::Clock::mock()` in
    /// tests.
    pub fn clock(mut self, clock: quanta::Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The wall clock (command freshness, timestamps).
    pub fn wall_clock(mut self, wall: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.wall = Some(WallTime::new(wall));
        self
    }

    /// Builds the manager.
    pub fn build(self) -> Result<Kasmina> {
        self.config.validate()?;
        let clock = self.clock.unwrap_or_default();
        let wall = self.wall.unwrap_or_else(WallTime::system);
        let keys = match self.keys {
            Some(k) => k,
            None => KeyRing::from_env()?,
        };
        let verifier_config = self.verifier_config.unwrap_or_else(|| {
            let mut c = VerifierConfig::default();
            c.max_command_bytes = self.config.max_command_bytes;
            c
        });
        let verifier = CommandVerifier::with_config(keys, verifier_config)?
            .with_wall_clock(wall.clone())
            .with_monotonic_clock(clock.clone());
        let blueprints: Arc<dyn BlueprintRuntime> = match self.blueprints {
            Some(b) => b,
            None => {
                let dir = std::env::temp_dir().join(format!("kasmina-blueprints-{}", std::process::id()));
                Arc::new(builtin::write_library(&dir, &[], 0)?)
            }
        };
        let telemetry = match self.telemetry {
            Some(t) => t,
            None => Telemetry::new(NullSink, TelemetryConfig::default())?,
        };
        let registry = ParameterRegistry::new(kasmina_registry::RegistryConfig {
            violation_threshold: self.config.violation_threshold,
        })?;
        if !self.host_vars.is_empty() {
            let vars: Vec<Var> = self.host_vars.iter().map(|(_, v)| v.clone()).collect();
            registry.register_host(&vars)?;
        }
        let kernels = KernelCache::new(&self.config, clock.clone())?;
        let breakers = Breakers::new(clock.clone())?;
        let assembler = TelemetryAssembler::new(wall.clone());
        Ok(Kasmina {
            inner: Arc::new(Inner {
                config: self.config,
                device: self.device,
                clock,
                wall,
                blueprints,
                verifier,
                telemetry,
                assembler,
                registry,
                kernels,
                breakers,
                host_vars: self.host_vars,
                slots: RwLock::new(Vec::new()),
                core: Mutex::new(Core::default()),
                queue: Mutex::new(VecDeque::new()),
                teacher: Mutex::new(None),
            }),
        })
    }
}

impl Kasmina {
    /// Creates a seed slot of activation width `width` (a name may be used once).
    pub fn slot(&self, name: &str, width: usize) -> Result<SeedSlot> {
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
            width,
            depth: slots.len() as u32 + 1,
            state: Mutex::new(SlotState::default()),
        });
        slots.push(cell.clone());
        Ok(SeedSlot { cell })
    }

    /// The slot named `name`.
    pub fn get_slot(&self, name: &str) -> Result<SeedSlot> {
        self.inner
            .slots
            .read()
            .iter()
            .find(|s| s.name == name)
            .map(|cell| SeedSlot { cell: cell.clone() })
            .ok_or_else(|| Error::UnknownSlot(name.to_owned()))
    }

    /// Every slot, in creation order.
    pub fn slots(&self) -> Vec<SeedSlot> {
        self.inner.slots.read().iter().map(|cell| SeedSlot { cell: cell.clone() }).collect()
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
        self.inner.core.lock().stats
    }

    /// The rollback payload recorded when `seed_id` was last culled.
    pub fn rollback_payload(&self, seed_id: &str) -> Option<Struct> {
        self.inner.core.lock().rollbacks.get(seed_id).map(|r| r.payload.clone())
    }

    /// Every rollback payload recorded, with the time each cull took in ms.
    pub fn rollback_payloads(&self) -> Vec<(String, Struct, f64)> {
        self.inner.core.lock().rollbacks.iter().map(|(k, r)| (k.clone(), r.payload.clone(), r.elapsed_ms)).collect()
    }

    /// Slots whose seed is in TRAINING and needs a shadow seed loss for this step (see
    /// [`with_shadow`](Self::with_shadow)).
    pub fn shadow_slots(&self) -> Vec<String> {
        self.inner
            .slots
            .read()
            .iter()
            .filter(|cell| {
                cell.state
                    .lock()
                    .seed
                    .as_ref()
                    .is_some_and(|s| s.stage() == Stage::SeedStageTraining && s.pause.is_none())
            })
            .map(|cell| cell.name.clone())
            .collect()
    }

    /// Runs `f` (a forward pass of the model) with slot `slot` in shadow mode: the slot outputs
    /// its seed branch, detached. Use the result's loss as that slot's shadow seed loss.
    pub fn with_shadow<R>(&self, slot: &str, f: impl FnOnce() -> R) -> Result<R> {
        let cell = self.get_slot(slot)?.cell;
        cell.state.lock().shadow = true;
        let out = f();
        cell.state.lock().shadow = false;
        Ok(out)
    }

    /// One `SeedState` per slot (a slot never germinated reports an empty seed id in DORMANT; a
    /// slot whose seed was culled and reset keeps that seed's id, in DORMANT).
    pub fn export_seed_states(&self) -> Vec<SeedState> {
        let epoch = self.inner.core.lock().epoch;
        self.inner.slots.read().iter().map(|cell| crate::export::seed_state(cell, epoch)).collect()
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
            training_metrics: BTreeMap::new(),
            seed_states: seeds,
            packet_id: format!("kasmina-state-{}", core.step),
            global_step: core.step,
            training_loss: core.last_train_loss,
            source_subsystem: "kasmina".into(),
            training_run_id: String::new(),
            experiment_name: String::new(),
        }
    }

    /// Summaries of every seed now in a slot.
    pub fn seed_summaries(&self) -> Vec<SeedSummary> {
        self.inner
            .slots
            .read()
            .iter()
            .filter_map(|cell| {
                let st = cell.state.lock();
                st.seed.as_ref().map(|s| SeedSummary {
                    seed_id: s.id.clone(),
                    slot: cell.name.clone(),
                    blueprint_id: s.blueprint_id.clone(),
                    kernel_blueprint_id: s.kernel_blueprint_id.clone(),
                    stage: s.stage(),
                    stages: s.stages.clone(),
                    gates: s.gate_log.clone(),
                    isolation_checks: s.isolation_checks,
                    isolation_violations: s.isolation_violations,
                    cull_reason: s.cull_reason.clone(),
                })
            })
            .collect()
    }

    /// The system's health now (decisions D9).
    pub fn health(&self) -> SystemHealth {
        let inputs = self.health_inputs();
        kasmina_telemetry::system_health(&inputs, leyline::MessagePriority::Normal)
    }

    pub(crate) fn health_inputs(&self) -> HealthInputs {
        let core = self.inner.core.lock();
        let window = self.inner.config.health_window_steps;
        let recent = |s: Option<u64>| s.is_some_and(|s| core.step.saturating_sub(s) <= window);
        let mut inputs = HealthInputs {
            isolation_cull_in_window: recent(core.isolation_cull_step),
            isolation_breaker_open: self.inner.breakers.isolation_open(),
            any_breaker_open: self.inner.breakers.any_open(),
            latency_breach: recent(core.latency_breach_step),
            ..HealthInputs::default()
        };
        drop(core);
        for cell in self.inner.slots.read().iter() {
            let st = cell.state.lock();
            if let Some(s) = st.seed.as_ref().filter(|s| s.is_live()) {
                inputs.live_seeds += 1;
                if s.stage().is_monitored() || s.stage() == Stage::SeedStageGerminated {
                    inputs.violations += u64::from(s.isolation_violations + s.update_violations);
                    inputs.fallback_used |= s.fallback_used;
                }
            }
        }
        inputs
    }

    /// Records a telemetry event for the next packet.
    pub(crate) fn event(&self, event: TelemetryEvent) {
        self.inner.core.lock().events.push(event);
    }

    /// Assembles and emits a packet with the pending events (and the metrics when `metrics`).
    pub(crate) fn flush_events(&self, with_metrics: bool) {
        let events = std::mem::take(&mut self.inner.core.lock().events);
        if events.is_empty() && !with_metrics {
            return;
        }
        let metrics: Vec<MetricPoint> = if with_metrics { crate::export::metrics(self) } else { Vec::new() };
        let health = self.health_inputs();
        let packet = self.inner.assembler.assemble(&metrics, &events, &health);
        self.inner.telemetry.emit(packet);
    }

    /// Emits a packet with the current metrics and pending events, and waits until the telemetry
    /// worker delivered what is queued.
    pub fn flush_telemetry(&self) -> Result<()> {
        self.flush_events(true);
        self.inner.telemetry.flush()?;
        Ok(())
    }

    // ------------------------------------------------------------------ commands

    /// Verifies a signed command now and queues it for the next safe point. A rejected command
    /// is answered at once (`Err` with its receipt) and changes nothing.
    pub fn submit(&self, signed: &SignedCommand) -> std::result::Result<Ticket, CommandReceipt> {
        match self.inner.verifier.verify_signed(signed) {
            Ok(verified) => Ok(self.enqueue(verified.into_command())),
            Err(rejection) => Err(self.reject_envelope(&rejection)),
        }
    }

    /// [`submit`](Self::submit) for an encoded `SignedCommand`.
    pub fn submit_bytes(&self, bytes: &[u8]) -> std::result::Result<Ticket, CommandReceipt> {
        match self.inner.verifier.verify_envelope_bytes(bytes) {
            Ok(verified) => Ok(self.enqueue(verified.into_command())),
            Err(rejection) => Err(self.reject_envelope(&rejection)),
        }
    }

    /// Queues a trusted in-process command (the host trainer's own path; no envelope) for the
    /// next safe point.
    pub fn enqueue(&self, command: AdaptationCommand) -> Ticket {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let command_id = command.command_id.clone();
        self.inner.queue.lock().push_back(Pending { command, reply: Some(tx) });
        Ticket { command_id, rx }
    }

    /// Applies a trusted in-process command now. Call it between steps (it is a safe point):
    /// never from inside a forward or backward.
    pub fn apply(&self, command: AdaptationCommand) -> CommandReceipt {
        let receipt = crate::commands::apply(self, command);
        self.flush_events(false);
        receipt
    }

    /// Applies every queued command (also done at the start of `on_step` and `on_epoch`).
    pub fn safe_point(&self) -> u32 {
        let mut applied = 0;
        loop {
            let next = self.inner.queue.lock().pop_front();
            let Some(pending) = next else { break };
            let receipt = crate::commands::apply(self, pending.command);
            if let Some(reply) = pending.reply {
                // The submitter may have stopped waiting; the receipt is then dropped.
                let _ = reply.try_send(receipt);
            }
            applied += 1;
        }
        applied
    }

    fn reject_envelope(&self, rejection: &kasmina_security::Rejection) -> CommandReceipt {
        let mut attrs = vec![("reason".to_owned(), rejection.reason().to_owned())];
        if let Some(id) = rejection.command_id() {
            attrs.push(("command_id".to_owned(), id.to_owned()));
        }
        self.event(kasmina_telemetry::names::COMMAND_REJECTED.event_with(attrs));
        self.inner.core.lock().stats.commands_rejected += 1;
        self.flush_events(false);
        CommandReceipt {
            command_id: rejection.command_id().unwrap_or_default().to_owned(),
            accepted: false,
            reason: rejection.reason().to_owned(),
            seed_id: String::new(),
            stage: Stage::SeedStageUnknown as i32,
        }
    }

    /// Checks that `params` may be updated by `seed_id`'s optimiser (the registry's ownership
    /// rules). A violation is counted; at the threshold the seed is culled at the next safe point.
    pub fn validate_update(
        &self,
        seed_id: &str,
        params: &[Var],
    ) -> std::result::Result<(), kasmina_registry::Violation> {
        let result = self.inner.registry.validate_update(seed_id, params);
        if let Err(v) = &result {
            self.event(crate::events::parameter_violation(v));
        }
        result
    }

    /// Registers the host's parameters (if not given to the builder).
    pub fn register_host_vars(&self, vars: &[Var]) -> Result<usize> {
        Ok(self.inner.registry.register_host(vars)?)
    }

    /// Wall-clock now, as the runtime sees it.
    pub(crate) fn now_wall(&self) -> SystemTime {
        self.inner.wall.now()
    }
}
