//! Built-in kernels for image (`BP1xx`, `[B, C, H, W]`) and sequence (`BP2xx`, `[B, T, D]`)
//! slots, and dense kernels on sequence inputs: shape contract, zero-init identity, finiteness,
//! gradient flow and isolation, the safetensors round trip, causality, and a small fit.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use kasmina_runtime::Layout;
use kasmina_runtime::blueprint::{BlueprintLibrary, BlueprintRuntime, Family, KernelKind, SeedKernel, builtin};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The new kernels with their first (drawn) and last (zero-initialised) layers.
const NEW: [(&str, &str, &str); 7] = [
    (builtin::CONV_RESIDUAL, "conv1.weight", "conv2.weight"),
    (builtin::DEPTHWISE_SEPARABLE, "dw.weight", "pw.weight"),
    (builtin::SQUEEZE_EXCITE, "fc1.weight", "fc2.weight"),
    (builtin::CONV_LOW_RANK, "a", "b"),
    (builtin::PRENORM_MLP, "fc1.weight", "fc2.weight"),
    (builtin::SEQUENCE_LOW_RANK, "a", "b"),
    (builtin::CAUSAL_ATTENTION, "qkv.weight", "out.weight"),
];

const DENSE: [&str; 6] = [
    builtin::RESIDUAL_MLP,
    builtin::LOW_RANK,
    builtin::ZERO_LINEAR,
    builtin::WIDE_MLP,
    builtin::BROKEN,
    builtin::NOISY,
];

fn cpu() -> Device {
    Device::Cpu
}

/// Uniform values in (-scale, scale) from a seeded generator.
fn random(shape: &[usize], scale: f32, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::from_vec(data, shape, &cpu()).unwrap()
}

/// An input of `id`'s layout: `extent` is `(H, W)` for an image kernel, `(T, _)` otherwise.
fn input_shape(id: &str, width: usize, extent: (usize, usize)) -> Vec<usize> {
    match builtin::layout_family(id).unwrap() {
        Family::Image => vec![2, width, extent.0, extent.1],
        _ => vec![2, extent.0, width],
    }
}

fn kernel(id: &str, width: usize, seed: u64) -> SeedKernel {
    SeedKernel::instantiate(&builtin::artifact(id, width, seed, &cpu()).unwrap(), &cpu()).unwrap()
}

fn var<'a>(k: &'a SeedKernel, name: &str) -> &'a Var {
    &k.named_vars().iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} missing")).1
}

/// Gives the zero-initialised last layer (weight and bias) random values, as training would.
fn wake(k: &SeedKernel, last: &str, seed: u64) {
    let bias = last.replace("weight", "bias");
    for (name, v) in k.named_vars().iter().filter(|(n, _)| n == last || *n == bias) {
        v.set(&random(v.dims(), 0.5, seed + name.len() as u64)).unwrap();
    }
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn all_finite(t: &Tensor) -> bool {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite())
}

fn mse(a: &Tensor, b: &Tensor) -> Tensor {
    (a - b).unwrap().sqr().unwrap().mean_all().unwrap()
}

#[test]
fn delta_has_the_input_shape_for_two_extents() {
    for (id, _, last) in NEW {
        for width in [5, 8] {
            let k = kernel(id, width, 1);
            for awake in [false, true] {
                if awake {
                    wake(&k, last, 2);
                }
                for extent in [(3, 5), (6, 4)] {
                    let x = random(&input_shape(id, width, extent), 1.0, 3);
                    let d = k.delta(&x).unwrap();
                    assert_eq!(d.dims(), x.dims(), "{id} width {width} extent {extent:?}");
                }
            }
        }
    }
}

