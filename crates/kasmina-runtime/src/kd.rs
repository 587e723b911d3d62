//! Knowledge distillation (optional, off by default): a fenced teacher, a memory budget check,
//! and the KD loss term the trainer may add ([`crate::Kasmina::register_teacher`],
//! [`crate::Kasmina::kd_loss`]).
//!
//! KD = `weight · KL(softmax(teacher/T) ‖ softmax(student/T))`, averaged over the batch, with the
//! design's fixed constants `T = 4.0`, `weight = 0.3` and no T² factor; the teacher's logits are
//! always detached, so the teacher never receives a gradient.

use crate::error::{Error, Result};
use candle_core::{D, Tensor, Var};
use candle_nn::ops::{log_softmax, softmax};

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
