//! AdamW's update in place, without a temporary tensor (decisions D24).
//!
//! candle-nn's AdamW (and ours before this) runs a dozen element-wise tensor ops per variable,
//! each allocating a fresh tensor as large as the variable: at the runtime bench's 1 M-parameter
//! seed that is tens of megabytes allocated and page-faulted per step. Here, on the CPU for f32
//! and f64, three in-place passes do the same arithmetic — the same operations, in the same
//! order, with the same constants rounded the same way, so the same bits (tested against
//! candle-nn) — and allocate nothing. Elsewhere the tensor path runs.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor};

/// The constants of one step, as candle's scalar ops would round them for the dtype.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepConsts {
    pub(super) beta1: f64,
    pub(super) beta2: f64,
    pub(super) scale_m: f64,
    pub(super) scale_v: f64,
    pub(super) decay: f64,
    pub(super) eps: f64,
    pub(super) lr: f64,
}

/// `m ← (m·β + 0) + (g·(1−β) + 0)`, or with `g²` for the second moment: candle's
/// `(m * β) + (g * (1 − β))` (`Tensor * f64` is `affine(β, 0)`).
struct Moment {
    beta: f64,
    square: bool,
}

/// `θ ← (θ·decay + 0) − ((m·sₘ + 0) / (sqrt(v·sᵥ + 0)·1 + ε) · lr + 0)`.
struct Param(StepConsts);

fn contiguous(l: &Layout) -> Option<(usize, usize)> {
    l.contiguous_offsets()
}

macro_rules! moment_impl {
    ($t:ty, $dst:expr, $g:expr, $self:expr) => {{
        let (b, c) = ($self.beta as $t, (1.0 - $self.beta) as $t);
        let square = $self.square;
        for (m, &g) in $dst.iter_mut().zip($g) {
            let g = if square { g * g } else { g };
            *m = (*m * b + 0.0) + (g * c + 0.0);
        }
    }};
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "kasmina-adamw-moment"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let (Some((a0, a1)), Some((b0, b1))) = (contiguous(l1), contiguous(l2)) else {
            candle_core::bail!("{}: non-contiguous operands", self.name())
        };
        match (s1, s2) {
            (CpuStorage::F32(m), CpuStorage::F32(g)) => moment_impl!(f32, m[a0..a1], &g[b0..b1], self),
            (CpuStorage::F64(m), CpuStorage::F64(g)) => moment_impl!(f64, m[a0..a1], &g[b0..b1], self),
            _ => candle_core::bail!("{}: f32 or f64 operands of one dtype only", self.name()),
        }
        Ok(())
    }
}

macro_rules! param_impl {
    ($t:ty, $theta:expr, $m:expr, $v:expr, $k:expr) => {{
        let k = $k;
        let (decay, sm, sv, eps, lr) = (k.decay as $t, k.scale_m as $t, k.scale_v as $t, k.eps as $t, k.lr as $t);
        for ((theta, &m), &v) in $theta.iter_mut().zip($m).zip($v) {
            let m_hat = m * sm + 0.0;
            let v_hat = v * sv + 0.0;
            let adjusted = m_hat / (v_hat.sqrt() * 1.0 + eps);
            *theta = (*theta * decay + 0.0) - (adjusted * lr + 0.0);
        }
    }};
}

impl InplaceOp3 for Param {
    fn name(&self) -> &'static str {
        "kasmina-adamw-param"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let (Some((a0, a1)), Some((b0, b1)), Some((c0, c1))) = (contiguous(l1), contiguous(l2), contiguous(l3)) else {
            candle_core::bail!("{}: non-contiguous operands", self.name())
        };
        match (s1, s2, s3) {
            (CpuStorage::F32(t), CpuStorage::F32(m), CpuStorage::F32(v)) => {
                param_impl!(f32, t[a0..a1], &m[b0..b1], &v[c0..c1], self.0)
            }
            (CpuStorage::F64(t), CpuStorage::F64(m), CpuStorage::F64(v)) => {
                param_impl!(f64, t[a0..a1], &m[b0..b1], &v[c0..c1], self.0)
            }
            _ => candle_core::bail!("{}: f32 or f64 operands of one dtype only", self.name()),
        }
        Ok(())
    }
}

/// Whether the in-place step applies to this variable and gradient: both on the CPU, both
/// contiguous, of one float dtype with 32 or 64 bits.
pub(super) fn applies(var: &Tensor, m: &Tensor, v: &Tensor, g: &Tensor) -> bool {
    let dtype_ok = matches!(var.dtype(), candle_core::DType::F32 | candle_core::DType::F64);
    dtype_ok
        && var.device().is_cpu()
        && [m, v, g].iter().all(|t| t.dtype() == var.dtype() && t.dims() == var.dims() && t.device().is_cpu())
        && [var, m, v, g].iter().all(|t| t.is_contiguous())
}

/// One AdamW step of `var` in place (its moments `m` and `v` too). Call only where
/// [`applies`] holds.
pub(super) fn step(var: &Tensor, m: &Tensor, v: &Tensor, g: &Tensor, k: StepConsts) -> Result<()> {
    m.inplace_op2(g, &Moment { beta: k.beta1, square: false })?;
    v.inplace_op2(g, &Moment { beta: k.beta2, square: true })?;
    var.inplace_op3(m, v, &Param(k))
}