#[test]
fn kernels_refuse_other_layouts_and_dense_kernels_serve_sequences() {
    let width = 8;
    for (id, _, _) in NEW {
        let k = kernel(id, width, 1);
        let other = match k.kind().family() {
            Family::Image => vec![vec![2, 3, width], vec![2, width], vec![2, 3, 5, width]],
            _ => vec![vec![2, width, 3, 5], vec![2, width], vec![2, 3, width + 1]],
        };
        for shape in other {
            let err = k.delta(&random(&shape, 1.0, 4)).unwrap_err();
            assert!(err.to_string().contains(id), "{id} {shape:?}: {err}");
        }
    }
    for id in DENSE {
        let k = kernel(id, width, 1);
        for (name, v) in k.named_vars() {
            v.set(&random(v.dims(), 0.5, 5)).unwrap_or_else(|e| panic!("{id} {name}: {e}"));
        }
        let x = random(&[2, 3, width], 1.0, 6);
        let d = k.delta(&x).unwrap();
        assert_eq!(d.dims(), x.dims(), "{id}");
        if id != builtin::NOISY {
            // Token by token: the same as the dense kernel on the flattened rows.
            let rows = k.delta(&x.reshape((6, width)).unwrap()).unwrap().reshape((2, 3, width)).unwrap();
            assert!(max_abs(&(d - rows).unwrap()) < 1e-5, "{id}");
        }
        assert!(k.delta(&random(&[2, width, 3, 5], 1.0, 7)).is_err(), "{id} read an image's last axis");
    }
}

#[test]
fn a_fresh_kernel_is_exactly_the_identity() {
    for (id, _, _) in NEW {
        for width in [1, 5, 8, 16] {
            let k = kernel(id, width, 9);
            let x = random(&input_shape(id, width, (4, 3)), 3.0, 10);
            let d = k.delta(&x).unwrap();
            assert_eq!(max_abs(&d), 0.0, "{id} width {width}");
            let out = (&x + &d).unwrap();
            assert_eq!(max_abs(&(out - &x).unwrap()), 0.0, "{id} width {width}");
        }
    }
    for id in DENSE.into_iter().filter(|id| *id != builtin::NOISY) {
        let d = kernel(id, 8, 9).delta(&random(&[2, 4, 8], 3.0, 11)).unwrap();
        assert_eq!(max_abs(&d), 0.0, "{id} on a sequence");
    }
}

#[test]
fn output_is_finite_on_random_input() {
    for (id, _, last) in NEW {
        for width in [4, 5, 16] {
            let k = kernel(id, width, 12);
            wake(&k, last, 13);
            for scale in [1.0, 100.0] {
                let x = random(&input_shape(id, width, (5, 7)), scale, 14);
                let d = k.delta(&x).unwrap();
                assert!(all_finite(&d), "{id} width {width} scale {scale}");
                assert!(max_abs(&d) > 0.0, "{id} width {width}: an awake kernel changes its input");
            }
        }
    }
}

#[test]
fn gradients_reach_the_seed_and_not_a_detached_input() {
    for (id, first, last) in NEW {
        let k = kernel(id, 8, 15);
        let x = Var::from_tensor(&random(&input_shape(id, 8, (4, 5)), 1.0, 16)).unwrap();
        let target = random(x.dims(), 1.0, 17);
        let loss = |input: &Tensor| mse(&(input + k.delta(input).unwrap()).unwrap(), &target);
        let mut opt = AdamW::new(k.vars(), ParamsAdamW { lr: 1e-2, ..Default::default() }).unwrap();

        // At germination only the zero last layer sees a gradient: nothing flows through it.
        let grads = loss(&x.detach()).backward().unwrap();
        assert!(max_abs(grads.get(var(&k, last)).unwrap()) > 0.0, "{id}: last layer");
        assert!(grads.get(var(&k, first)).is_none_or(|g| max_abs(g) == 0.0), "{id}: first layer at init");
        opt.step(&grads).unwrap();
        assert!(max_abs(var(&k, last)) > 0.0, "{id}: the step moved the last layer");

        let grads = loss(&x.detach()).backward().unwrap();
        assert!(max_abs(grads.get(var(&k, first)).unwrap()) > 0.0, "{id}: first layer after a step");
        assert!(grads.get(&x).is_none(), "{id}: gradient reached a detached input");
        // Not vacuous: without the detach the input does get one.
        let grads = mse(&k.delta(&x).unwrap(), &target).backward().unwrap();
        assert!(max_abs(grads.get(&x).unwrap()) > 0.0, "{id}: input gradient without detach");
    }
}

