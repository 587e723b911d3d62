//! The forward pass of a seed slot (decisions D4, revised) as pure functions over candle tensors.
//!
//! Seeds are residual: a kernel computes a *delta* `d` from the host activation `h`, and the slot
//! adds it to `h` in a way that depends on the [`SlotMode`] ([`slot_forward`]). The host branch
//! is never detached: the layers upstream of a slot keep their task gradient in every mode; the
//! seed reads `h` detached until FOSSILIZED, which is where isolation lives.
//!
//! [`seed_output`] is the seed's residual output `input + kernel(input)` on its own. The
//! isolation probe ([`crate::Probe::rerun`]) runs it on one row of the tensor the kernel received
//! ([`SeedBranch::input`]): an undetached input then reaches the host through the residual path
//! as well as through the kernel, and the probe sees it.

use candle_core::{DType, Module, Tensor};

use crate::fused::Kind;

use crate::error::{CandleContext, Error, Result};

/// The tensor a seed reads: the host activation, detached (isolation at the seed's input, D4).
///
/// The result shares the host activation's storage; no data is copied.
pub fn seed_input(host: &Tensor) -> Tensor {
    host.detach()
}

/// The residual seed output: `input + kernel(input)`.
///
/// `kernel` computes the seed's delta (any [`candle_core::Module`], closures included); a kernel
/// whose last layer starts at zero reproduces its input exactly. The delta must have the input's
/// shape ([`Error::ShapeMismatch`] otherwise); errors of the kernel come back as
/// [`Error::Candle`] with `op = "seed kernel"`.
pub fn seed_output<K: Module + ?Sized>(input: &Tensor, kernel: &K) -> Result<Tensor> {
    let delta = seed_delta(input, input, kernel)?;
    input.add(&delta).op("residual add")
}

/// The TRAINING form: `host + (seed - sg(seed))`, `sg` = detach.
///
/// `seed` is the seed's delta ([`slot_forward`] passes `kernel(sg(host))`); the form works the
/// same with any tensor of the host's shape. In value this is `host` (exactly, for a finite
/// `seed`: `s - s` is `0`); in backward the host activation receives the upstream gradient
/// unchanged (its gradients are bit-identical to those of the model without a seed) and `seed`
/// receives the same gradient, so the seed learns from the task loss. A non-finite seed output
/// makes the value non-finite: the monitor reports it ([`crate::IsolationReport::nan_output`])
/// so that gate G1 can refuse the seed. [`Error::ShapeMismatch`] unless `seed` has the host's
/// shape.
pub fn straight_through(host: &Tensor, seed: &Tensor) -> Result<Tensor> {
    ensure_same_shape("seed delta", host, seed)?;
    if crate::fused::fusable(host, seed) {
        return crate::fused::apply(crate::fused::Kind::StraightThrough, host, seed);
    }
    let zero_valued = seed.sub(&seed.detach()).op("straight-through")?;
    host.add(&zero_valued).op("straight-through")
}

/// The BLENDING form: `host + alpha * delta`.
///
/// `delta` is the seed's delta (`kernel(sg(host))` in [`slot_forward`]). `alpha` is clamped to
/// `[0, 1]`; a non-finite `alpha` is [`Error::InvalidAlpha`]; [`Error::ShapeMismatch`] unless
/// `delta` has the host's shape. The host branch is **not** detached (decisions D4, revised):
/// the host activation receives the upstream gradient unchanged (identity), and `delta`
/// receives `alpha` times it. `alpha` is a plain scalar of one affine operation: changing it
/// from one step to the next rebuilds nothing. At alpha 0 the value is `host` and no gradient
/// reaches `delta` (candle prunes a zero-scaled branch).
pub fn blend(host: &Tensor, delta: &Tensor, alpha: f64) -> Result<Tensor> {
    let alpha = clamp_alpha(alpha)?;
    ensure_same_shape("seed delta", host, delta)?;
    // One fused pass where it can (the same bits); at alpha 0 the plain op, whose zero-scaled
    // branch candle prunes from the backward graph (a custom op cannot be pruned).
    if alpha > 0.0 && crate::fused::fusable(host, delta) {
        return crate::fused::apply(crate::fused::Kind::Blend(alpha), host, delta);
    }
    host.add(&delta.affine(alpha, 0.0).op("blend")?).op("blend")
}

/// Validates and clamps a blend factor to `[0, 1]`.
pub(crate) fn clamp_alpha(alpha: f64) -> Result<f64> {
    if alpha.is_finite() { Ok(alpha.clamp(0.0, 1.0)) } else { Err(Error::InvalidAlpha { alpha }) }
}

