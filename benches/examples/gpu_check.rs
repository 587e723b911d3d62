//! The GPU benchmarks of `dist/gpu-check.sh` (issue 19), printed as one JSON line on stdout.
//!
//! - **Bandwidth**: on two tensors of `GPU_BENCH_ELEMS` elements (default 64 Mi) per dtype (f32,
//!   bf16): the device's copy (`Tensor::copy`, one read and one write per element), the fused
//!   blend `h + alpha·d` (`kasmina_isolation::blend`: two reads, one write), the plain candle
//!   blend (`h + affine(d)`: two kernels, five passes) and the gated fused blend of the
//!   guarded slot forward. Each is run `GPU_BENCH_ITERS` times (default 20) between
//!   synchronisations, after 3 warm-up runs; effective GB/s counts the bytes the operation must
//!   move (copy 2, blend 3 per element), and `fused_vs_copy` is the fused blend's effective
//!   bandwidth over the copy's.
//! - **Per-step overhead**: the demo's cnn and transformer hosts (`kasmina_benches::host_rigs`),
//!   bare and with Kasmina (dormant, a seed in TRAINING, a seed in BLENDING), interleaved for
//!   `GPU_BENCH_STEPS` rounds (default 200), each step synchronised; the median of the paired
//!   per-round differences over bare, in % of the bare step, and the device reads per step.
//!
//! Built with `--features cuda` it runs on CUDA device 0; without, on the CPU with small sizes
//! (a smoke run: `cargo run -p kasmina-benches --example gpu_check`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use kasmina_benches::extras::median;
use kasmina_benches::host_rigs::{HOSTS, KINDS, Kind, Rig};
use kasmina_isolation::{SlotMode, blend, guarded_slot_forward};
use serde_json::{Value, json};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn device() -> BoxResult<Device> {
    if cfg!(feature = "cuda") { Ok(Device::new_cuda(0)?) } else { Ok(Device::Cpu) }
}

/// The device's name, compute capability and driver, where the backend can say.
fn describe(dev: &Device) -> Value {
    #[cfg(feature = "cuda")]
    if let Ok(cuda) = dev.as_cuda_device() {
        let stream = cuda.cuda_stream();
        let ctx = stream.context();
        return json!({
            "kind": "cuda",
            "name": ctx.name().unwrap_or_default(),
            "compute_capability": ctx.compute_capability().map(|(a, b)| format!("{a}.{b}")).unwrap_or_default(),
        });
    }
    json!({ "kind": format!("{:?}", dev.location()) })
}

/// Median seconds of one run of `f` over `iters` runs between synchronisations (3 warm-ups).
fn time(dev: &Device, iters: usize, mut f: impl FnMut() -> BoxResult<Tensor>) -> BoxResult<f64> {
    for _ in 0..3 {
        drop(f()?);
    }
    dev.synchronize()?;
    let mut samples = Vec::with_capacity(5);
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..iters {
            drop(f()?);
        }
        dev.synchronize()?;
        samples.push(start.elapsed().as_secs_f64() / iters as f64);
    }
    Ok(median(&samples))
}

fn bandwidth(dev: &Device, dtype: DType, elems: usize, iters: usize) -> BoxResult<Value> {
    let h = Tensor::randn(0f32, 1.0, elems, dev)?.to_dtype(dtype)?;
    let d = Tensor::randn(0f32, 1.0, elems, dev)?.to_dtype(dtype)?;
    let bytes = (elems * dtype.size_in_bytes()) as f64;
    let gbps = |passes: f64, secs: f64| passes * bytes / secs / 1e9;
    let copy = time(dev, iters, || Ok(h.copy()?))?;
    let fused = time(dev, iters, || Ok(blend(&h, &d, 0.37)?))?;
    let plain = time(dev, iters, || Ok(h.add(&d.affine(0.37, 0.0)?)?))?;
    let kernel = |x: &Tensor| Ok::<_, candle_core::Error>(x.clone());
    // The guarded forward with an identity kernel: its sum (the finite check) plus the gated blend.
    let guarded = time(dev, iters, || Ok(guarded_slot_forward(SlotMode::Blend { alpha: 0.37 }, &d, &kernel)?.output))?;
    let (copy_gbps, fused_gbps) = (gbps(2.0, copy), gbps(3.0, fused));
    Ok(json!({
        "dtype": format!("{dtype:?}").to_lowercase(),
        "elements": elems,
        "copy_gbps": copy_gbps,
        "fused_blend_gbps": fused_gbps,
        "plain_blend_gbps": gbps(3.0, plain),
        "guarded_blend_gbps": gbps(3.0, guarded),
        "fused_vs_copy": fused_gbps / copy_gbps,
        "fused_ms": fused * 1e3,
        "plain_ms": plain * 1e3,
        "copy_ms": copy * 1e3,
    }))
}

fn overhead(dev: &Device, rounds: usize) -> BoxResult<Value> {
    let mut out = Vec::new();
    for host in HOSTS {
        let kinds: Vec<Kind> = KINDS.iter().copied().filter(|k| *k != Kind::Static).collect();
        let mut rigs: Vec<Rig> = kinds.iter().map(|&k| Rig::new(host, k, dev)).collect::<BoxResult<_>>()?;
        let mut samples = vec![Vec::with_capacity(rounds); rigs.len()];
        for round in 0..rounds + 5 {
            for (rig, s) in rigs.iter_mut().zip(samples.iter_mut()) {
                dev.synchronize()?;
                let start = Instant::now();
                rig.step()?;
                dev.synchronize()?;
                if round >= 5 {
                    s.push(start.elapsed().as_secs_f64());
                }
            }
        }
        for rig in &rigs {
            rig.check()?;
        }
        let bare = median(&samples[0]);
        let mut row = json!({ "host": host.task.to_string(), "bare_step_ms": bare * 1e3 });
        for ((kind, s), rig) in kinds.iter().zip(&samples).zip(&rigs).skip(1) {
            let paired: Vec<f64> = s.iter().zip(&samples[0]).map(|(k, b)| k - b).collect();
            row[format!("{}_overhead_pct", kind.as_str())] = json!(median(&paired) / bare * 100.0);
            row[format!("{}_reads_per_step", kind.as_str())] = json!(rig.device_reads_per_step());
        }
        out.push(row);
    }
    Ok(json!(out))
}

fn main() {
    let result = (|| -> BoxResult<Value> {
        let dev = device()?;
        let cuda = dev.is_cuda();
        let elems = knob("GPU_BENCH_ELEMS", if cuda { 64 << 20 } else { 1 << 20 });
        let iters = knob("GPU_BENCH_ITERS", if cuda { 20 } else { 3 });
        let steps = knob("GPU_BENCH_STEPS", if cuda { 200 } else { 10 });
        let mut bw = Vec::new();
        for dtype in [DType::F32, DType::BF16] {
            eprintln!("gpu_check: bandwidth {dtype:?}, {elems} elements");
            bw.push(bandwidth(&dev, dtype, elems, iters)?);
        }
        eprintln!("gpu_check: per-step overhead, {steps} interleaved rounds");
        let steps = overhead(&dev, steps)?;
        Ok(json!({ "device": describe(&dev), "bandwidth": bw, "hosts": steps }))
    })();
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            println!("{}", json!({ "error": e.to_string() }));
            std::process::exit(1);
        }
    }
}
