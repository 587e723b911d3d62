//! Sequence kernels: activations `[batch, time, width]`, features last (a transformer's
//! residual stream). Linear weights use PyTorch's layout `[out, in]`.

use candle_core::{D, DType, Device, Result, Tensor};

use super::dense::linear_t;
use super::spec::{Fill, Params, Spec, fan_in, spec};

/// Epsilon of the layer norm.
const NORM_EPS: f64 = 1e-5;

/// Attention heads of BP202 for a model width `d`: 4 when `d` is a multiple of 4, else 1.
pub(super) fn heads_for(d: usize) -> usize {
    if d.is_multiple_of(4) { 4 } else { 1 }
}

fn layer_norm_specs(d: usize) -> [Spec; 2] {
    [spec("ln.weight", &[d], Fill::Ones), spec("ln.bias", &[d], Fill::Zeros)]
}

/// BP200: layer norm → `d → hidden` (drawn) → GELU → `hidden → d` (zero).
pub(super) fn prenorm_mlp_specs(d: usize, hidden: usize) -> Vec<Spec> {
    let mut specs = layer_norm_specs(d).to_vec();
    specs.extend([
        spec("fc1.weight", &[hidden, d], fan_in(d)),
        spec("fc1.bias", &[hidden], Fill::Zeros),
        spec("fc2.weight", &[d, hidden], Fill::Zeros),
        spec("fc2.bias", &[d], Fill::Zeros),
    ]);
    specs
}

/// BP202: layer norm → fused q, k, v projection (drawn) → out projection (zero).
pub(super) fn causal_attention_specs(d: usize) -> Vec<Spec> {
    let mut specs = layer_norm_specs(d).to_vec();
    specs.extend([
        spec("qkv.weight", &[3 * d, d], fan_in(d)),
        spec("qkv.bias", &[3 * d], Fill::Zeros),
        spec("out.weight", &[d, d], Fill::Zeros),
        spec("out.bias", &[d], Fill::Zeros),
    ]);
    specs
}

/// Layer norm over the last axis with a learnable scale and shift (biased variance, ε = 1e-5).
pub(super) fn layer_norm(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let std = (centred.sqr()?.mean_keepdim(D::Minus1)? + NORM_EPS)?.sqrt()?;
    centred.broadcast_div(&std)?.broadcast_mul(scale)?.broadcast_add(shift)
}

/// BP200's delta.
pub(super) fn prenorm_mlp(x: &Tensor, p: &Params<'_>) -> Result<Tensor> {
    let h = layer_norm(x, &p("ln.weight")?, &p("ln.bias")?)?;
    let h = linear_t(&h, &p("fc1.weight")?, &p("fc1.bias")?)?.gelu_erf()?;
    linear_t(&h, &p("fc2.weight")?, &p("fc2.bias")?)
}

/// The additive causal mask `[t, t]`: 0 on and below the diagonal, −∞ above it (position `i`
/// attends to positions `≤ i`; the diagonal is always open, so no row is all −∞).
pub(super) fn causal_mask(t: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> =
        (0..t).flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(data, (t, t), device)?.to_dtype(dtype)
}

/// BP202's delta for `x` `[B, T, D]`, with `mask` from [`causal_mask`] for `T`.
pub(super) fn causal_attention(x: &Tensor, p: &Params<'_>, heads: usize, mask: &Tensor) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    if heads == 0 || !d.is_multiple_of(heads) {
        candle_core::bail!("causal attention: {heads} heads do not divide the width {d}");
    }
    let hd = d / heads;
    let h = layer_norm(x, &p("ln.weight")?, &p("ln.bias")?)?;
    let qkv = linear_t(&h, &p("qkv.weight")?, &p("qkv.bias")?)?;
    // [B, T, 3D] → three [B, H, T, hd].
    let split = |i: usize| qkv.narrow(2, i * d, d)?.reshape((b, t, heads, hd))?.transpose(1, 2)?.contiguous();
    let (q, k, v) = (split(0)?, split(1)?, split(2)?);
    let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(mask)?;
    let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
    let y = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
    linear_t(&y, &p("out.weight")?, &p("out.bias")?)
}

/// FLOPs per input element of BP200 with `hidden` units: `4h + 9h/D + 8` (`16D + 44` at h = 4D).
pub(super) fn prenorm_mlp_flops(d: usize, hidden: usize) -> f64 {
    let (d, h) = (d as f64, hidden as f64);
    4.0 * h + 9.0 * h / d + 8.0
}

/// FLOPs per input element of BP202 over `t` positions: `8D + 11 + 4T + 7HT/D` (the masked
/// half of the scores is computed too).
pub(super) fn causal_attention_flops(d: usize, heads: usize, t: usize) -> f64 {
    let (d, h, t) = (d as f64, heads as f64, t.max(1) as f64);
    8.0 * d + 11.0 + 4.0 * t + 7.0 * h * t / d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_causal_mask_opens_the_diagonal_and_below() {
        let m = causal_mask(4, DType::F32, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in m.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(v, if j > i { f32::NEG_INFINITY } else { 0.0 }, "({i}, {j})");
            }
        }
    }

    #[test]
    fn heads_divide_the_width() {
        assert_eq!((heads_for(4), heads_for(16), heads_for(5), heads_for(6), heads_for(1)), (4, 4, 1, 1, 1));
    }

    #[test]
    fn layer_norm_centres_and_scales_each_token() {
        let x = (Tensor::arange(0f32, 24.0, &Device::Cpu).unwrap().cos().unwrap().affine(4.0, -2.0))
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        let (ones, zeros) =
            (Tensor::ones(4, DType::F32, &Device::Cpu).unwrap(), Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap());
        let y = layer_norm(&x, &ones, &zeros).unwrap();
        let mean = y.mean_keepdim(D::Minus1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let var = y.sqr().unwrap().mean_keepdim(D::Minus1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(mean.iter().all(|m| m.abs() < 1e-5), "{mean:?}");
        assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-3), "{var:?}");
    }
}