#[test]
fn the_library_round_trips_every_new_kernel() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let widths = [5, 16];
    builtin::write_library(a.path(), &widths, 21).unwrap();
    builtin::write_library(b.path(), &widths, 21).unwrap();
    let library = BlueprintLibrary::open(a.path()).unwrap();
    for (id, _, _) in NEW {
        let d = library.descriptor(id).unwrap_or_else(|| panic!("{id} descriptor"));
        let family = builtin::layout_family(id).unwrap();
        assert!(d.description.starts_with(&format!("[{}]", family.as_str())), "{id}: {}", d.description);
        assert!(d.description.contains("params") && d.description.contains("FLOPs/element"), "{id}");
        for w in widths {
            let fetched = library.fetch(id, w, &cpu()).unwrap();
            let built = builtin::artifact(id, w, 21, &cpu()).unwrap();
            assert_eq!((fetched.kind, fetched.width, fetched.heads), (built.kind, w, built.heads), "{id}");
            assert_eq!(fetched.tensors.keys().collect::<Vec<_>>(), built.tensors.keys().collect::<Vec<_>>());
            for (name, t) in &built.tensors {
                let diff = max_abs(&(t - &fetched.tensors[name]).unwrap());
                assert_eq!(diff, 0.0, "{id} w{w} {name}");
            }
            let path = BlueprintLibrary::artifact_path(a.path(), id, w);
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes, std::fs::read(BlueprintLibrary::artifact_path(b.path(), id, w)).unwrap());
            let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            let meta = meta.metadata().clone().unwrap();
            assert_eq!(meta["kasmina.family"], family.as_str(), "{id}");
            assert_eq!(meta.get("kasmina.heads").map(String::as_str), fetched.heads.map(|h| h.to_string()).as_deref());
        }
    }
    let attention = library.fetch(builtin::CAUSAL_ATTENTION, 16, &cpu()).unwrap();
    assert_eq!(attention.heads, Some(4));
    assert_eq!(library.fetch(builtin::CAUSAL_ATTENTION, 5, &cpu()).unwrap().heads, Some(1));
}

#[test]
fn artefacts_with_bad_heads_or_family_are_refused() {
    let mut art = builtin::artifact(builtin::CAUSAL_ATTENTION, 8, 0, &cpu()).unwrap();
    for heads in [None, Some(0), Some(3)] {
        art.heads = heads;
        assert!(art.validate().is_err(), "heads {heads:?}");
    }
    let mut mlp = builtin::artifact(builtin::PRENORM_MLP, 8, 0, &cpu()).unwrap();
    mlp.heads = Some(4);
    assert!(mlp.validate().is_err(), "heads on an MLP");

    // An artefact whose `kasmina.family` contradicts its kind.
    let mlp = builtin::artifact(builtin::PRENORM_MLP, 8, 0, &cpu()).unwrap();
    let meta = [
        ("kasmina.kernel".to_owned(), KernelKind::PrenormMlp.as_str().to_owned()),
        ("kasmina.width".to_owned(), "8".to_owned()),
        ("kasmina.family".to_owned(), "image".to_owned()),
    ];
    let tensors: Vec<(&str, &Tensor)> = mlp.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let bytes = safetensors::serialize(tensors, Some(meta.into_iter().collect())).unwrap();
    let err = BlueprintLibrary::parse_artifact(builtin::PRENORM_MLP, &bytes, &cpu()).unwrap_err();
    assert!(err.to_string().contains("kasmina.family"), "{err}");

    // A conv kernel with a wrongly shaped tensor.
    let mut conv = builtin::artifact(builtin::CONV_RESIDUAL, 8, 0, &cpu()).unwrap();
    conv.tensors.insert("conv1.weight".into(), Tensor::zeros((8, 8, 1, 1), DType::F32, &cpu()).unwrap());
    assert!(conv.validate().unwrap_err().to_string().contains("conv1.weight"));

    // Size 0: no width, no rank.
    let mut empty = builtin::artifact(builtin::PRENORM_MLP, 8, 0, &cpu()).unwrap();
    empty.width = 0;
    assert!(empty.validate().is_err());
    let mut rank0 = builtin::artifact(builtin::CONV_LOW_RANK, 8, 0, &cpu()).unwrap();
    rank0.tensors.insert("a".into(), Tensor::zeros((0, 8, 1, 1), DType::F32, &cpu()).unwrap());
    rank0.tensors.insert("b".into(), Tensor::zeros((8, 0, 1, 1), DType::F32, &cpu()).unwrap());
    assert!(rank0.validate().unwrap_err().to_string().contains("size 0"));
}

