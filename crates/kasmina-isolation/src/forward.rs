//! The forward pass of a seed slot (decisions D4) as pure functions over candle tensors.
//!
//! Seeds are residual: a kernel computes a *delta*, and the seed's output is its input plus that
//! delta ([`seed_output`]). The residual add lives in this crate, not in the caller, so that the
//! slot forward and the isolation probe ([`crate::Probe::rerun`]) run exactly the same seed
//! computation: an undetached input then reaches the host through the residual path as well as
//! through the kernel, and the probe sees it.

use candle_core::{Module, Tensor};
use leyline::SeedLifecycleStage;

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
    let delta = kernel.forward(input).op("seed kernel")?;
    ensure_same_shape("seed kernel delta", input, &delta)?;
    input.add(&delta).op("residual add")
}

/// The TRAINING form: `host + (seed - seed.detach())`.
///
/// In value this is `host` (exactly, for a finite seed output: `s - s` is `0`); in backward the
/// host activation receives the upstream gradient unchanged (its gradients equal those of the
/// model without a seed) and the seed's output receives the same gradient, so the seed learns
/// from the task loss. A non-finite seed output makes the value non-finite: the monitor reports
/// it ([`crate::IsolationReport::nan_output`]) so that gate G1 can refuse the seed.
pub fn straight_through(host: &Tensor, seed: &Tensor) -> Result<Tensor> {
    ensure_same_shape("seed output", host, seed)?;
    let zero_valued = seed.sub(&seed.detach()).op("straight-through")?;
    host.add(&zero_valued).op("straight-through")
}

/// The BLENDING form: `alpha * seed + (1 - alpha) * host.detach()`.
///
/// `alpha` is clamped to `[0, 1]`; a non-finite `alpha` is [`Error::InvalidAlpha`]. The host
/// branch is detached, so the host receives no gradient through the blend and the seed receives
/// `alpha` times the upstream gradient. `alpha` is a plain scalar of the two affine operations:
/// changing it from one step to the next rebuilds nothing.
pub fn blend(host: &Tensor, seed: &Tensor, alpha: f64) -> Result<Tensor> {
    let alpha = clamp_alpha(alpha)?;
    ensure_same_shape("seed output", host, seed)?;
    let seed_part = seed.affine(alpha, 0.0).op("blend")?;
    let host_part = host.detach().affine(1.0 - alpha, 0.0).op("blend")?;
    seed_part.add(&host_part).op("blend")
}

/// Validates and clamps a blend factor to `[0, 1]`.
pub(crate) fn clamp_alpha(alpha: f64) -> Result<f64> {
    if alpha.is_finite() { Ok(alpha.clamp(0.0, 1.0)) } else { Err(Error::InvalidAlpha { alpha }) }
}

/// The result of [`slot_output`]: what the slot emits, plus the seed branch when the seed ran.
#[derive(Debug, Clone)]
pub struct SlotForward {
    /// The slot's output, to be fed to the next host layer.
    pub output: Tensor,
    /// The seed branch, `None` in the stages where the seed does not run (its kernel was not
    /// called).
    pub seed: Option<SeedBranch>,
}

/// The seed branch of one slot forward: what the isolation monitor and the shadow metrics need.
#[derive(Debug, Clone)]
pub struct SeedBranch {
    /// The very tensor the seed's kernel received (detached except in FOSSILIZED). Pass it to
    /// [`crate::Probe::rerun`] so that the probe slices its row from it.
    pub input: Tensor,
    /// The seed's residual output `input + kernel(input)`, before blending.
    pub output: Tensor,
}

/// The forward pass of a seed slot for `stage` (decisions D4).
///
/// | stage | output | seed input |
/// |---|---|---|
/// | `paused` (any stage) | `host` | seed not run |
/// | DORMANT, GERMINATED, CULLED, EMBARGOED, RESETTING, TERMINATED | `host` | seed not run |
/// | TRAINING | [`straight_through`]`(host, seed)` (value = host) | detached |
/// | BLENDING | [`blend`]`(host, seed, alpha)` | detached |
/// | SHADOWING, PROBATIONARY | the seed's output (alpha = 1, host branch detached) | detached |
/// | FOSSILIZED | the seed's output | **not** detached: the seed is part of the model |
/// | UNKNOWN | [`Error::UnknownStage`] | — |
///
/// `kernel` computes the seed's delta (see [`seed_output`]); it is called at most once, and only
/// in the stages where the seed runs. `alpha` is read only in BLENDING (clamped to `[0, 1]`,
/// [`Error::InvalidAlpha`] if not finite). The host activation is returned as is (same tensor,
/// same graph) in the stages where the slot is transparent.
pub fn slot_output<K: Module + ?Sized>(
    stage: SeedLifecycleStage,
    paused: bool,
    host: &Tensor,
    alpha: f64,
    kernel: &K,
) -> Result<SlotForward> {
    use SeedLifecycleStage as S;
    let transparent = || SlotForward { output: host.clone(), seed: None };
    if stage == S::SeedStageUnknown {
        return Err(Error::UnknownStage { stage });
    }
    if paused {
        return Ok(transparent());
    }
    let input = match stage {
        S::SeedStageTraining | S::SeedStageBlending | S::SeedStageShadowing | S::SeedStageProbationary => {
            seed_input(host)
        }
        S::SeedStageFossilized => host.clone(),
        S::SeedStageUnknown
        | S::SeedStageDormant
        | S::SeedStageGerminated
        | S::SeedStageCulled
        | S::SeedStageEmbargoed
        | S::SeedStageResetting
        | S::SeedStageTerminated => return Ok(transparent()),
    };
    // Validate alpha before running the kernel, so bad input costs nothing.
    let alpha = if stage == S::SeedStageBlending { clamp_alpha(alpha)? } else { 1.0 };
    let seed = seed_output(&input, kernel)?;
    let output = match stage {
        S::SeedStageTraining => straight_through(host, &seed)?,
        S::SeedStageBlending => blend(host, &seed, alpha)?,
        _ => seed.clone(),
    };
    Ok(SlotForward { output, seed: Some(SeedBranch { input, output: seed }) })
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
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn unknown_stage_is_an_error_even_when_paused() {
        let host = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let kernel = |x: &Tensor| x.zeros_like();
        let err = slot_output(SeedLifecycleStage::SeedStageUnknown, true, &host, 0.5, &kernel).unwrap_err();
        assert!(matches!(err, Error::UnknownStage { stage: SeedLifecycleStage::SeedStageUnknown }));
        assert_eq!(err.to_string(), "stage SEED_STAGE_UNKNOWN has no slot output");
    }

    #[test]
    fn alpha_is_clamped_and_must_be_finite() {
        assert_eq!(clamp_alpha(1.5).unwrap(), 1.0);
        assert_eq!(clamp_alpha(-0.5).unwrap(), 0.0);
        assert_eq!(clamp_alpha(0.25).unwrap(), 0.25);
        assert!(matches!(clamp_alpha(f64::NAN), Err(Error::InvalidAlpha { .. })));
        assert!(matches!(clamp_alpha(f64::INFINITY), Err(Error::InvalidAlpha { .. })));
    }

    #[test]
    fn bad_alpha_in_blending_does_not_run_the_kernel() {
        let host = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let ran = std::cell::Cell::new(false);
        let kernel = |x: &Tensor| {
            ran.set(true);
            x.zeros_like()
        };
        let err = slot_output(SeedLifecycleStage::SeedStageBlending, false, &host, f64::NAN, &kernel).unwrap_err();
        assert!(matches!(err, Error::InvalidAlpha { .. }));
        assert!(!ran.get());
    }
}
