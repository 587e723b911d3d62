//! The teacher memory budget (knowledge distillation).

/// One gibibyte.
pub const GIB: u64 = 1024 * 1024 * 1024;

/// Teacher reservation with gradient checkpointing (design: 7 GB on an A100-40GB; the prototype divides by 1024³).
pub const TEACHER_BUDGET_CHECKPOINTED_BYTES: u64 = 7 * GIB;

/// Teacher reservation without checkpointing (FP16 teacher, 14 GB).
pub const TEACHER_BUDGET_UNCHECKPOINTED_BYTES: u64 = 14 * GIB;

/// The teacher memory budget: a byte limit and the fraction of it at which a warning is raised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeacherBudget {
    /// The limit in bytes. Default 7 GiB (checkpointed teacher).
    pub budget_bytes: u64,
    /// Fraction of the limit from which the report says [`BudgetStatus::Warning`]. Default 0.9 (the teacher
    /// memory breaker warns at 90% of its limit).
    pub warn_fraction: f64,
}

impl Default for TeacherBudget {
    fn default() -> Self {
        Self::for_checkpointing(true)
    }
}

impl TeacherBudget {
    /// The design's budget: 7 GiB with gradient checkpointing, 14 GiB without; warning at 90%.
    pub fn for_checkpointing(checkpointing: bool) -> Self {
        let budget_bytes =
            if checkpointing { TEACHER_BUDGET_CHECKPOINTED_BYTES } else { TEACHER_BUDGET_UNCHECKPOINTED_BYTES };
        Self { budget_bytes, warn_fraction: 0.9 }
    }

    /// Check the settings: a positive budget and a warning fraction in (0, 1].
    pub fn validate(&self) -> crate::Result<()> {
        if self.budget_bytes == 0 {
            return Err(crate::Error::InvalidConfig {
                field: "teacher_budget.budget_bytes",
                reason: "must be positive",
            });
        }
        if !(self.warn_fraction > 0.0 && self.warn_fraction <= 1.0) {
            return Err(crate::Error::InvalidConfig {
                field: "teacher_budget.warn_fraction",
                reason: "must be in (0, 1]",
            });
        }
        Ok(())
    }

    /// Compare a teacher's footprint with the budget. Never fails: over budget is a status, and the caller
    /// decides (switch distillation off, enable checkpointing).
    pub fn check(&self, bytes: u64) -> TeacherBudgetReport {
        let utilisation = bytes as f64 / self.budget_bytes as f64;
        let status = if bytes > self.budget_bytes {
            BudgetStatus::OverBudget
        } else if utilisation >= self.warn_fraction {
            BudgetStatus::Warning
        } else {
            BudgetStatus::WithinBudget
        };
        TeacherBudgetReport { bytes, budget_bytes: self.budget_bytes, utilisation, status }
    }
}

/// Where a footprint stands against the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetStatus {
    /// Below the warning fraction.
    WithinBudget,
    /// At or above the warning fraction, not above the budget.
    Warning,
    /// Above the budget.
    OverBudget,
}

/// The result of a teacher budget check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeacherBudgetReport {
    /// The teacher's footprint in bytes.
    pub bytes: u64,
    /// The budget in bytes.
    pub budget_bytes: u64,
    /// `bytes / budget_bytes`.
    pub utilisation: f64,
    /// The verdict.
    pub status: BudgetStatus,
}

impl TeacherBudgetReport {
    /// Whether the footprint exceeds the budget.
    pub fn is_over_budget(&self) -> bool {
        self.status == BudgetStatus::OverBudget
    }

    /// The footprint in GiB (the prototype's unit).
    pub fn gib(&self) -> f64 {
        self.bytes as f64 / GIB as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_defaults_follow_the_design() {
        assert_eq!(TeacherBudget::default().budget_bytes, 7 * GIB);
        assert_eq!(TeacherBudget::for_checkpointing(false).budget_bytes, 14 * GIB);
        assert!(TeacherBudget { budget_bytes: 0, warn_fraction: 0.9 }.validate().is_err());
        assert!(TeacherBudget { budget_bytes: 1, warn_fraction: 1.5 }.validate().is_err());
        assert!(TeacherBudget { budget_bytes: 1, warn_fraction: f64::NAN }.validate().is_err());
    }
}
