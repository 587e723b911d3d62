//! The fused slot kernels behind `blend`, `straight_through` and `guarded_slot_forward` (decisions
//! D21, D27): the same bits as the plain candle expressions, in value and in both gradients, for
//! f32, bf16 and f16 on the CPU; with the `cuda` feature, the CUDA kernels give the CPU's bits.

use candle_core::{DType, Device, Tensor, Var};
use kasmina_isolation::{SlotMode, blend, guarded_slot_forward, slot_forward, straight_through};

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

/// Every mode that runs the kernel, with its plain expression.
fn modes() -> Vec<SlotMode> {
    vec![
        SlotMode::StraightThrough,
        SlotMode::Blend { alpha: 0.37 },
        SlotMode::Blend { alpha: 0.0 },
        SlotMode::Full,
        SlotMode::Fossil { grad_scale: 0.5 },
        SlotMode::BlendOut { alpha: 0.25 },
    ]
}

/// Value and gradients (host activation, kernel weight) of a slot forward in `mode` whose
/// kernel is `d = h · w` (elementwise), under the loss `sum(out · r)`.
fn slot_run(dtype: DType, mode: SlotMode, guarded: bool, poison: bool) -> (Vec<u32>, Vec<u32>, Option<Vec<u32>>) {
    let t = |seed| Tensor::from_vec(values(30, seed), (3, 10), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
    // Small weights: no product overflows, even in f16.
    let (h, w) = (Var::from_tensor(&t(1)).unwrap(), Var::from_tensor(&(t(4) * 1e-5).unwrap()).unwrap());
    let w_used = if poison { (w.as_tensor() / 0.0).unwrap() } else { w.as_tensor().clone() };
    let kernel = |x: &Tensor| x.mul(&w_used);
    let out = if guarded {
        let fwd = guarded_slot_forward(mode, h.as_tensor(), &kernel).unwrap();
        let check = fwd.finite_check.unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(check.is_nan(), poison, "{dtype:?} {mode:?}: the check says whether the delta was finite");
        fwd.output
    } else {
        slot_forward(mode, h.as_tensor(), &kernel).unwrap().output
    };
    let grads = (&out * &t(9)).unwrap().sum_all().unwrap().backward().unwrap();
    (bits(&out), bits(grads.get(h.as_tensor()).unwrap()), grads.get(w.as_tensor()).map(bits))
}

#[test]
fn the_guarded_forward_is_the_plain_forward_to_the_bit_for_a_finite_seed() {
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for mode in modes() {
            let (plain, guarded) = (slot_run(dtype, mode, false, false), slot_run(dtype, mode, true, false));
            assert_eq!(plain.0, guarded.0, "{dtype:?} {mode:?}: value");
            assert_eq!(plain.1, guarded.1, "{dtype:?} {mode:?}: host gradient");
            // The gate multiplies the seed's gradient by exactly 1.
            let zero_or_none =
                |g: &Option<Vec<u32>>| g.as_ref().is_none_or(|g| g.iter().all(|&b| f32::from_bits(b) == 0.0));
            if plain.2.is_some() && guarded.2.is_some() {
                assert_eq!(plain.2, guarded.2, "{dtype:?} {mode:?}: seed gradient");
            } else {
                assert!(zero_or_none(&plain.2) && zero_or_none(&guarded.2), "{dtype:?} {mode:?}: seed gradient");
            }
        }
    }
}

#[test]
fn the_guarded_forward_bypasses_a_non_finite_seed_on_the_device() {
    for dtype in [DType::F32, DType::BF16, DType::F16, DType::F64] {
        let host =
            |dtype| bits(&Tensor::from_vec(values(30, 1), (3, 10), &Device::Cpu).unwrap().to_dtype(dtype).unwrap());
        for mode in modes() {
            let (value, host_grad, _) = slot_run(dtype, mode, true, true);
            if matches!(mode, SlotMode::Fossil { .. }) {
                // A fossil is part of the model: its output goes through as it is.
                assert!(value.iter().any(|&b| !f32::from_bits(b).is_finite()), "{dtype:?}: fossil not bypassed");
                continue;
            }
            assert_eq!(value, host(dtype), "{dtype:?} {mode:?}: the host activation, exactly");
            assert!(host_grad.iter().all(|&b| f32::from_bits(b).is_finite()), "{dtype:?} {mode:?}: host gradient");
        }
    }
}

