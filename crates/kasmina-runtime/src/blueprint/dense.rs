//! Dense kernels: features on the last axis of an input of any rank ≥ 2 (`[batch, width]`, or
//! `[batch, time, width]` — a dense kernel also serves a sequence slot, token by token).

use candle_core::{Result, Tensor};

use super::spec::{Fill, Params, Spec, fan_in, spec};

/// `relu(x W1ᵀ + b1) W2ᵀ + b2` (BP001, BP004, BP900): `down` drawn, `up` zero.
pub(super) fn residual_mlp_specs(width: usize, hidden: usize) -> Vec<Spec> {
    vec![
        spec("down.weight", &[hidden, width], fan_in(width)),
        spec("down.bias", &[hidden], Fill::Zeros),
        spec("up.weight", &[width, hidden], Fill::Zeros),
        spec("up.bias", &[width], Fill::Zeros),
    ]
}

/// `(x A) B` (BP002, BP201): `A` drawn, `B` zero.
pub(super) fn low_rank_specs(width: usize, rank: usize) -> Vec<Spec> {
    vec![spec("a", &[width, rank], fan_in(width)), spec("b", &[rank, width], Fill::Zeros)]
}

/// `x W + b` (BP003, BP901): both zero.
pub(super) fn linear_specs(width: usize) -> Vec<Spec> {
    vec![spec("weight", &[width, width], Fill::Zeros), spec("bias", &[width], Fill::Zeros)]
}

/// `x wᵀ + b` over the last axis of `x` (any rank ≥ 2), for a PyTorch-layout `w` `[out, in]`.
pub(super) fn linear_t(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.broadcast_matmul(&w.t()?)?.broadcast_add(b)
}

/// The residual MLP's delta.
pub(super) fn residual_mlp(x: &Tensor, p: &Params<'_>) -> Result<Tensor> {
    let h = linear_t(x, &p("down.weight")?, &p("down.bias")?)?.relu()?;
    linear_t(&h, &p("up.weight")?, &p("up.bias")?)
}

/// The low-rank adapter's delta.
pub(super) fn low_rank(x: &Tensor, p: &Params<'_>) -> Result<Tensor> {
    x.broadcast_matmul(&p("a")?)?.broadcast_matmul(&p("b")?)
}

/// The zero-initialised linear delta (`weight` is `[in, out]`).
pub(super) fn linear(x: &Tensor, p: &Params<'_>) -> Result<Tensor> {
    x.broadcast_matmul(&p("weight")?)?.broadcast_add(&p("bias")?)
}

/// FLOPs per input element of the residual MLP: `4h + 2h/W + 1`.
pub(super) fn residual_mlp_flops(width: usize, hidden: usize) -> f64 {
    let (w, h) = (width as f64, hidden as f64);
    4.0 * h + 2.0 * h / w + 1.0
}

/// FLOPs per input element of a low-rank adapter: `4r`.
pub(super) fn low_rank_flops(rank: usize) -> f64 {
    4.0 * rank as f64
}

/// FLOPs per input element of the linear delta: `2W + 1`.
pub(super) fn linear_flops(width: usize) -> f64 {
    2.0 * width as f64 + 1.0
}
