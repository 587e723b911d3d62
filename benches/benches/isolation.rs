//! Gradient-isolation overhead on the training step Esper's Python prototype was measured on
//! (`shared/perf/python-prototype.md`, gradient-isolation section).
//!
//! Host MLP 512→1024→1024→512 (ReLU), seed MLP 512→256→512 fed the host's detached 512-wide
//! input (its delta `d`), batch 64, f32, CPU, one thread. One step = host forward `h`, seed
//! forward, the BLENDING form `h + 0.5 d` ([`kasmina_isolation::blend`], decisions D4 revised:
//! the host branch is not detached), loss = mse(blend, target) + mse(host, target), backward; no
//! optimiser step. candle has no `zero_grad`: every backward builds a fresh `GradStore`, so
//! "zero grads" costs nothing here.
//!
//! - `cpu/isolation/step_baseline`: the step.
//! - `cpu/isolation/step_with_monitor`: the step plus `IsolationMonitor::check` every step (D6's
//!   one-row projection probe, shared-parameter check, NaN check of the full seed delta).
//! - `cpu/isolation/step_with_monitor_and_grads`: the same check also given the step's gradient
//!   store (dot product, host and seed gradient norms: one pass over every host gradient).
//! - `cpu/isolation/monitor_check`, `cpu/isolation/monitor_check_with_grads`: the check alone
//!   (without / with the step's gradients), on one step's tensors: the monitor's own cost, free
//!   of the step's run-to-run noise.
//!
//! One thread: candle's CPU matmul (gemm) asks `candle_core::utils::get_num_threads()`, which
//! reads `RAYON_NUM_THREADS` on every call (default: the physical cores); candle's rayon pool
//! and its elementwise barrier pool read `CANDLE_NUM_THREADS` (falling back to
//! `RAYON_NUM_THREADS`) once, when first used. Setting the environment in-process would need
//! `unsafe` (`std::env::set_var`, edition 2024), which this workspace denies, so `main` re-runs
//! this executable with both variables set to 1 before any candle code runs, and checks
//! `get_num_threads() == 1`. Pin the process to one core as well (`taskset -c 0`) to compare with
//! the prototype's figures.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use criterion::{Criterion, SamplingMode};
use kasmina_isolation::{IsolationMonitor, MonitorConfig, Probe, blend, seed_input};
use leyline::SeedLifecycleStage;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const BATCH: usize = 64;
const ALPHA: f64 = 0.5;

struct Mlp {
    layers: Vec<(Var, Var)>,
}

impl Mlp {
    fn new(dims: &[usize], dev: &Device) -> candle_core::Result<Self> {
        let layers = dims
            .windows(2)
            .map(|w| {
                let std = (2.0 / w[0] as f64).sqrt() as f32;
                Ok((Var::randn(0f32, std, (w[0], w[1]), dev)?, Var::zeros(w[1], candle_core::DType::F32, dev)?))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { layers })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, (w, b))| [(format!("{prefix}.{i}.w"), w.clone()), (format!("{prefix}.{i}.b"), b.clone())])
            .collect()
    }
}

struct Fixture {
    host: Mlp,
    seed: Mlp,
    x: Tensor,
    target: Tensor,
}

/// What a step leaves for the monitor.
struct StepOut {
    grads: GradStore,
    seed_in: Tensor,
    delta: Tensor,
}

impl Fixture {
    fn new() -> candle_core::Result<Self> {
        let dev = Device::Cpu;
        Ok(Self {
            host: Mlp::new(&[512, 1024, 1024, 512], &dev)?,
            seed: Mlp::new(&[512, 256, 512], &dev)?,
            x: Tensor::randn(0f32, 1.0, (BATCH, 512), &dev)?,
            target: Tensor::randn(0f32, 1.0, (BATCH, 512), &dev)?,
        })
    }

    fn kernel(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        self.seed.forward(t)
    }

    fn step(&self) -> BoxResult<StepOut> {
        let h = self.host.forward(&self.x)?;
        let seed_in = seed_input(&self.x);
        let delta = self.kernel(&seed_in)?;
        let blended = blend(&h, &delta, ALPHA)?;
        let loss = (mse(&blended, &self.target)? + mse(&h, &self.target)?)?;
        let grads = loss.backward()?;
        Ok(StepOut { grads, seed_in, delta })
    }

    fn monitor(&self) -> BoxResult<IsolationMonitor> {
        Ok(IsolationMonitor::new(self.host.vars("host"), self.seed.vars("seed"), MonitorConfig::default())?)
    }

    /// One monitored check of a step's outputs; panics on a violation (there must be none).
    fn check(&self, monitor: &mut IsolationMonitor, step: u64, out: &StepOut, with_grads: bool) -> f64 {
        let kernel = |t: &Tensor| self.kernel(t);
        let mut probe = Probe::rerun(&out.seed_in, &kernel).with_seed_output(&out.delta);
        if with_grads {
            probe = probe.with_step_grads(&out.grads);
        }
        let report = monitor.check(step, SeedLifecycleStage::SeedStageBlending, &probe).expect("isolation check");
        assert!(!report.is_violation() && !report.is_skipped(), "{report:?}");
        report.elapsed_ms
    }
}

fn mse(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    a.sub(b)?.sqr()?.mean_all()
}

fn isolation(c: &mut Criterion) {
    let f = Fixture::new().expect("fixture");
    let mut group = c.benchmark_group("cpu/isolation");
    // A step takes tens of ms: equal-sized samples spanning several seconds (the reference vCPU
    // switches speed every 0.25–1 s), instead of criterion's linear ramp (minutes per bench).
    let quick = std::env::var("KASMINA_BENCH_QUICK").is_ok_and(|v| v == "1");
    group.sampling_mode(SamplingMode::Flat).sample_size(30);
    group.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(if quick { 3 } else { 10 }));

    group.bench_function("step_baseline", |b| b.iter(|| black_box(f.step().expect("step"))));

    for (name, with_grads) in [("step_with_monitor", false), ("step_with_monitor_and_grads", true)] {
        let mut monitor = f.monitor().expect("monitor");
        let mut step = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let out = f.step().expect("step");
                step += 1;
                black_box(f.check(&mut monitor, step, &out, with_grads));
                out
            })
        });
    }

    let out = f.step().expect("step");
    for (name, with_grads) in [("monitor_check", false), ("monitor_check_with_grads", true)] {
        let mut monitor = f.monitor().expect("monitor");
        let mut step = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                step += 1;
                black_box(f.check(&mut monitor, step, &out, with_grads))
            })
        });
    }
    group.finish();
}

fn main() {
    kasmina_benches::threads::pin_candle_to_one_thread();
    let mut c = Criterion::default().configure_from_args();
    isolation(&mut c);
    c.final_summary();
}