/// Validates and clamps a FOSSILIZED gradient scale to `[0, 1]`.
pub(crate) fn clamp_grad_scale(grad_scale: f64) -> Result<f64> {
    if grad_scale.is_finite() { Ok(grad_scale.clamp(0.0, 1.0)) } else { Err(Error::InvalidGradScale { grad_scale }) }
}

/// How a slot combines the host activation `h` with the seed's delta `d = kernel(sg(h))`
/// (decisions D4, revised: the host branch is never detached). `sg` is detach.
///
/// Which mode a stage uses is the caller's business (the runtime maps the seed's stage, pause
/// and cull state to a mode); see the table on [`slot_forward`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SlotMode {
    /// `h`; the kernel is not run.
    Transparent,
    /// TRAINING: `h + (d - sg(d))` — equal to `h` in value; host gradients bit-identical to a
    /// model without the seed; the seed receives the gradient `h` receives.
    StraightThrough,
    /// BLENDING: `h + alpha * d`; `alpha` finite (clamped to `[0, 1]`, [`Error::InvalidAlpha`]
    /// if not finite). Host gradient through `h` is the identity (never detached).
    Blend {
        /// The blend factor (from the [`crate::AlphaController`]).
        alpha: f64,
    },
    /// SHADOWING, PROBATIONARY: `h + d`.
    Full,
    /// FOSSILIZED: `h + delta(x)` with `x = sg(h) + grad_scale * (h - sg(h))`: value
    /// `h + delta(h)`, and the gradient that reaches `h` *through the kernel* is scaled by
    /// `grad_scale` in `[0, 1]` (the new gradient path opens gradually); the identity path of
    /// `h` is unscaled. `grad_scale` is clamped to `[0, 1]`, [`Error::InvalidGradScale`] if not
    /// finite.
    Fossil {
        /// The scale of the gradient path through the kernel into `h` (ramps from 0 to 1).
        grad_scale: f64,
    },
    /// Blend-out after a cull: `h + alpha * sg(d)`: the seed is frozen (no gradient reaches its
    /// parameters), alpha ramps to 0 ([`crate::AlphaController::blend_out`]). `alpha` is
    /// validated as in [`SlotMode::Blend`].
    BlendOut {
        /// The blend factor, ramping down to 0.
        alpha: f64,
    },
}

/// The result of [`slot_forward`]: what the slot emits, plus the seed branch when the seed ran.
#[derive(Debug, Clone)]
pub struct SlotForward {
    /// The slot's output, to be fed to the next host layer.
    pub output: Tensor,
    /// The seed branch; `None` only for [`SlotMode::Transparent`] (the kernel was not called).
    pub seed: Option<SeedBranch>,
}

/// The seed branch of one slot forward: what the isolation monitor and the shadow metrics need.
#[derive(Debug, Clone)]
pub struct SeedBranch {
    /// The very tensor the seed's kernel received: `sg(h)`, except in [`SlotMode::Fossil`]
    /// (`h` itself at `grad_scale` 1, `sg(h) + grad_scale * (h - sg(h))` in between). Pass it to
    /// [`crate::Probe::rerun`] so that the probe slices its row from it.
    pub input: Tensor,
    /// `kernel(input)`, with its graph (in [`SlotMode::BlendOut`] the output uses `sg(delta)`,
    /// but this field is the kernel's own result). The seed's residual output is
    /// `input + delta`.
    pub delta: Tensor,
}

