//! The memory governor: Kasmina's three caches, epoch-driven GC, emergency cleanup and the pinned teacher.

use std::time::Duration;

use parking_lot::Mutex;
use quanta::Clock;

use crate::cache::{CacheStats, CleanupCounts, TtlCache, TtlCacheConfig};
use crate::error::Result;
use crate::teacher::{TeacherBudget, TeacherBudgetReport};
use crate::weigh::Weigh;

/// Settings of the [`MemoryGovernor`].
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    /// Kernel cache (blueprint id → compiled kernel artefact): TTL 3600 s, 512 MiB, 1000 entries.
    pub kernel_cache: TtlCacheConfig,
    /// Blueprint cache (blueprint id → descriptor): TTL 3600 s, 64 MiB, 500 entries.
    pub blueprint_cache: TtlCacheConfig,
    /// Telemetry buffer (packet id → packet): TTL 3600 s, 64 MiB, 10 000 entries.
    pub telemetry_buffer: TtlCacheConfig,
    /// Run the GC every this many epochs; 0 disables it. Default 10 (the prototype; the first GC is at epoch 10).
    pub gc_every_epochs: u64,
    /// The teacher memory budget (default 7 GiB, warning at 90%).
    pub teacher_budget: TeacherBudget,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        let hour = Duration::from_secs(3600);
        const MIB: u64 = 1024 * 1024;
        Self {
            kernel_cache: TtlCacheConfig::new(hour, 512 * MIB).with_max_entries(1000),
            blueprint_cache: TtlCacheConfig::new(hour, 64 * MIB).with_max_entries(500),
            telemetry_buffer: TtlCacheConfig::new(hour, 64 * MIB).with_max_entries(10_000),
            gc_every_epochs: 10,
            teacher_budget: TeacherBudget::default(),
        }
    }
}

/// What one epoch GC removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    /// The epoch the GC ran at.
    pub epoch: u64,
    /// GC runs so far, this one included.
    pub gc_runs: u64,
    /// Kernel cache removals.
    pub kernel: CleanupCounts,
    /// Blueprint cache removals.
    pub blueprint: CleanupCounts,
    /// Telemetry buffer removals.
    pub telemetry: CleanupCounts,
}

impl GcReport {
    /// Entries removed from all caches.
    pub fn total_evicted(&self) -> u64 {
        self.kernel.total() + self.blueprint.total() + self.telemetry.total()
    }

    /// Bytes released from all caches.
    pub fn bytes_freed(&self) -> u64 {
        self.kernel.bytes_freed + self.blueprint.bytes_freed + self.telemetry.bytes_freed
    }
}

/// What [`MemoryGovernor::emergency_cleanup`] released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupReport {
    /// Kernel cache removals.
    pub kernel: CleanupCounts,
    /// Blueprint cache removals.
    pub blueprint: CleanupCounts,
    /// Telemetry buffer removals.
    pub telemetry: CleanupCounts,
    /// Whether the pinned teacher was released.
    pub teacher_released: bool,
    /// The released teacher's footprint (0 if none was released).
    pub teacher_bytes_released: u64,
}

impl CleanupReport {
    /// Cache entries removed (the teacher not included).
    pub fn total_evicted(&self) -> u64 {
        self.kernel.total() + self.blueprint.total() + self.telemetry.total()
    }

    /// Bytes released, the teacher included.
    pub fn bytes_freed(&self) -> u64 {
        self.kernel.bytes_freed + self.blueprint.bytes_freed + self.telemetry.bytes_freed + self.teacher_bytes_released
    }
}

/// A snapshot of all memory figures, for telemetry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryStats {
    /// Kernel cache.
    pub kernel: CacheStats,
    /// Blueprint cache.
    pub blueprint: CacheStats,
    /// Telemetry buffer.
    pub telemetry: CacheStats,
    /// The pinned teacher's budget check, if a teacher is pinned.
    pub teacher: Option<TeacherBudgetReport>,
    /// GC runs so far.
    pub gc_runs: u64,
    /// The epoch of the last GC (the baseline for the next).
    pub last_gc_epoch: u64,
}

#[derive(Debug)]
struct Pinned<T> {
    value: T,
    report: TeacherBudgetReport,
}

#[derive(Debug, Default)]
struct GcState {
    last_gc_epoch: u64,
    runs: u64,
}

/// Kasmina's memory governor: a kernel cache, a blueprint cache and a telemetry buffer (all [`TtlCache`]s keyed by
/// `String`), an epoch-driven GC, an emergency cleanup and a pinned teacher entry that no TTL expires.
///
/// Generic over the cached values — kernel `Kr`, blueprint `Bp`, telemetry `Tl` (each [`Weigh`]ed in bytes) — and
/// the teacher `Tc` (its footprint is given at registration). All methods take `&self`.
pub struct MemoryGovernor<Kr, Bp, Tl, Tc = ()> {
    kernels: TtlCache<String, Kr>,
    blueprints: TtlCache<String, Bp>,
    telemetry: TtlCache<String, Tl>,
    teacher: Mutex<Option<Pinned<Tc>>>,
    gc: Mutex<GcState>,
    gc_every_epochs: u64,
    teacher_budget: TeacherBudget,
}

impl<Kr, Bp, Tl, Tc> std::fmt::Debug for MemoryGovernor<Kr, Bp, Tl, Tc> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGovernor")
            .field("kernels", &self.kernels)
            .field("blueprints", &self.blueprints)
            .field("telemetry", &self.telemetry)
            .field("teacher_pinned", &self.teacher.lock().as_ref().map(|p| p.report))
            .field("gc_every_epochs", &self.gc_every_epochs)
            .finish_non_exhaustive()
    }
}

