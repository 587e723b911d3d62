//! The runtime's memory (decisions D10) over `kasmina-memory`'s governor, with each of its
//! caches in use:
//!
//! - kernel cache: artefacts keyed by blueprint and width, shared read-only (each seed copies
//!   the weights it trains); a seed holds a *lease* on the artefact it was built from until its
//!   slot is cleaned, and gate G5 asks for the seed's leases;
//! - blueprint cache: descriptors, so G0 does not query the blueprint source every time;
//! - telemetry buffer: the latest receipt of each command, by command id (`GetReceipt`);
//! - the pinned knowledge-distillation teacher and its budget.

use std::collections::BTreeMap;
use std::sync::Arc;

use kasmina_memory::{CleanupReport, MemoryConfig, MemoryGovernor, MemoryStats, TtlCacheConfig, Weigh};
use leyline::{BlueprintDescriptor, CommandReceipt};
use parking_lot::Mutex;

use crate::blueprint::{BlueprintRuntime, KernelArtifact};
use crate::config::KasminaConfig;
use crate::error::Result;
use crate::receipt::StoredReceipt;

impl Weigh for KernelArtifact {
    fn weigh_bytes(&self) -> u64 {
        self.size_bytes() as u64 + self.blueprint_id.len() as u64 + 64
    }
}

/// A cached blueprint descriptor (weighed by its encoded size).
#[derive(Debug, Clone)]
pub(crate) struct CachedDescriptor(pub(crate) BlueprintDescriptor);

impl Weigh for CachedDescriptor {
    fn weigh_bytes(&self) -> u64 {
        leyline::Message::encoded_len(&self.0) as u64
    }
}

/// The pinned knowledge-distillation teacher (its weights stay with the trainer; the memory
/// governor pins the entry and checks its budget).
#[derive(Debug, Clone)]
pub(crate) struct TeacherEntry;

type Governor = MemoryGovernor<Arc<KernelArtifact>, Arc<CachedDescriptor>, StoredReceipt, TeacherEntry>;

/// Kernel artefacts, descriptors, receipts, the teacher, and the seeds' leases.
#[derive(Debug)]
pub(crate) struct Memory {
    governor: Governor,
    /// Seed id → the kernel-cache key of the artefact its kernel was copied from.
    leases: Mutex<BTreeMap<String, String>>,
}

impl Memory {
    pub(crate) fn new(config: &KasminaConfig, clock: quanta::Clock) -> Result<Self> {
        let defaults = MemoryConfig::default();
        let memory = MemoryConfig {
            kernel_cache: TtlCacheConfig::new(config.kernel_cache_ttl, config.kernel_cache_bytes)
                .with_max_entries(1000),
            telemetry_buffer: TtlCacheConfig::new(config.receipt_ttl, 16 * 1024 * 1024).with_max_entries(100_000),
            gc_every_epochs: config.gc_every_epochs,
            ..defaults
        };
        Ok(Self { governor: MemoryGovernor::with_clock(memory, clock)?, leases: Mutex::new(BTreeMap::new()) })
    }

    pub(crate) fn key(blueprint_id: &str, width: usize) -> String {
        format!("{blueprint_id}/w{width}")
    }

    pub(crate) fn kernel(&self, blueprint_id: &str, width: usize) -> Option<Arc<KernelArtifact>> {
        self.governor.kernels().get(&Self::key(blueprint_id, width))
    }

    /// Caches an artefact under its own blueprint id (the caller never passes a fallback under
    /// the requested id). A refused insert (too large for the cache) only costs a future miss.
    pub(crate) fn insert_kernel(&self, width: usize, artifact: Arc<KernelArtifact>) {
        let key = Self::key(&artifact.blueprint_id, width);
        let _ = self.governor.kernels().insert(key, artifact);
    }

    /// The descriptor of `blueprint_id`: from the blueprint cache, else from `source` (and cached).
    pub(crate) fn descriptor(&self, source: &dyn BlueprintRuntime, blueprint_id: &str) -> Option<BlueprintDescriptor> {
        if let Some(hit) = self.governor.blueprints().get(blueprint_id) {
            return Some(hit.0.clone());
        }
        let descriptor = source.descriptor(blueprint_id)?;
        let _ =
            self.governor.blueprints().insert(blueprint_id.to_owned(), Arc::new(CachedDescriptor(descriptor.clone())));
        Some(descriptor)
    }

    /// Records that `seed_id`'s kernel was built from the artefact `key`.
    pub(crate) fn lease(&self, seed_id: &str, key: String) {
        self.leases.lock().insert(seed_id.to_owned(), key);
    }

    /// Releases `seed_id`'s lease (slot cleaning).
    pub(crate) fn release(&self, seed_id: &str) {
        self.leases.lock().remove(seed_id);
    }

    /// Cache entries held for `seed_id` (G5 asks this; 0 once its slot is clean).
    pub(crate) fn entries_for_seed(&self, seed_id: &str) -> usize {
        usize::from(self.leases.lock().contains_key(seed_id))
    }

    /// Keeps `receipt` as the latest of its command (commands without an id are not kept).
    pub(crate) fn record_receipt(&self, receipt: &CommandReceipt) {
        if receipt.command_id.is_empty() {
            return;
        }
        let _ = self.governor.telemetry().insert(receipt.command_id.clone(), StoredReceipt(Arc::new(receipt.clone())));
    }

    pub(crate) fn receipt(&self, command_id: &str) -> Option<CommandReceipt> {
        self.governor.telemetry().get(command_id).map(|r| r.0.as_ref().clone())
    }

    /// Epoch GC; `Some(evicted)` when it ran.
    pub(crate) fn on_epoch(&self, epoch: u64) -> Option<u64> {
        self.governor.on_epoch(epoch).map(|r| r.total_evicted())
    }

    pub(crate) fn emergency_cleanup(&self, include_teacher: bool) -> CleanupReport {
        self.governor.emergency_cleanup(include_teacher)
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        self.governor.stats()
    }

    pub(crate) fn governor(&self) -> &Governor {
        &self.governor
    }
}
