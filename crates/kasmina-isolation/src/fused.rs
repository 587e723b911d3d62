//! Fused slot kernels (issue 19, first step): the BLENDING form `h + alpha·d` and the
//! straight-through form `h + (d − sg(d))`, each one pass over the data instead of two or three
//! (candle `CustomOp2`s with their backward), for f32, bf16 and f16.
//!
//! On the CPU they compute exactly what the plain ops of [`blend`] and [`straight_through`]
//! compute — the same operations in the same order with the same roundings
//! (`h + (alpha·d + 0)`, `h + (d − d)`), so the same bits, tested for every dtype — and their
//! gradients are the plain ops' gradients: the identity to `h`, `alpha` times (straight-through:
//! the identity) to `d`, nothing to `d` at alpha 0 (where the plain op is kept: candle prunes
//! its zero-scaled branch from the backward graph, which a custom op cannot express). On another device they fall back to the plain
//! ops until the CUDA kernels exist.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use half::{bf16, f16};

use crate::error::{CandleContext, Result};
use crate::forward::{blend, clamp_alpha, ensure_same_shape, straight_through};

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

fn fusable(host: &Tensor, delta: &Tensor) -> bool {
    host.device().is_cpu()
        && host.dtype() == delta.dtype()
        && matches!(host.dtype(), DType::F32 | DType::BF16 | DType::F16)
}

/// [`blend`] as one fused pass: the same value and gradients, to the bit on the CPU.
pub fn fused_blend(host: &Tensor, delta: &Tensor, alpha: f64) -> Result<Tensor> {
    let alpha = clamp_alpha(alpha)?;
    ensure_same_shape("seed delta", host, delta)?;
    // At alpha 0 the plain op's zero-scaled branch is pruned from the backward graph (no
    // gradient reaches the delta nor what produced it); a custom op cannot be pruned, so alpha
    // 0 keeps the plain op.
    if alpha == 0.0 || !fusable(host, delta) {
        return blend(host, delta, alpha);
    }
    let (h, d) = (host.contiguous().op("fused blend")?, delta.contiguous().op("fused blend")?);
    h.apply_op2(&d, Blend { alpha }).op("fused blend")
}

/// [`straight_through`] as one fused pass: the same value and gradients, to the bit on the CPU.
pub fn fused_straight_through(host: &Tensor, delta: &Tensor) -> Result<Tensor> {
    ensure_same_shape("seed delta", host, delta)?;
    if !fusable(host, delta) {
        return straight_through(host, delta);
    }
    let (h, d) = (host.contiguous().op("fused straight-through")?, delta.contiguous().op("fused straight-through")?);
    h.apply_op2(&d, StraightThrough).op("fused straight-through")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use candle_core::{Device, Var};

    use super::*;

    /// Values with the awkward cases in them: ±0, a NaN-free spread, large and tiny magnitudes.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| match (i as u32 + seed) % 7 {
                0 => 0.0,
                1 => -0.0,
                2 => 1e-30,
                3 => -3.75e4,
                _ => ((i as f32 + seed as f32) * 0.618_034).sin() * 2.5,
            })
            .collect()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    /// Value and both gradients of `f(h, d)` under the loss `sum(out · w)`.
    fn run(dtype: DType, f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>) -> (Vec<u32>, Vec<u32>, Option<Vec<u32>>) {
        let dev = Device::Cpu;
        let shape = (3, 2, 5);
        let t = |seed| Tensor::from_vec(values(30, seed), shape, &dev).unwrap().to_dtype(dtype).unwrap();
        let (h, d) = (Var::from_tensor(&t(1)).unwrap(), Var::from_tensor(&t(4)).unwrap());
        let w = t(9);
        let out = f(h.as_tensor(), d.as_tensor()).unwrap();
        let grads = (&out * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gd = grads.get(d.as_tensor()).map(bits);
        (bits(&out), bits(grads.get(h.as_tensor()).unwrap()), gd)
    }

    #[test]
    fn the_fused_blend_is_the_plain_blend_to_the_bit_in_value_and_gradients() {
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            for alpha in [0.0, 0.125, 0.37, 1.0] {
                let plain = run(dtype, |h, d| blend(h, d, alpha));
                let fused = run(dtype, |h, d| fused_blend(h, d, alpha));
                assert_eq!(plain, fused, "{dtype:?} alpha {alpha}");
            }
        }
        // At alpha 0 no gradient reaches the delta, as with the plain op.
        assert_eq!(run(DType::F32, |h, d| fused_blend(h, d, 0.0)).2, None);
    }

    #[test]
    fn the_fused_straight_through_is_the_plain_one_to_the_bit() {
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let plain = run(dtype, straight_through);
            let fused = run(dtype, fused_straight_through);
            assert_eq!(plain, fused, "{dtype:?}");
        }
    }

    #[test]
    fn strided_inputs_other_dtypes_and_bad_shapes_are_handled() {
        let dev = Device::Cpu;
        let h = Tensor::from_vec(values(12, 2), (3, 4), &dev).unwrap().t().unwrap();
        let d = Tensor::from_vec(values(12, 5), (4, 3), &dev).unwrap();
        assert_eq!(bits(&fused_blend(&h, &d, 0.5).unwrap()), bits(&blend(&h, &d, 0.5).unwrap()));
        let (h64, d64) = (h.to_dtype(DType::F64).unwrap(), d.to_dtype(DType::F64).unwrap());
        assert_eq!(
            bits(&fused_blend(&h64, &d64, 0.5).unwrap()),
            bits(&blend(&h64, &d64, 0.5).unwrap()),
            "f64 falls back"
        );
        assert!(fused_blend(&h, &d.narrow(0, 0, 2).unwrap(), 0.5).is_err());
        assert!(fused_blend(&h, &d, f64::NAN).is_err());
    }
}
