//! Fused slot kernels (issue 19, first step): the BLENDING form `h + alpha·d` and the
//! straight-through form `h + (d − sg(d))`, each one pass over the data instead of two or three
//! (candle `CustomOp2`s with their backward), for f32, bf16 and f16.
//!
//! [`crate::blend`] and [`crate::straight_through`] run them where they can. On the CPU they
//! compute exactly what the plain candle ops compute — the same operations in the same order with the same roundings
//! (`h + (alpha·d + 0)`, `h + (d − d)`), so the same bits, tested for every dtype — and their
//! gradients are the plain ops' gradients: the identity to `h`, `alpha` times (straight-through:
//! the identity) to `d`. At alpha 0 the callers keep the plain op (candle prunes its zero-scaled
//! branch from the backward graph, which a custom op cannot express); on another device too,
//! until the CUDA kernels exist.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use half::{bf16, f16};

use crate::error::{CandleContext, Result};

/// `h + alpha·d`.
#[derive(Debug, Clone, Copy)]
struct Blend {
    alpha: f64,
}

/// `h + (d − sg(d))`.
#[derive(Debug, Clone, Copy)]
struct StraightThrough;

/// The contiguous slice of a storage (the callers make both inputs contiguous).
fn slice<'a, T>(v: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    let (start, end) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::RequiresContiguous { op: "fused" })?;
    Ok(&v[start..end])
}

macro_rules! elementwise {
    ($s1:expr, $l1:expr, $s2:expr, $l2:expr, |$h:ident, $d:ident, $ty:ident| $body:expr) => {
        match ($s1, $s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                type $ty = f32;
                let (a, b) = (slice(a, $l1)?, slice(b, $l2)?);
                CpuStorage::F32(a.iter().zip(b).map(|(&$h, &$d)| $body).collect())
            }
            (CpuStorage::BF16(a), CpuStorage::BF16(b)) => {
                type $ty = bf16;
                let (a, b) = (slice(a, $l1)?, slice(b, $l2)?);
                CpuStorage::BF16(a.iter().zip(b).map(|(&$h, &$d)| $body).collect())
            }
            (CpuStorage::F16(a), CpuStorage::F16(b)) => {
                type $ty = f16;
                let (a, b) = (slice(a, $l1)?, slice(b, $l2)?);
                CpuStorage::F16(a.iter().zip(b).map(|(&$h, &$d)| $body).collect())
            }
            (a, b) => {
                return Err(candle_core::Error::Msg(format!(
                    "fused slot kernels take f32, bf16 or f16 of one dtype, got {:?} and {:?}",
                    a.dtype(),
                    b.dtype()
                )));
            }
        }
    };
}

impl CustomOp2 for Blend {
    fn name(&self) -> &'static str {
        "kasmina-fused-blend"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let alpha = self.alpha;
        // As candle's affine: `d·mul + add` with both constants in the storage's type, then the add.
        let out = elementwise!(s1, l1, s2, l2, |h, d, T| {
            let (mul, zero) =
                (<T as candle_core::WithDType>::from_f64(alpha), <T as candle_core::WithDType>::from_f64(0.0));
            h + (d * mul + zero)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _h: &Tensor,
        _d: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(grad.affine(self.alpha, 0.0)?)))
    }
}

impl CustomOp2 for StraightThrough {
    fn name(&self) -> &'static str {
        "kasmina-fused-straight-through"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        // `d - d` is the value (0, or NaN for a non-finite d), as the plain op's.
        #[allow(clippy::eq_op)]
        let out = elementwise!(s1, l1, s2, l2, |h, d, _T| h + (d - d));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _h: &Tensor,
        _d: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(grad.clone())))
    }
}

/// Whether the fused kernels serve these tensors: on the CPU, one float dtype they know.
pub(crate) fn fusable(host: &Tensor, delta: &Tensor) -> bool {
    host.device().is_cpu()
        && host.dtype() == delta.dtype()
        && matches!(host.dtype(), DType::F32 | DType::BF16 | DType::F16)
}

/// `h + alpha·d` in one pass (checked, [`fusable`] inputs; alpha above 0).
pub(crate) fn blend(host: &Tensor, delta: &Tensor, alpha: f64) -> Result<Tensor> {
    let (h, d) = (host.contiguous().op("fused blend")?, delta.contiguous().op("fused blend")?);
    h.apply_op2(&d, Blend { alpha }).op("fused blend")
}

/// `h + (d − sg(d))` in one pass (checked, [`fusable`] inputs).
pub(crate) fn straight_through(host: &Tensor, delta: &Tensor) -> Result<Tensor> {
    let (h, d) = (host.contiguous().op("fused straight-through")?, delta.contiguous().op("fused straight-through")?);
    h.apply_op2(&d, StraightThrough).op("fused straight-through")
}
