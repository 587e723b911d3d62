//! Values of Leyline's budget and limit "constant" messages, as Esper's Leyline contract documents
//! publish them.
//!
//! The `.proto` defines only the fields of `PerformanceBudgets`, `MemoryBudgets` and
//! `SystemLimits`; these are the values Esper's subsystems agree on.

use crate::{MemoryBudgets, PerformanceBudgets, SystemLimits};

/// Latency and rollback budgets.
pub const PERFORMANCE_BUDGETS: PerformanceBudgets = PerformanceBudgets {
    epoch_boundary_ms: 18,
    tamiyo_inference_ms: 12,
    systemstate_assembly_ms: 3,
    adaptation_processing_ms: 2,
    fast_rollback_ms: 500,
    full_rollback_seconds: 12,
    protobuf_serialization_us: 80,
    message_validation_us: 20,
    breaker_timeout_ms: 1000,
    breaker_reset_seconds: 30,
    importance_tracking_overhead_percent: 1,
    checkpoint_analysis_minutes_min: 2,
    checkpoint_analysis_minutes_max: 5,
    structured_validation_seconds: 60,
    rollback_coordination_seconds: 30,
};

/// Memory shares as fractions. Note: as published they sum to 1.05, not 1.0 (an error in the design);
/// they are reproduced as the contract states them.
pub const MEMORY_BUDGETS: MemoryBudgets = MemoryBudgets {
    model_percent: 0.40,
    optimizer_percent: 0.25,
    gradients_percent: 0.15,
    checkpoints_percent: 0.08,
    telemetry_percent: 0.05,
    morphogenetic_percent: 0.05,
    emergency_percent: 0.02,
    importance_statistics_percent: 0.03,
    pruning_metadata_percent: 0.02,
};

/// System-wide limits.
pub const SYSTEM_LIMITS: SystemLimits = SystemLimits {
    max_seeds_per_epoch: 100,
    max_message_size_bytes: 280,
    max_queue_depth: 10_000,
    max_retry_attempts: 3,
    max_pause_quota: 10_000,
    max_gc_allocations_per_msg: 4,
    max_pruning_ratio_percent: 50,
    max_consecutive_pruning_failures: 3,
    max_checkpoint_storage_gb: 100,
    max_importance_history_days: 30,
};

/// The wire-format version every Leyline message carries in its `version` field.
pub const LEYLINE_VERSION: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_match_the_contract() {
        assert_eq!(PERFORMANCE_BUDGETS.fast_rollback_ms, 500);
        assert_eq!(SYSTEM_LIMITS.max_message_size_bytes, 280);
        let sum = MEMORY_BUDGETS.model_percent
            + MEMORY_BUDGETS.optimizer_percent
            + MEMORY_BUDGETS.gradients_percent
            + MEMORY_BUDGETS.checkpoints_percent
            + MEMORY_BUDGETS.telemetry_percent
            + MEMORY_BUDGETS.morphogenetic_percent
            + MEMORY_BUDGETS.emergency_percent
            + MEMORY_BUDGETS.importance_statistics_percent
            + MEMORY_BUDGETS.pruning_metadata_percent;
        assert!((sum - 1.05).abs() < 1e-5, "{sum}");
    }
}