/// The CUDA kernels against the CPU ones: the same bits in value and gradients, every dtype.
#[cfg(feature = "cuda")]
#[test]
fn the_cuda_kernels_give_the_cpu_bits() {
    let gpu = Device::new_cuda(0).unwrap();
    let on = |dev: &Device, dtype: DType, mode: SlotMode, poison: bool| {
        let t = |seed| Tensor::from_vec(values(4096, seed), (64, 64), dev).unwrap().to_dtype(dtype).unwrap();
        let (h, w) = (Var::from_tensor(&t(1)).unwrap(), Var::from_tensor(&(t(4) * 1e-5).unwrap()).unwrap());
        let w_used = if poison { (w.as_tensor() / 0.0).unwrap() } else { w.as_tensor().clone() };
        let fwd = guarded_slot_forward(mode, h.as_tensor(), &|x: &Tensor| x.mul(&w_used)).unwrap();
        let grads = (&fwd.output * &t(9)).unwrap().sum_all().unwrap().backward().unwrap();
        (bits(&fwd.output), bits(grads.get(h.as_tensor()).unwrap()), grads.get(w.as_tensor()).map(bits))
    };
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for mode in modes() {
            for poison in [false, true] {
                if poison && matches!(mode, SlotMode::Fossil { .. }) {
                    continue;
                }
                let (cpu, cuda) = (on(&Device::Cpu, dtype, mode, poison), on(&gpu, dtype, mode, poison));
                assert_eq!(cpu.0, cuda.0, "{dtype:?} {mode:?} poison {poison}: value");
                assert_eq!(cpu.1, cuda.1, "{dtype:?} {mode:?} poison {poison}: host gradient");
                if !poison {
                    // (A poisoned seed's own gradient is NaN on both; NaN bit patterns differ.)
                    assert_eq!(cpu.2, cuda.2, "{dtype:?} {mode:?}: seed gradient");
                }
            }
        }
    }
}

#[test]
fn a_bypassed_delta_gets_a_zero_gradient_in_one_pass() {
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for mode in [SlotMode::StraightThrough, SlotMode::Blend { alpha: 0.37 }, SlotMode::Full] {
            let host = Var::from_tensor(
                &Tensor::from_vec(values(30, 1), (3, 10), &Device::Cpu).unwrap().to_dtype(dtype).unwrap(),
            )
            .unwrap();
            let mut raw = values(30, 4);
            raw[7] = f32::INFINITY;
            let d = Var::from_tensor(&Tensor::from_vec(raw, (3, 10), &Device::Cpu).unwrap().to_dtype(dtype).unwrap())
                .unwrap();
            // A kernel whose delta is the variable itself.
            let kernel = |_: &Tensor| Ok::<_, candle_core::Error>(d.as_tensor().clone());
            let fwd = guarded_slot_forward(mode, host.as_tensor(), &kernel).unwrap();
            let upstream = Tensor::from_vec(values(30, 9), (3, 10), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let grads = (&fwd.output * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
            let into_d = bits(grads.get(d.as_tensor()).unwrap());
            assert!(into_d.iter().all(|&b| b == 0), "{dtype:?} {mode:?}: +0 everywhere, got {into_d:?}");
            // The identity (in value: candle's gradient accumulation turns -0 into +0).
            let as_f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(as_f32(grads.get(host.as_tensor()).unwrap()), as_f32(&upstream), "{dtype:?} {mode:?}");
        }
    }
}
