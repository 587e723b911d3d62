//! The kernel cache of decisions D10 over `kasmina-memory`: artefacts keyed by blueprint and
//! width, bounded by bytes and entries, TTL-governed, collected at epoch boundaries.

use std::sync::Arc;

use kasmina_memory::{CleanupReport, MemoryConfig, MemoryGovernor, MemoryStats, TtlCacheConfig, Weigh};

use crate::blueprint::KernelArtifact;
use crate::config::KasminaConfig;
use crate::error::Result;

impl Weigh for KernelArtifact {
    fn weigh_bytes(&self) -> u64 {
        self.size_bytes() as u64 + self.blueprint_id.len() as u64 + 64
    }
}

/// A cached blueprint descriptor (weighed by its encoded size).
#[derive(Debug, Clone)]
pub(crate) struct CachedDescriptor(pub(crate) leyline::BlueprintDescriptor);

impl Weigh for CachedDescriptor {
    fn weigh_bytes(&self) -> u64 {
        leyline::Message::encoded_len(&self.0) as u64
    }
}

/// The pinned knowledge-distillation teacher (its weights stay with the trainer; the memory
/// governor pins the entry and checks its budget).
#[derive(Debug, Clone)]
pub(crate) struct TeacherEntry;

type Governor = MemoryGovernor<Arc<KernelArtifact>, Arc<CachedDescriptor>, Vec<u8>, TeacherEntry>;

/// Kernel artefacts shared read-only by seeds (each seed copies the weights it trains).
#[derive(Debug)]
pub(crate) struct KernelCache {
    governor: Governor,
}

impl KernelCache {
    pub(crate) fn new(config: &KasminaConfig, clock: quanta::Clock) -> Result<Self> {
        let defaults = MemoryConfig::default();
        let memory = MemoryConfig {
            kernel_cache: TtlCacheConfig::new(config.kernel_cache_ttl, config.kernel_cache_bytes)
                .with_max_entries(1000),
            gc_every_epochs: config.gc_every_epochs,
            ..defaults
        };
        Ok(Self { governor: MemoryGovernor::with_clock(memory, clock)? })
    }

    fn key(blueprint_id: &str, width: usize) -> String {
        format!("{blueprint_id}/w{width}")
    }

    pub(crate) fn get(&self, blueprint_id: &str, width: usize) -> Option<Arc<KernelArtifact>> {
        self.governor.kernels().get(&Self::key(blueprint_id, width))
    }

    /// Caches an artefact under its own blueprint id (the caller never passes a fallback under
    /// the requested id). A refused insert (too large for the cache) only costs a future miss.
    pub(crate) fn insert(&self, blueprint_id: &str, width: usize, artifact: Arc<KernelArtifact>) {
        debug_assert_eq!(artifact.blueprint_id, blueprint_id);
        let _ = self.governor.kernels().insert(Self::key(blueprint_id, width), artifact);
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
