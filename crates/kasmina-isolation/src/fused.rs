//! Fused slot kernels (issue 19): the BLENDING form `h + alpha·d`, the straight-through form
//! `h + (d − sg(d))` and the residual add `h + d`, each one pass over the data instead of two or
//! three (candle custom ops with their backward), for f32, bf16 and f16, on the CPU and, with the
//! `cuda` feature, on CUDA devices.
//!
//! Each exists plain ([`CustomOp2`]: `h`, `d`) and **gated** ([`CustomOp3`]: `h`, `d` and a
//! one-element `u8` gate on the device): the gated form emits `h` itself when the gate is 0, so a
//! non-finite seed delta is bypassed without the host reading anything back from the device
//! ([`crate::guarded_slot_forward`]). The backward is fused too: the gradient into `h` is the
//! upstream gradient itself (no pass), the one into `d` is one pass (the plain blend's `affine`;
//! the gated forms' own kernel, which also applies the gate).
//!
//! On the CPU they compute exactly what the plain candle ops compute — the same operations in the
//! same order with the same roundings (`h + (alpha·d + 0)`, `h + (d − d)`, `h + d`), so the same
//! bits, tested for every dtype — and their gradients are the plain ops' gradients: the identity
//! to `h`, `alpha` times (straight-through, add: the identity) to `d`, times the gate. The CUDA
//! kernels (`fused.cu`, compiled to PTX by the build script when the `cuda` feature is on) do the
//! same operations in `float` with a rounding to the storage type after each, as the CPU does, and
//! are built with `--fmad=false` so that no multiply-add is contracted. At alpha 0 the callers keep
//! the plain op (candle prunes its zero-scaled branch from the backward graph, which a custom op
//! cannot express).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, WithDType};
use half::{bf16, f16};

use crate::error::{CandleContext, Result};

/// Which element-wise form a fused kernel computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// `h + alpha·d`.
    Blend(f64),
    /// `h + (d − sg(d))`.
    StraightThrough,
    /// `h + d`.
    Add,
}

impl Kind {
    /// The CUDA kernel's name stem (`kasmina_<stem>_<dtype>[_gated]`) and its blend factor.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn cuda(self) -> (&'static str, f64) {
        match self {
            Self::Blend(alpha) => ("blend", alpha),
            Self::StraightThrough => ("straight_through", 0.0),
            Self::Add => ("add", 0.0),
        }
    }

    /// The gradient into `d` for the upstream gradient `grad`: `alpha` times it (blend), or it.
    fn delta_grad(self, grad: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Blend(alpha) => grad.affine(alpha, 0.0),
            Self::StraightThrough | Self::Add => Ok(grad.clone()),
        }
    }

    /// One element of [`delta_grad`](Self::delta_grad), in the storage type's own arithmetic.
    fn grad_one<T: WithDType>(self, g: T) -> T {
        match self {
            Self::Blend(alpha) => g * T::from_f64(alpha) + T::from_f64(0.0),
            Self::StraightThrough | Self::Add => g,
        }
    }

    /// The CUDA kernel's name stem of the gated gradient into `d`, and its factor.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn cuda_grad(self) -> (&'static str, f64) {
        match self {
            Self::Blend(alpha) => ("grad_blend", alpha),
            Self::StraightThrough | Self::Add => ("grad_copy", 0.0),
        }
    }

    /// One element, in the storage type's own arithmetic (each operation rounded to `T`).
    #[allow(clippy::eq_op)] // `d - d` is the value: 0, or NaN for a non-finite d, as the plain op's.
    fn apply<T: WithDType>(self, h: T, d: T) -> T {
        match self {
            // As candle's affine: `d·mul + add` with both constants in the storage's type, then
            // the add.
            Self::Blend(alpha) => h + (d * T::from_f64(alpha) + T::from_f64(0.0)),
            Self::StraightThrough => h + (d - d),
            Self::Add => h + d,
        }
    }
}

/// A fused slot kernel: plain as a [`CustomOp2`], gated as a [`CustomOp3`].
#[derive(Debug, Clone, Copy)]
struct Fused(Kind);

/// The backward of a gated form into `d`, one pass: [`Kind::delta_grad`] of the upstream
/// gradient where the gate is open, 0 where it is closed (a [`CustomOp2`] of the gradient and the
/// gate).
#[derive(Debug, Clone, Copy)]
struct GatedGrad(Kind);

/// The contiguous slice of a storage (the callers make the inputs contiguous).
fn slice<'a, T>(v: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    let (start, end) = l.contiguous_offsets().ok_or(candle_core::Error::RequiresContiguous { op: "fused" })?;
    v.get(start..end).ok_or_else(|| candle_core::Error::Msg("fused: layout outside its storage".into()))
}

fn run<T: WithDType>(kind: Kind, h: &[T], d: &[T], open: bool) -> Vec<T> {
    if open { h.iter().zip(d).map(|(&h, &d)| kind.apply(h, d)).collect() } else { h.to_vec() }
}

