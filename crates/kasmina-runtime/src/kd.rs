//! Knowledge distillation (optional, off by default; facts §12): a fenced teacher, a memory
//! budget check, and the KD loss term the trainer may add.
//!
//! KD = `weight · KL(softmax(teacher/T) ‖ softmax(student/T))`, averaged over the batch, with the
//! design's fixed constants `T = 4.0`, `weight = 0.3` and no T² factor; the teacher's logits are
//! always detached, so the teacher never receives a gradient.

use candle_core::{D, Tensor, Var};
use candle_nn::ops::{log_softmax, softmax};
use kasmina_memory::TeacherBudgetReport;
use kasmina_telemetry::names;
use leyline::TelemetryLevel;

use crate::cache::TeacherEntry;
use crate::error::{Error, Result};
use crate::manager::Kasmina;

/// Distillation temperature (fixed by the design, never learned).
pub const KD_TEMPERATURE: f64 = 4.0;
/// Weight of the KD term (fixed by the design).
pub const KD_WEIGHT: f64 = 0.3;

/// The registered teacher.
#[derive(Debug, Clone)]
pub struct Teacher {
    /// Its name.
    pub name: String,
    /// Its parameters (fenced: no seed may claim or update them).
    pub vars: Vec<Var>,
    /// Their size in bytes.
    pub bytes: u64,
}

/// The KD loss of `student_logits` against `teacher_logits` (`[batch, classes]`).
pub fn kd_loss(student_logits: &Tensor, teacher_logits: &Tensor, temperature: f64, weight: f64) -> Result<Tensor> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::InvalidConfig { field: "kd_temperature", reason: "must be finite and positive".into() });
    }
    let t = teacher_logits.detach().affine(1.0 / temperature, 0.0)?;
    let s = student_logits.affine(1.0 / temperature, 0.0)?;
    let p_t = softmax(&t, D::Minus1)?;
    let log_p_t = log_softmax(&t, D::Minus1)?;
    let log_p_s = log_softmax(&s, D::Minus1)?;
    let kl = (p_t * (log_p_t - log_p_s)?)?.sum(D::Minus1)?.mean_all()?;
    Ok(kl.affine(weight, 0.0)?)
}

impl Kasmina {
    /// Registers a teacher: its parameters are fenced in the registry (never claimable or
    /// updatable by a seed), its size is checked against the teacher budget (7 GB by default;
    /// over budget is reported, not refused), and KD becomes available. Event
    /// `teacher_registered` (WARNING when over budget).
    pub fn register_teacher(&self, name: &str, vars: &[Var]) -> Result<TeacherBudgetReport> {
        self.inner.registry.register_teacher(vars)?;
        let bytes: u64 = vars.iter().map(|v| (v.elem_count() * v.dtype().size_in_bytes()) as u64).sum();
        let report = self.inner.kernels.governor().register_teacher(TeacherEntry, bytes);
        let level = if report.is_over_budget() { TelemetryLevel::Warning } else { TelemetryLevel::Info };
        self.event(names::TEACHER_REGISTERED.event_at(
            level,
            [
                ("teacher", name.to_owned()),
                ("memory_gb", format!("{:.2}", bytes as f64 / 1e9)),
                ("budget_gb", format!("{:.2}", report.budget_bytes as f64 / 1e9)),
            ],
        ));
        *self.inner.teacher.lock() = Some(Teacher { name: name.to_owned(), vars: vars.to_vec(), bytes });
        self.flush_events(false);
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
}