/// The forward pass of a seed slot in `mode` (decisions D4, revised).
///
/// Write `sg` for detach, `h` for `host` and `d = kernel(sg(h))`:
///
/// | mode | stages | output | kernel input | gradient into `h` | gradient into the seed |
/// |---|---|---|---|---|---|
/// | [`Transparent`](SlotMode::Transparent) | DORMANT, GERMINATED, EMBARGOED, RESETTING, TERMINATED, paused | `h` (same tensor) | not run | identity | none |
/// | [`StraightThrough`](SlotMode::StraightThrough) | TRAINING | `h + (d - sg(d))` (value `h`) | `sg(h)` | identity, bit-identical to no seed | what `h` receives |
/// | [`Blend`](SlotMode::Blend) `{ alpha }` | BLENDING | `h + alpha * d` | `sg(h)` | identity | `alpha` × upstream |
/// | [`Full`](SlotMode::Full) | SHADOWING, PROBATIONARY | `h + d` | `sg(h)` | identity | upstream |
/// | [`Fossil`](SlotMode::Fossil) `{ grad_scale }` | FOSSILIZED | `h + delta(h)` | `sg(h) + grad_scale * (h - sg(h))` | identity + `grad_scale` × through the kernel | upstream |
/// | [`BlendOut`](SlotMode::BlendOut) `{ alpha }` | CULLED (blend-out) | `h + alpha * sg(d)` | `sg(h)` | identity | none (frozen) |
///
/// `kernel` computes the seed's delta (any [`candle_core::Module`], closures included); it is
/// called exactly once, except in `Transparent` where it is not called and the host activation
/// is returned as is (same tensor, same graph). `alpha` and `grad_scale` are validated (and
/// clamped to `[0, 1]`) before the kernel runs, so bad input costs nothing. A delta whose shape
/// differs from `host`'s is [`Error::ShapeMismatch`]; an error of the kernel comes back as
/// [`Error::Candle`] with `op = "seed kernel"`.
///
/// In `Fossil`, `grad_scale` 0 feeds the kernel `sg(h)` and `grad_scale` 1 feeds it `h` itself
/// (the graph of the undetached model `h + delta(h)`); the kernel input equals `h` in value for
/// every `grad_scale`.
pub fn slot_forward<K: Module + ?Sized>(mode: SlotMode, host: &Tensor, kernel: &K) -> Result<SlotForward> {
    let Some((mode, input, delta)) = run_seed(mode, host, kernel)? else {
        return Ok(SlotForward { output: host.clone(), seed: None });
    };
    let output = match mode {
        SlotMode::StraightThrough => straight_through(host, &delta)?,
        SlotMode::Blend { alpha } => blend(host, &delta, alpha)?,
        SlotMode::BlendOut { alpha } => blend(host, &delta.detach(), alpha)?,
        SlotMode::Full | SlotMode::Fossil { .. } => host.add(&delta).op("residual add")?,
        SlotMode::Transparent => host.clone(),
    };
    Ok(SlotForward { output, seed: Some(SeedBranch { input, delta }) })
}

/// The result of [`guarded_slot_forward`].
#[derive(Debug, Clone)]
pub struct GuardedForward {
    /// The slot's output. When the seed's delta holds a NaN or an infinity it is `host` itself in
    /// value (the seed is bypassed on the device), except in [`SlotMode::Fossil`], where a
    /// fossilized seed is part of the model and its output goes through as it is.
    pub output: Tensor,
    /// The seed branch; `None` only for [`SlotMode::Transparent`].
    pub seed: Option<SeedBranch>,
    /// `Σd − Σd` as an f32 scalar (shape `()`) on the device: `0.0` when the delta is finite,
    /// NaN when it holds a NaN or an infinity. Nothing reads it here; the caller reads it at a
    /// safe point, together with whatever else it reads there. `None` only for
    /// [`SlotMode::Transparent`].
    pub finite_check: Option<Tensor>,
}

/// [`slot_forward`] with the non-finite guard on the device: no host–device synchronisation.
///
/// Same modes, validation, kernel call and gradients as [`slot_forward`] for a finite delta (the
/// same values, to the bit, on the CPU). For a delta that holds a NaN or an infinity the output is
/// the host activation in every mode but [`SlotMode::Fossil`], and no gradient reaches the
/// delta; [`GuardedForward::finite_check`] says which case it was, when read. The guard costs one
/// reduction over the delta and no device read; the blend, straight-through and residual-add forms
/// take the gate inside their fused kernel (f32, bf16, f16 on the CPU and on CUDA), other dtypes
/// and devices select with `where_cond`.
pub fn guarded_slot_forward<K: Module + ?Sized>(mode: SlotMode, host: &Tensor, kernel: &K) -> Result<GuardedForward> {
    let Some((mode, input, delta)) = run_seed(mode, host, kernel)? else {
        return Ok(GuardedForward { output: host.clone(), seed: None, finite_check: None });
    };
    let check = finite_check(&delta)?;
    let output = match mode {
        SlotMode::Fossil { .. } => host.add(&delta).op("residual add")?,
        SlotMode::StraightThrough => gated(Kind::StraightThrough, host, &delta, &check)?,
        SlotMode::Blend { alpha } => gated(Kind::Blend(alpha), host, &delta, &check)?,
        SlotMode::BlendOut { alpha } => gated(Kind::Blend(alpha), host, &delta.detach(), &check)?,
        SlotMode::Full => gated(Kind::Add, host, &delta, &check)?,
        SlotMode::Transparent => host.clone(),
    };
    Ok(GuardedForward { output, seed: Some(SeedBranch { input, delta }), finite_check: Some(check) })
}

