//! Image kernels: activations `[batch, channels, height, width]`, the slot's width being the
//! channel count `C` (axis 1). Convolution weights use PyTorch's layout `[out, in/groups, kh, kw]`.

use candle_core::{Result, Tensor};

use super::spec::{Fill, Params, Spec, fan_in, spec};

/// Epsilon of the group norm.
const NORM_EPS: f64 = 1e-5;

/// Number of groups of BP100's group norm for `channels`: the largest divisor of `C` that is at
/// most `min(32, C/4)` (at least 4 channels per group), 1 when none is.
pub(super) fn norm_groups(channels: usize) -> usize {
    let cap = (channels / 4).min(32);
    (1..=cap).rev().find(|g| channels.is_multiple_of(*g)).unwrap_or(1)
}

/// BP100: 3×3 conv (drawn) → group norm (scale 1, shift 0) → ReLU → 1×1 conv (zero).
pub(super) fn conv_residual_specs(c: usize) -> Vec<Spec> {
    vec![
        spec("conv1.weight", &[c, c, 3, 3], fan_in(9 * c)),
        spec("conv1.bias", &[c], Fill::Zeros),
        spec("norm.weight", &[c], Fill::Ones),
        spec("norm.bias", &[c], Fill::Zeros),
        spec("conv2.weight", &[c, c, 1, 1], Fill::Zeros),
        spec("conv2.bias", &[c], Fill::Zeros),
    ]
}

/// BP101: depthwise 3×3 conv (drawn) → ReLU → pointwise 1×1 conv (zero).
pub(super) fn depthwise_separable_specs(c: usize) -> Vec<Spec> {
    vec![
        spec("dw.weight", &[c, 1, 3, 3], fan_in(9)),
        spec("dw.bias", &[c], Fill::Zeros),
        spec("pw.weight", &[c, c, 1, 1], Fill::Zeros),
        spec("pw.bias", &[c], Fill::Zeros),
    ]
}

/// BP102: squeeze (C → r, drawn) and excite (r → C, zero) layers of the channel gate.
pub(super) fn squeeze_excite_specs(c: usize, r: usize) -> Vec<Spec> {
    vec![
        spec("fc1.weight", &[r, c], fan_in(c)),
        spec("fc1.bias", &[r], Fill::Zeros),
        spec("fc2.weight", &[c, r], Fill::Zeros),
        spec("fc2.bias", &[c], Fill::Zeros),
    ]
}

/// BP103: 1×1 conv C → r (drawn), then r → C (zero), without biases.
pub(super) fn conv_low_rank_specs(c: usize, r: usize) -> Vec<Spec> {
    vec![spec("a", &[r, c, 1, 1], fan_in(c)), spec("b", &[c, r, 1, 1], Fill::Zeros)]
}

/// `conv2d(x, w) + b` with stride 1, for a bias `[C_out]`.
fn conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, padding: usize, groups: usize) -> Result<Tensor> {
    let y = x.conv2d(w, padding, 1, 1, groups)?;
    match b {
        Some(b) => y.broadcast_add(&per_channel(b)?),
        None => Ok(y),
    }
}

/// A `[C]` vector as `[1, C, 1, 1]`, to broadcast over an image.
fn per_channel(v: &Tensor) -> Result<Tensor> {
    v.reshape((1, v.elem_count(), 1, 1))
}

/// Group norm over `[B, C, H, W]` with a learnable per-channel scale and shift (biased
/// variance, ε = 1e-5, as PyTorch's `GroupNorm`).
pub(super) fn group_norm(x: &Tensor, groups: usize, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let g = x.reshape((b, groups, (c / groups) * h * w))?;
    let centred = g.broadcast_sub(&g.mean_keepdim(2)?)?;
    let std = (centred.sqr()?.mean_keepdim(2)? + NORM_EPS)?.sqrt()?;
    let normed = centred.broadcast_div(&std)?.reshape((b, c, h, w))?;
    normed.broadcast_mul(&per_channel(scale)?)?.broadcast_add(&per_channel(shift)?)
}