#[test]
fn attention_is_causal() {
    let (width, t) = (8, 6);
    let k = kernel(builtin::CAUSAL_ATTENTION, width, 22);
    wake(&k, "out.weight", 23);
    let x = random(&[2, t, width], 1.0, 24);
    let d = k.delta(&x).unwrap();
    for pos in 0..t - 1 {
        // Replace the tokens after `pos`.
        let later = random(&[2, t - pos - 1, width], 1.0, 25 + pos as u64);
        let y = Tensor::cat(&[&x.narrow(1, 0, pos + 1).unwrap(), &later], 1).unwrap();
        let e = k.delta(&y).unwrap();
        let before = (d.narrow(1, 0, pos + 1).unwrap() - e.narrow(1, 0, pos + 1).unwrap()).unwrap();
        assert!(max_abs(&before) <= 1e-6, "position ≤ {pos} saw a later token: {}", max_abs(&before));
        let after = (d.narrow(1, pos + 1, t - pos - 1).unwrap() - e.narrow(1, pos + 1, t - pos - 1).unwrap()).unwrap();
        assert!(max_abs(&after) > 1e-4, "positions > {pos} ignore their own tokens");
    }
    assert!(all_finite(&d));
}

#[test]
fn each_new_kernel_alone_fits_a_teacher_of_its_kind() {
    for (id, _, last) in NEW {
        let width = 8;
        let teacher = kernel(id, width, 31);
        wake(&teacher, last, 32);
        let student = kernel(id, width, 33);
        let x = random(&input_shape(id, width, (6, 6)), 1.0, 34);
        let target = teacher.delta(&x).unwrap().detach();
        let mut opt =
            AdamW::new(student.vars(), ParamsAdamW { lr: 2e-2, weight_decay: 0.0, ..Default::default() }).unwrap();
        let start = mse(&student.delta(&x).unwrap(), &target).to_scalar::<f32>().unwrap();
        let mut end = start;
        for _ in 0..60 {
            let loss = mse(&student.delta(&x).unwrap(), &target);
            end = loss.to_scalar::<f32>().unwrap();
            opt.backward_step(&loss).unwrap();
        }
        assert!(start > 0.0 && end < 0.25 * start, "{id}: loss {start} -> {end}");
    }
}