/// `Σt − Σt` as an f32 scalar (shape `()`) on `t`'s device, nothing read: `0.0` when every
/// element of `t` is finite, NaN otherwise (a NaN survives the sum; an infinity makes `∞ − ∞`).
/// One reduction. [`GuardedForward::finite_check`] is this of the delta; the isolation monitor
/// and `kasmina-runtime` use it for their own non-finite checks.
pub fn finite_check(t: &Tensor) -> Result<Tensor> {
    let sum = t.detach().sum_all().and_then(|s| s.to_dtype(DType::F32)).op("finite check")?;
    sum.sub(&sum).op("finite check")
}

/// `kind` applied where the check is 0, `host` elsewhere: fused where it can, else `where_cond`
/// (and the plain op at alpha 0, as [`blend`]).
fn gated(kind: Kind, host: &Tensor, delta: &Tensor, check: &Tensor) -> Result<Tensor> {
    ensure_same_shape("seed delta", host, delta)?;
    let gate = check.eq(0f64).op("finite gate")?;
    let fusable = crate::fused::fusable(host, delta) && kind != Kind::Blend(0.0);
    if fusable {
        return crate::fused::apply_gated(kind, host, delta, &gate);
    }
    let plain = match kind {
        Kind::Blend(alpha) => blend(host, delta, alpha)?,
        Kind::StraightThrough => straight_through(host, delta)?,
        Kind::Add => host.add(delta).op("residual add")?,
    };
    gate.broadcast_as(host.shape()).and_then(|g| g.where_cond(&plain, host)).op("finite gate")
}

/// The seed half of a slot forward: the mode with its scalars validated (before the kernel runs,
/// so bad input costs nothing), the kernel's input for it and the delta. `None` in
/// [`SlotMode::Transparent`] (the kernel is not run).
fn run_seed<K: Module + ?Sized>(
    mode: SlotMode,
    host: &Tensor,
    kernel: &K,
) -> Result<Option<(SlotMode, Tensor, Tensor)>> {
    let mode = match mode {
        SlotMode::Transparent => return Ok(None),
        SlotMode::Blend { alpha } => SlotMode::Blend { alpha: clamp_alpha(alpha)? },
        SlotMode::BlendOut { alpha } => SlotMode::BlendOut { alpha: clamp_alpha(alpha)? },
        SlotMode::Fossil { grad_scale } => SlotMode::Fossil { grad_scale: clamp_grad_scale(grad_scale)? },
        m @ (SlotMode::StraightThrough | SlotMode::Full) => m,
    };
    let input = match mode {
        SlotMode::Fossil { grad_scale } => fossil_input(host, grad_scale)?,
        _ => seed_input(host),
    };
    let delta = seed_delta(host, &input, kernel)?;
    Ok(Some((mode, input, delta)))
}

/// The FOSSILIZED kernel input `sg(h) + grad_scale * (h - sg(h))` (equal to `h` in value), with
/// the two ends short-cut: `sg(h)` at 0, `h` itself at 1. `grad_scale` is already in `[0, 1]`.
fn fossil_input(host: &Tensor, grad_scale: f64) -> Result<Tensor> {
    if grad_scale <= 0.0 {
        return Ok(seed_input(host));
    }
    if grad_scale >= 1.0 {
        return Ok(host.clone());
    }
    let stopped = host.detach();
    host.sub(&stopped).and_then(|g| g.affine(grad_scale, 0.0)).and_then(|g| stopped.add(&g)).op("fossil gradient scale")
}

/// `kernel(input)`, checked to have the host's shape.
fn seed_delta<K: Module + ?Sized>(host: &Tensor, input: &Tensor, kernel: &K) -> Result<Tensor> {
    let delta = kernel.forward(input).op("seed kernel")?;
    ensure_same_shape("seed kernel delta", host, &delta)?;
    Ok(delta)
}

