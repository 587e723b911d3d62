//! TTL- and byte-bounded caches, epoch-driven GC and teacher memory budgeting for Kasmina.
//!
//! Layer L1 (domain): depends only on `leyline` and external crates (quanta for the injected monotonic clock,
//! parking_lot for the caches' lock, thiserror); never on another `kasmina-*` crate, and not on candle: caches are
//! generic over the value, weighed in bytes through [`Weigh`] (the runtime weighs tensors by their byte size).
//!
//! Main types: [`TtlCache`] (TTL + byte bound + optional entry bound, LRU, evictions counted by cause, a
//! [`CacheStats`] snapshot for telemetry), [`MemoryGovernor`] (kernel cache, blueprint cache, telemetry buffer,
//! [`on_epoch`](MemoryGovernor::on_epoch) GC returning a [`GcReport`],
//! [`emergency_cleanup`](MemoryGovernor::emergency_cleanup) returning a [`CleanupReport`], and a pinned teacher
//! checked against a [`TeacherBudget`]), and [`Error`].
//!
//! ```
//! use std::time::Duration;
//! use kasmina_memory::{BudgetStatus, MemoryConfig, MemoryGovernor, GIB};
//!
//! let (clock, mock) = quanta::Clock::mock();
//! let memory: MemoryGovernor<Vec<f32>, String, Vec<u8>, &str> =
//!     MemoryGovernor::with_clock(MemoryConfig::default(), clock)?;
//!
//! memory.kernels().insert("conv_light".into(), vec![0.0; 256])?; // weighs 1 KiB
//! assert!(memory.kernels().get("conv_light").is_some());
//! assert_eq!(memory.kernels().stats().weighted_size_bytes, 1024);
//!
//! // The teacher is pinned (no TTL); an over-budget teacher is reported, not refused.
//! let report = memory.register_teacher("teacher", 9 * GIB);
//! assert_eq!(report.status, BudgetStatus::OverBudget);
//!
//! // An hour later the kernel has expired; the epoch-10 GC removes it and says so.
//! mock.increment(Duration::from_secs(3600));
//! assert!(memory.on_epoch(9).is_none());
//! let gc = memory.on_epoch(10).expect("gc runs every 10 epochs");
//! assert_eq!(gc.kernel.expired, 1);
//!
//! let cleanup = memory.emergency_cleanup(false);
//! assert!(!cleanup.teacher_released);
//! assert_eq!(memory.teacher(), Some("teacher"));
//! # Ok::<(), kasmina_memory::Error>(())
//! ```

mod cache;
mod error;
mod governor;
mod lru;
mod teacher;
mod weigh;

pub use cache::{CacheStats, CleanupCounts, EvictionCounts, TtlCache, TtlCacheConfig, Weigher};
pub use error::{Error, Result};
pub use governor::{CleanupReport, GcReport, MemoryConfig, MemoryGovernor, MemoryStats};
pub use teacher::{
    BudgetStatus, GIB, TEACHER_BUDGET_CHECKPOINTED_BYTES, TEACHER_BUDGET_UNCHECKPOINTED_BYTES, TeacherBudget,
    TeacherBudgetReport,
};
pub use weigh::Weigh;