impl<Kr, Bp, Tl, Tc> MemoryGovernor<Kr, Bp, Tl, Tc>
where
    Kr: Weigh + Clone + Send + Sync + 'static,
    Bp: Weigh + Clone + Send + Sync + 'static,
    Tl: Weigh + Clone + Send + Sync + 'static,
{
    /// A governor on the system's monotonic clock.
    pub fn new(config: MemoryConfig) -> Result<Self> {
        Self::with_clock(config, Clock::new())
    }

    /// A governor whose caches read `clock` (tests pass `quanta::Clock::mock()`).
    pub fn with_clock(config: MemoryConfig, clock: Clock) -> Result<Self> {
        config.teacher_budget.validate()?;
        Ok(Self {
            kernels: TtlCache::new(config.kernel_cache, clock.clone())?,
            blueprints: TtlCache::new(config.blueprint_cache, clock.clone())?,
            telemetry: TtlCache::new(config.telemetry_buffer, clock)?,
            teacher: Mutex::new(None),
            gc: Mutex::new(GcState::default()),
            gc_every_epochs: config.gc_every_epochs,
            teacher_budget: config.teacher_budget,
        })
    }

    /// The kernel cache (blueprint id → kernel artefact; each seed gets its own copy, fallbacks are never cached
    /// under the requested id: decision D10, enforced by the caller).
    pub fn kernels(&self) -> &TtlCache<String, Kr> {
        &self.kernels
    }

    /// The blueprint cache.
    pub fn blueprints(&self) -> &TtlCache<String, Bp> {
        &self.blueprints
    }

    /// The telemetry buffer.
    pub fn telemetry(&self) -> &TtlCache<String, Tl> {
        &self.telemetry
    }

    /// Called at every epoch boundary: runs a GC when `gc_every_epochs` epochs have passed since the last one
    /// (first at epoch `gc_every_epochs`), and returns what it removed; `None` when no GC ran. An epoch below the
    /// last GC's resets the baseline to it (a restarted run); `gc_every_epochs == 0` disables the GC.
    pub fn on_epoch(&self, epoch: u64) -> Option<GcReport> {
        if self.gc_every_epochs == 0 {
            return None;
        }
        let mut gc = self.gc.lock();
        if epoch < gc.last_gc_epoch {
            gc.last_gc_epoch = epoch;
            return None;
        }
        if epoch - gc.last_gc_epoch < self.gc_every_epochs {
            return None;
        }
        Some(self.collect(&mut gc, epoch))
    }

    /// Run a GC now, whatever the epoch counter says, and make `epoch` the new baseline.
    pub fn run_gc(&self, epoch: u64) -> GcReport {
        let mut gc = self.gc.lock();
        self.collect(&mut gc, epoch)
    }

    fn collect(&self, gc: &mut GcState, epoch: u64) -> GcReport {
        gc.last_gc_epoch = epoch;
        gc.runs += 1;
        GcReport {
            epoch,
            gc_runs: gc.runs,
            kernel: self.kernels.cleanup(),
            blueprint: self.blueprints.cleanup(),
            telemetry: self.telemetry.cleanup(),
        }
    }

    /// Clear every cache; the pinned teacher survives unless `include_teacher`. Never fails.
    pub fn emergency_cleanup(&self, include_teacher: bool) -> CleanupReport {
        let released = if include_teacher { self.teacher.lock().take() } else { None };
        CleanupReport {
            kernel: self.kernels.clear(),
            blueprint: self.blueprints.clear(),
            telemetry: self.telemetry.clear(),
            teacher_released: released.is_some(),
            teacher_bytes_released: released.map_or(0, |p| p.report.bytes),
        }
    }

    /// All figures for telemetry.
    pub fn stats(&self) -> MemoryStats {
        let gc = self.gc.lock();
        MemoryStats {
            kernel: self.kernels.stats(),
            blueprint: self.blueprints.stats(),
            telemetry: self.telemetry.stats(),
            teacher: self.teacher.lock().as_ref().map(|p| p.report),
            gc_runs: gc.runs,
            last_gc_epoch: gc.last_gc_epoch,
        }
    }
}

impl<Kr, Bp, Tl, Tc> MemoryGovernor<Kr, Bp, Tl, Tc> {
    /// The teacher budget in use.
    pub fn teacher_budget(&self) -> &TeacherBudget {
        &self.teacher_budget
    }

    /// Check a teacher footprint against the budget without pinning anything.
    pub fn check_teacher_budget(&self, bytes: u64) -> TeacherBudgetReport {
        self.teacher_budget.check(bytes)
    }

    /// Pin `teacher` (footprint `bytes`, e.g. numel × element size over its parameters and buffers), replacing any
    /// pinned teacher. The entry has no TTL; only [`release_teacher`](Self::release_teacher) or
    /// `emergency_cleanup(true)` remove it. An over-budget teacher is still pinned: the report says so and the
    /// caller decides (switch distillation off).
    pub fn register_teacher(&self, teacher: Tc, bytes: u64) -> TeacherBudgetReport {
        let report = self.teacher_budget.check(bytes);
        *self.teacher.lock() = Some(Pinned { value: teacher, report });
        report
    }

    /// The pinned teacher, if any (a clone).
    pub fn teacher(&self) -> Option<Tc>
    where
        Tc: Clone,
    {
        self.teacher.lock().as_ref().map(|p| p.value.clone())
    }

    /// The pinned teacher's budget report, if a teacher is pinned.
    pub fn teacher_report(&self) -> Option<TeacherBudgetReport> {
        self.teacher.lock().as_ref().map(|p| p.report)
    }

    /// Unpin and return the teacher.
    pub fn release_teacher(&self) -> Option<Tc> {
        self.teacher.lock().take().map(|p| p.value)
    }
}
