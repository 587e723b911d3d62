//! The runtime's shared state, owned by the [`crate::Kasmina`] handle: settings, the composed
//! domain services, the slots, the command queue and the counters. Everything that reads or
//! changes it lives in the modules above this one (`perform`, `publish`, `attach`, `command`,
//! `drive`); this module only defines it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Var};
use kasmina_registry::ParameterRegistry;
use kasmina_safety::{Deadline, MonotonicTimer, PauseQuota};
use kasmina_security::CommandVerifier;
use kasmina_telemetry::{Telemetry, TelemetryAssembler};
use leyline::{AdaptationCommand, CommandReceipt, SeedLifecycleStage as Stage, TelemetryEvent, wkt::Struct};
use parking_lot::{Mutex, RwLock};

use crate::blueprint::BlueprintRuntime;
use crate::breakers::Breakers;
use crate::clock::Wall;
use crate::config::KasminaConfig;
use crate::kd::Teacher;
use crate::memory::Memory;
use crate::receipt::Origin;
use crate::report::{FossilizedSeed, RuntimeStats};
use crate::seed::evidence::Cx;
use crate::slot::SlotCell;

/// A verified command waiting for the next safe point, and where its receipt goes.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) command: AdaptationCommand,
    pub(crate) origin: Origin,
    /// `execution_deadline_ms`, started when the command was verified.
    pub(crate) deadline: Option<Deadline>,
    pub(crate) reply: Option<crossbeam_channel::Sender<CommandReceipt>>,
}

/// A rollback payload recorded when a seed was culled, and what the cull cost.
#[derive(Debug, Clone)]
pub(crate) struct RollbackRecord {
    pub(crate) payload: Struct,
    pub(crate) elapsed_ms: f64,
}

/// Counters and last values shared by the whole runtime (one lock, taken briefly).
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
    pub(crate) stats: RuntimeStats,
    pub(crate) last_fetch_ms: f64,
    pub(crate) last_hook_ms: f64,
    pub(crate) last_dot_product: f64,
    /// Events produced after a packet was assembled (the flush breaker's own), for the next.
    pub(crate) deferred: Vec<TelemetryEvent>,
    /// Per seed, the stages whose `seed_state` event reached the telemetry pipeline (G3).
    pub(crate) emitted: BTreeMap<String, BTreeSet<Stage>>,
}

/// What a safe point produced for telemetry and for the trainer.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) events: Vec<TelemetryEvent>,
    pub(crate) fossilized: Vec<FossilizedSeed>,
}

pub(crate) struct Inner {
    pub(crate) config: KasminaConfig,
    pub(crate) device: Device,
    pub(crate) clock: quanta::Clock,
    pub(crate) timer: MonotonicTimer,
    pub(crate) wall: Wall,
    pub(crate) blueprints: Arc<dyn BlueprintRuntime>,
    /// The built-in library the builder wrote when none was given (removed on drop).
    pub(crate) _blueprint_dir: Option<tempfile::TempDir>,
    pub(crate) verifier: CommandVerifier,
    pub(crate) telemetry: Telemetry,
    pub(crate) assembler: TelemetryAssembler,
    pub(crate) registry: ParameterRegistry,
    pub(crate) memory: Memory,
    pub(crate) breakers: Breakers,
    pub(crate) pause_quota: PauseQuota,
    pub(crate) host_vars: Vec<(String, Var)>,
    pub(crate) slots: RwLock<Vec<Arc<SlotCell>>>,
    pub(crate) evaluating: Arc<AtomicBool>,
    pub(crate) core: Mutex<Core>,
    /// Device-to-host transfers made by the runtime ([`crate::readout`]).
    pub(crate) device_reads: std::sync::atomic::AtomicU64,
    pub(crate) queue: Mutex<VecDeque<Pending>>,
    pub(crate) teacher: Mutex<Option<Teacher>>,
    pub(crate) rejections: Mutex<RejectionWindow>,
}

/// Rate limit of the events of rejected commands: at most [`REJECTION_EVENTS_PER_SECOND`] are
/// published one by one each second; the rest are counted and summarised in one event when the
/// second is over, and health reports a flood for [`FLOOD_HOLD`]. A flood of bad commands cannot
/// amplify into a flood of telemetry.
#[derive(Debug, Default)]
pub(crate) struct RejectionWindow {
    start: Option<quanta::Instant>,
    published: u32,
    suppressed: u64,
    flood_until: Option<quanta::Instant>,
}

/// Rejected-command events published one by one per second.
pub(crate) const REJECTION_EVENTS_PER_SECOND: u32 = 20;
/// How long health says DEGRADED (`command_flood`) after rejections were suppressed.
pub(crate) const FLOOD_HOLD: std::time::Duration = std::time::Duration::from_secs(10);

impl RejectionWindow {
    /// Admits one rejection at `now`: whether to publish its own event, and the number of
    /// rejections suppressed in the window that just ended (to summarise), if any.
    pub(crate) fn admit(&mut self, now: quanta::Instant) -> (bool, Option<u64>) {
        let second = std::time::Duration::from_secs(1);
        let mut summary = None;
        if self.start.is_none_or(|s| now.duration_since(s) >= second) {
            if self.suppressed > 0 {
                summary = Some(self.suppressed);
            }
            *self = Self { start: Some(now), flood_until: self.flood_until, ..Self::default() };
        }
        if self.published < REJECTION_EVENTS_PER_SECOND {
            self.published += 1;
            return (true, summary);
        }
        self.suppressed += 1;
        self.flood_until = Some(now + FLOOD_HOLD);
        (false, summary)
    }

    pub(crate) fn flooding(&self, now: quanta::Instant) -> bool {
        self.flood_until.is_some_and(|t| now < t)
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kasmina")
            .field("device", &self.device)
            .field("slots", &self.slots.read().iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// The context a seed machine reads at this safe point.
    pub(crate) fn cx<'a>(&'a self, slot: &'a str, seed_id: &str) -> Cx<'a> {
        let core = self.core.lock();
        Cx {
            config: &self.config,
            slot,
            now: self.clock.now(),
            wall: self.wall.now(),
            step: core.step,
            epoch: core.epoch,
            breakers: self.breakers.states(),
            emitted_stages: core.emitted.get(seed_id).cloned().unwrap_or_default(),
        }
    }

    pub(crate) fn cells(&self) -> Vec<Arc<SlotCell>> {
        self.slots.read().clone()
    }

    /// The slot holding the seed `seed_id`: a live one first, then the last one reset.
    pub(crate) fn cell_of(&self, seed_id: &str) -> Option<Arc<SlotCell>> {
        if seed_id.is_empty() {
            return None;
        }
        let slots = self.slots.read();
        let holds = |cell: &&Arc<SlotCell>, live: bool| {
            cell.seed.lock().as_ref().is_some_and(|s| s.id == seed_id && (!live || s.is_live()))
        };
        slots.iter().find(|c| holds(c, true)).or_else(|| slots.iter().find(|c| holds(c, false))).cloned()
    }

    /// Whether a live seed with this id exists in any slot.
    pub(crate) fn seed_is_live(&self, seed_id: &str) -> bool {
        self.cells().iter().any(|c| c.seed.lock().as_ref().is_some_and(|s| s.id == seed_id && s.is_live()))
    }
}