/// [`Error::ShapeMismatch`] unless `actual` has `expected`'s shape.
pub(crate) fn ensure_same_shape(what: &'static str, expected: &Tensor, actual: &Tensor) -> Result<()> {
    if expected.dims() == actual.dims() {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { what, expected: expected.dims().to_vec(), actual: actual.dims().to_vec() })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use candle_core::{DType, Device, Tensor};

    use super::*;

    fn host() -> Tensor {
        Tensor::arange(0f32, 6.0, &Device::Cpu).unwrap().reshape((2, 3)).unwrap()
    }

    #[test]
    fn alpha_and_grad_scale_are_clamped_and_must_be_finite() {
        assert_eq!(clamp_alpha(1.5).unwrap(), 1.0);
        assert_eq!(clamp_alpha(-0.5).unwrap(), 0.0);
        assert_eq!(clamp_alpha(0.25).unwrap(), 0.25);
        assert!(matches!(clamp_alpha(f64::NAN), Err(Error::InvalidAlpha { .. })));
        assert!(matches!(clamp_alpha(f64::INFINITY), Err(Error::InvalidAlpha { .. })));
        assert_eq!(clamp_grad_scale(2.0).unwrap(), 1.0);
        assert_eq!(clamp_grad_scale(-1.0).unwrap(), 0.0);
        assert!(matches!(clamp_grad_scale(f64::NAN), Err(Error::InvalidGradScale { .. })));
        assert!(matches!(clamp_grad_scale(f64::NEG_INFINITY), Err(Error::InvalidGradScale { .. })));
    }

    #[test]
    fn bad_scalars_do_not_run_the_kernel() {
        let h = host();
        let ran = std::cell::Cell::new(false);
        let kernel = |x: &Tensor| {
            ran.set(true);
            x.zeros_like()
        };
        for mode in [
            SlotMode::Blend { alpha: f64::NAN },
            SlotMode::BlendOut { alpha: f64::INFINITY },
            SlotMode::Fossil { grad_scale: f64::NAN },
        ] {
            let err = slot_forward(mode, &h, &kernel).unwrap_err();
            assert!(matches!(err, Error::InvalidAlpha { .. } | Error::InvalidGradScale { .. }), "{mode:?}: {err}");
        }
        assert!(!ran.get());
    }

    #[test]
    fn transparent_returns_the_host_tensor_without_running_the_kernel() {
        let h = host();
        let kernel = |_: &Tensor| -> candle_core::Result<Tensor> { panic!("the kernel must not run") };
        let fwd = slot_forward(SlotMode::Transparent, &h, &kernel).unwrap();
        assert_eq!(fwd.output.id(), h.id());
        assert!(fwd.seed.is_none());
    }

    #[test]
    fn every_other_mode_runs_the_kernel_once_and_reports_its_branch() {
        let h = host();
        let calls = std::cell::Cell::new(0);
        let kernel = |x: &Tensor| {
            calls.set(calls.get() + 1);
            x.affine(2.0, 1.0)
        };
        let d: Vec<Vec<f32>> = h.affine(2.0, 1.0).unwrap().to_vec2().unwrap();
        let hv: Vec<Vec<f32>> = h.to_vec2().unwrap();
        let expect = |scale: f32| -> Vec<Vec<f32>> {
            hv.iter().zip(&d).map(|(hr, dr)| hr.iter().zip(dr).map(|(a, b)| a + scale * b).collect()).collect()
        };
        let cases = [
            (SlotMode::StraightThrough, 0.0),
            (SlotMode::Blend { alpha: 0.5 }, 0.5),
            (SlotMode::Blend { alpha: 3.0 }, 1.0),
            (SlotMode::Full, 1.0),
            (SlotMode::Fossil { grad_scale: 0.5 }, 1.0),
            (SlotMode::BlendOut { alpha: 0.25 }, 0.25),
        ];
        for (i, (mode, scale)) in cases.into_iter().enumerate() {
            let fwd = slot_forward(mode, &h, &kernel).unwrap();
            assert_eq!(calls.get(), i + 1, "{mode:?}");
            assert_eq!(fwd.output.to_vec2::<f32>().unwrap(), expect(scale), "{mode:?}");
            let branch = fwd.seed.unwrap();
            assert_eq!(branch.input.to_vec2::<f32>().unwrap(), hv, "{mode:?}");
            assert_eq!(branch.delta.to_vec2::<f32>().unwrap(), d, "{mode:?}");
        }
    }

    #[test]
    fn a_delta_of_another_shape_is_a_shape_mismatch() {
        let h = host();
        let kernel = |x: &Tensor| x.narrow(1, 0, 2);
        let err = slot_forward(SlotMode::Full, &h, &kernel).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { ref expected, ref actual, .. }
            if expected == &[2, 3] && actual == &[2, 2]));
        let other = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(blend(&h, &other, 0.5), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(straight_through(&h, &other), Err(Error::ShapeMismatch { .. })));
    }
}