#[test]
fn cost_functions_match_the_kernels() {
    for id in builtin::ALL {
        for width in [1, 5, 8, 16] {
            let k = kernel(id, width, 0);
            assert_eq!(builtin::param_count(id, width), Some(k.param_count()), "{id} width {width}");
            for extent in [1, 9, 64] {
                let f = builtin::flops_per_element(id, width, extent).unwrap();
                assert!(f.is_finite() && f >= 0.0, "{id}");
                assert_eq!(f == 0.0, *id == builtin::IDENTITY, "{id}");
            }
        }
    }
    // The documented formulas at C = D = 8.
    assert_eq!(builtin::param_count(builtin::CONV_RESIDUAL, 8), Some(10 * 64 + 4 * 8));
    assert_eq!(builtin::param_count(builtin::DEPTHWISE_SEPARABLE, 8), Some(64 + 11 * 8));
    assert_eq!(builtin::param_count(builtin::SQUEEZE_EXCITE, 8), Some(2 * 2 * 8 + 2 + 8));
    assert_eq!(builtin::param_count(builtin::CONV_LOW_RANK, 8), Some(2 * 2 * 8));
    assert_eq!(builtin::param_count(builtin::PRENORM_MLP, 8), Some(8 * 64 + 7 * 8));
    assert_eq!(builtin::param_count(builtin::SEQUENCE_LOW_RANK, 8), Some(2 * 2 * 8));
    assert_eq!(builtin::param_count(builtin::CAUSAL_ATTENTION, 8), Some(4 * 64 + 6 * 8));
    assert_eq!(builtin::flops_per_element(builtin::CONV_RESIDUAL, 8, 100), Some(170.0));
    assert_eq!(builtin::flops_per_element(builtin::PRENORM_MLP, 8, 100), Some(16.0 * 8.0 + 44.0));
    // Attention grows with the sequence; the gate's fixed cost shrinks with the picture.
    let attn = |t| builtin::flops_per_element(builtin::CAUSAL_ATTENTION, 8, t).unwrap();
    assert_eq!(attn(16) - attn(8), 4.0 * 8.0 + 7.0 * 4.0 * 8.0 / 8.0);
    let se = |n| builtin::flops_per_element(builtin::SQUEEZE_EXCITE, 8, n).unwrap();
    assert!(se(64) < se(4) && se(64) > 2.0);
    assert_eq!(builtin::param_count("BP999", 8), None);
    assert_eq!(builtin::flops_per_element("BP999", 8, 1), None);
}

#[test]
fn families_say_which_layout_each_built_in_serves() {
    for id in builtin::ALL {
        let family = builtin::layout_family(id).unwrap();
        assert_eq!(builtin::artifact(id, 8, 0, &cpu()).unwrap().kind.family(), family, "{id}");
        assert_eq!(Family::parse(family.as_str()), Some(family));
        let expected = match &id[..3] {
            _ if *id == builtin::IDENTITY => Family::Any,
            "BP1" => Family::Image,
            "BP2" => Family::Sequence,
            _ => Family::Dense,
        };
        assert_eq!(family, expected, "{id}");
    }
    assert_eq!(
        builtin::serving(Layout::Image),
        [&[builtin::IDENTITY][..], builtin::IMAGE, &[builtin::BROKEN_IMAGE]].concat()
    );
    let sequence = builtin::serving(Layout::Sequence);
    assert!(DENSE.iter().chain(builtin::SEQUENCE).all(|id| sequence.contains(id)));
    assert!(builtin::IMAGE.iter().all(|id| !sequence.contains(id)));
    assert!(builtin::serving(Layout::Dense).iter().all(|id| !id.starts_with("BP1") && !id.starts_with("BP2")));
    assert_eq!(builtin::layout_family("BP999"), None);
    // The ids of the existing built-ins keep their place (their generator salt).
    assert_eq!(&builtin::ALL[..7], ["BP000", "BP001", "BP002", "BP003", "BP900", "BP901", "BP004"]);
}

#[test]
#[ignore = "timing report, run by hand"]
fn write_library_timing() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let t0 = std::time::Instant::now();
        builtin::write_library(dir.path(), &[5, 128], 0).unwrap();
        eprintln!("write_library([5, 128]): {:?}", t0.elapsed());
    }
}