/// BP100's delta.
pub(super) fn conv_residual(x: &Tensor, p: &Params<'_>) -> Result<Tensor> {
    let c = x.dim(1)?;
    let h = conv(x, &p("conv1.weight")?, Some(&p("conv1.bias")?), 1, 1)?;
    let h = group_norm(&h, norm_groups(c), &p("norm.weight")?, &p("norm.bias")?)?.relu()?;
    conv(&h, &p("conv2.weight")?, Some(&p("conv2.bias")?), 0, 1)
}

/// BP101's delta.
pub(super) fn depthwise_separable(x: &Tensor, p: &Params<'_>) -> Result<Tensor> {
    let c = x.dim(1)?;
    let h = conv(x, &p("dw.weight")?, Some(&p("dw.bias")?), 1, c)?.relu()?;
    conv(&h, &p("pw.weight")?, Some(&p("pw.bias")?), 0, 1)
}

/// BP102's delta: `x ⊙ tanh(s)` with `s = fc2(relu(fc1(mean over H, W of x))) ` per sample and
/// channel, so the delta is zero while `fc2` is.
pub(super) fn squeeze_excite(x: &Tensor, p: &Params<'_>) -> Result<Tensor> {
    let (b, c, _, _) = x.dims4()?;
    let pooled = x.mean_keepdim((2, 3))?.reshape((b, c))?;
    let s = super::dense::linear_t(&pooled, &p("fc1.weight")?, &p("fc1.bias")?)?.relu()?;
    let s = super::dense::linear_t(&s, &p("fc2.weight")?, &p("fc2.bias")?)?;
    x.broadcast_mul(&s.tanh()?.reshape((b, c, 1, 1))?)
}

/// BP103's delta.
pub(super) fn conv_low_rank(x: &Tensor, p: &Params<'_>) -> Result<Tensor> {
    let h = conv(x, &p("a")?, None, 0, 1)?;
    conv(&h, &p("b")?, None, 0, 1)
}

/// FLOPs per input element of BP100: `20C + 10`.
pub(super) fn conv_residual_flops(c: usize) -> f64 {
    20.0 * c as f64 + 10.0
}

/// FLOPs per input element of BP101: `2C + 21`.
pub(super) fn depthwise_separable_flops(c: usize) -> f64 {
    2.0 * c as f64 + 21.0
}

/// FLOPs per input element of BP102 over `pixels = H·W`: `2 + (4rC + 2r + 5C) / (C·H·W)`.
pub(super) fn squeeze_excite_flops(c: usize, r: usize, pixels: usize) -> f64 {
    let (c, r, n) = (c as f64, r as f64, pixels.max(1) as f64);
    2.0 + (4.0 * r * c + 2.0 * r + 5.0 * c) / (c * n)
}

/// FLOPs per input element of BP103: `4r`.
pub(super) fn conv_low_rank_flops(r: usize) -> f64 {
    4.0 * r as f64
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    #[test]
    fn norm_groups_divide_the_channels_with_at_least_four_each() {
        for (c, g) in [(1, 1), (3, 1), (5, 1), (8, 2), (12, 3), (16, 4), (64, 16), (128, 32), (256, 32), (96, 24)] {
            assert_eq!(norm_groups(c), g, "C = {c}");
        }
        for c in 1..300 {
            let g = norm_groups(c);
            assert!(c.is_multiple_of(g) && (g == 1 || c / g >= 4) && g <= 32, "C = {c}: {g}");
        }
    }

    #[test]
    fn group_norm_centres_and_scales_each_group() {
        let (b, c, h, w) = (2, 8, 3, 5);
        let x = (Tensor::arange(0f32, (b * c * h * w) as f32, &Device::Cpu).unwrap().sin().unwrap().affine(3.0, 1.5))
            .unwrap()
            .reshape((b, c, h, w))
            .unwrap();
        let (ones, zeros) =
            (Tensor::ones(c, DType::F32, &Device::Cpu).unwrap(), Tensor::zeros(c, DType::F32, &Device::Cpu).unwrap());
        let y = group_norm(&x, 2, &ones, &zeros).unwrap().reshape((b, 2, c / 2 * h * w)).unwrap();
        let mean = y.mean_keepdim(2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let var = y.sqr().unwrap().mean_keepdim(2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(mean.iter().all(|m| m.abs() < 1e-5), "{mean:?}");
        assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-3), "{var:?}");
    }
}
