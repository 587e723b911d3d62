//! The fused slot kernels behind `blend` and `straight_through` (CPU; decisions D21): the same
//! bits as the plain candle expressions, in value and in both gradients, for f32, bf16 and f16.

use candle_core::{DType, Device, Tensor, Var};
use kasmina_isolation::{blend, straight_through};

/// Values with the awkward cases in them: ±0, tiny and large magnitudes, a spread.
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

type Run = (Vec<u32>, Vec<u32>, Option<Vec<u32>>);

/// Value and both gradients of `f(h, d)` under the loss `sum(out · w)`.
fn run(dtype: DType, f: impl Fn(&Tensor, &Tensor) -> Tensor) -> Run {
    let t = |seed| Tensor::from_vec(values(30, seed), (3, 2, 5), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
    let (h, d) = (Var::from_tensor(&t(1)).unwrap(), Var::from_tensor(&t(4)).unwrap());
    let out = f(h.as_tensor(), d.as_tensor());
    let grads = (&out * &t(9)).unwrap().sum_all().unwrap().backward().unwrap();
    (bits(&out), bits(grads.get(h.as_tensor()).unwrap()), grads.get(d.as_tensor()).map(bits))
}

#[test]
fn blend_is_the_plain_expression_to_the_bit_in_value_and_gradients() {
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for alpha in [0.0, 0.125, 0.37, 1.0] {
            let plain = run(dtype, |h, d| h.add(&d.affine(alpha, 0.0).unwrap()).unwrap());
            let fused = run(dtype, |h, d| blend(h, d, alpha).unwrap());
            assert_eq!(plain, fused, "{dtype:?} alpha {alpha}");
        }
    }
    // At alpha 0 no gradient reaches the delta (the plain op, pruned by candle).
    assert_eq!(run(DType::F32, |h, d| blend(h, d, 0.0).unwrap()).2, None);
}

#[test]
fn straight_through_is_the_plain_expression_to_the_bit() {
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let plain = run(dtype, |h, d| h.add(&d.sub(&d.detach()).unwrap()).unwrap());
        let fused = run(dtype, |h, d| straight_through(h, d).unwrap());
        assert_eq!(plain, fused, "{dtype:?}");
    }
}

#[test]
fn strided_inputs_and_other_dtypes_give_the_plain_values() {
    let h = Tensor::from_vec(values(12, 2), (3, 4), &Device::Cpu).unwrap().t().unwrap();
    let d = Tensor::from_vec(values(12, 5), (4, 3), &Device::Cpu).unwrap();
    let plain = |h: &Tensor, d: &Tensor| bits(&h.add(&d.affine(0.5, 0.0).unwrap()).unwrap());
    assert_eq!(bits(&blend(&h, &d, 0.5).unwrap()), plain(&h, &d), "a strided host");
    let (h64, d64) = (h.to_dtype(DType::F64).unwrap(), d.to_dtype(DType::F64).unwrap());
    assert_eq!(bits(&blend(&h64, &d64, 0.5).unwrap()), plain(&h64, &d64), "f64 takes the plain op");
}