fn cpu_apply(
    kind: Kind,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    open: bool,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let out = match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(run(kind, slice(a, l1)?, slice(b, l2)?, open)),
        (CpuStorage::BF16(a), CpuStorage::BF16(b)) => {
            CpuStorage::BF16(run::<bf16>(kind, slice(a, l1)?, slice(b, l2)?, open))
        }
        (CpuStorage::F16(a), CpuStorage::F16(b)) => {
            CpuStorage::F16(run::<f16>(kind, slice(a, l1)?, slice(b, l2)?, open))
        }
        (a, b) => return Err(unsupported(a.dtype(), b.dtype())),
    };
    Ok((out, l1.shape().clone()))
}

fn run_grad<T: WithDType>(kind: Kind, g: &[T], open: bool) -> Vec<T> {
    if open { g.iter().map(|&g| kind.grad_one(g)).collect() } else { vec![T::from_f64(0.0); g.len()] }
}

fn unsupported(a: DType, b: DType) -> candle_core::Error {
    candle_core::Error::Msg(format!("fused slot kernels take f32, bf16 or f16 of one dtype, got {a:?} and {b:?}"))
}

/// The gate's one `u8`.
fn cpu_gate(s: &CpuStorage, l: &Layout) -> candle_core::Result<bool> {
    match s {
        CpuStorage::U8(v) if l.shape().elem_count() == 1 => v
            .get(l.start_offset())
            .map(|&g| g != 0)
            .ok_or_else(|| candle_core::Error::Msg("fused: gate outside its storage".into())),
        other => Err(candle_core::Error::Msg(format!(
            "the gate of a fused slot kernel is one u8, got {:?} of shape {:?}",
            other.dtype(),
            l.shape()
        ))),
    }
}

impl CustomOp2 for Fused {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Blend(_) => "kasmina-fused-blend",
            Kind::StraightThrough => "kasmina-fused-straight-through",
            Kind::Add => "kasmina-fused-add",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cpu_apply(self.0, s1, l1, s2, l2, true)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (stem, alpha) = self.0.cuda();
        crate::fused_cuda::launch(stem, alpha, &[(s1, l1), (s2, l2)], None)
    }

    fn bwd(
        &self,
        _h: &Tensor,
        _d: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(self.0.delta_grad(grad)?)))
    }
}

impl CustomOp3 for Fused {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Blend(_) => "kasmina-fused-blend-gated",
            Kind::StraightThrough => "kasmina-fused-straight-through-gated",
            Kind::Add => "kasmina-fused-add-gated",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cpu_apply(self.0, s1, l1, s2, l2, cpu_gate(s3, l3)?)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (stem, alpha) = self.0.cuda();
        crate::fused_cuda::launch(stem, alpha, &[(s1, l1), (s2, l2)], Some((s3, l3)))
    }

    fn bwd(
        &self,
        _h: &Tensor,
        _d: &Tensor,
        gate: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Gate open: exactly the plain op's gradient; closed: none reaches `d` (zeros).
        let into_delta = grad.contiguous()?.apply_op2_no_bwd(gate, &GatedGrad(self.0))?;
        Ok((Some(grad.clone()), Some(into_delta), None))
    }
}

impl CustomOp2 for GatedGrad {
    fn name(&self) -> &'static str {
        "kasmina-fused-gated-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let open = cpu_gate(s2, l2)?;
        let out = match s1 {
            CpuStorage::F32(g) => CpuStorage::F32(run_grad(self.0, slice(g, l1)?, open)),
            CpuStorage::BF16(g) => CpuStorage::BF16(run_grad::<bf16>(self.0, slice(g, l1)?, open)),
            CpuStorage::F16(g) => CpuStorage::F16(run_grad::<f16>(self.0, slice(g, l1)?, open)),
            other => return Err(unsupported(other.dtype(), other.dtype())),
        };
        Ok((out, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (stem, alpha) = self.0.cuda_grad();
        crate::fused_cuda::launch(stem, alpha, &[(s1, l1)], Some((s2, l2)))
    }
}

/// Whether the fused kernels serve these tensors: on the CPU or a CUDA device, one float dtype
/// they know.
pub(crate) fn fusable(host: &Tensor, delta: &Tensor) -> bool {
    (host.device().is_cpu() || host.device().is_cuda())
        && host.device().same_device(delta.device())
        && host.dtype() == delta.dtype()
        && matches!(host.dtype(), DType::F32 | DType::BF16 | DType::F16)
}

/// The plain fused form (checked, [`fusable`] inputs).
pub(crate) fn apply(kind: Kind, host: &Tensor, delta: &Tensor) -> Result<Tensor> {
    let (h, d) = (host.contiguous().op("fused slot kernel")?, delta.contiguous().op("fused slot kernel")?);
    h.apply_op2(&d, Fused(kind)).op("fused slot kernel")
}

/// The gated fused form: `gate` is a one-element `u8` tensor on the inputs' device (checked,
/// [`fusable`] inputs).
pub(crate) fn apply_gated(kind: Kind, host: &Tensor, delta: &Tensor, gate: &Tensor) -> Result<Tensor> {
    let (h, d) = (host.contiguous().op("fused slot kernel")?, delta.contiguous().op("fused slot kernel")?);
    h.apply_op3(&d, gate, Fused(kind)).op("fused slot kernel")
}
