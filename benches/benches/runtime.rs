//! The runtime as a trainer sees it (issue 9): kernel load latency from the blueprint library on
//! disk and from the kernel cache, and Kasmina's whole overhead per training step.
//!
//! **Kernel load** (`cpu/runtime/kernel_load/*`): the built-in library written to a temporary
//! directory (`builtin::write_library(dir, &[512], 0)`), then
//! - `miss_disk`: `BlueprintLibrary::fetch("BP001", 512)` — read the safetensors file, parse it,
//!   validate it (the runtime's miss path, less the breaker);
//! - `miss_disk_insert`: the same plus the insert into the kernel cache;
//! - `hit`: a hit in a `kasmina-memory` governor configured as the runtime's kernel cache (TTL
//!   300 s, 512 MiB, 1000 entries) under the runtime's key `"BP001/w512"`, built per call as the
//!   runtime does.
//!
//! Criterion reports medians; the design's validator wants avg, max and p95 of single calls, so
//! the bench also times 1000 single misses and 100 000 single hits and prints those figures (and
//! writes them for `cargo xtask bench`, see the `extras` module).
//!
//! **Training step** (`cpu/runtime/step_*`): the isolation bench's reference step — host MLP
//! 512→1024→1024→512 (ReLU), batch 64, f32, CPU, one thread, loss mse — with a seed of `BP001`
//! (residual MLP 1024→512→1024, the built-in artefact's weights) in BLENDING in a slot after the
//! first hidden layer (width 1024), trained by its own AdamW:
//! - `step_host_only`: the host alone (forward, backward): what the seed itself costs is the
//!   difference with `step_plain`;
//! - `step_plain`: the same model written by hand in candle — host, seed branch on the detached
//!   activation, alpha blend, backward, the seed's AdamW step — no Kasmina;
//! - `step_with_kasmina`: the same step through the public API: `SeedSlot::forward` in the
//!   host's forward and `Kasmina::on_step` after the backward (isolation probe every step, gate
//!   bookkeeping, registry ownership check, the seed's AdamW step, telemetry to a `NullSink`).
//!
//! The same three steps run with the slot on the host's input instead (`cpu/runtime/w512/*`:
//! width 512, the seed `BP001` is then 512→256→512, the prototype's isolation seed).
//!
//! Kasmina's overhead is `step_with_kasmina / step_plain - 1`. The interleaved run also times
//! `step_plain` with Kasmina's in-place AdamW (`kasmina_runtime::AdamW`) in place of candle-nn's,
//! so Kasmina's bookkeeping can be told from its optimiser. Because the vCPU of the reference
//! machine switches between a fast and a slow state every 0.25–1 s, the bench also runs the
//! three steps interleaved (host-only, plain, Kasmina, repeated) and reports the medians, p05 and
//! p95 of each and the median of the paired per-step differences, plus the time `on_step`
//! itself takes; those are robust against the speed switches.
//!
//! One thread: see `isolation.rs` (the bench re-runs itself with `RAYON_NUM_THREADS=1` and
//! `CANDLE_NUM_THREADS=1`). Pin it as well: `taskset -c 1 cargo xtask bench --filter cpu/runtime`.
//! `KASMINA_BENCH_QUICK=1` (set by `cargo xtask bench --quick`) shortens the interleaved runs.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use criterion::{Criterion, SamplingMode};
use kasmina_memory::{MemoryConfig, MemoryGovernor, TtlCacheConfig};
use kasmina_runtime::reexports::telemetry::{NullSink, Telemetry, TelemetryConfig};
use kasmina_runtime::{
    BlueprintRuntime, Kasmina, KasminaConfig, KernelArtifact, SeedSlot, StepReport, blueprint::builtin,
};
use leyline::SeedLifecycleStage;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const BATCH: usize = 64;
const WIDTH: usize = 1024;
const ALPHA: f64 = 0.5;
const SLOT: &str = "hidden";

use kasmina_benches::extras::{self, median, quick, wanted};
use kasmina_benches::rigs;

// ------------------------------------------------------------------------------ kernel load

type KernelGovernor = MemoryGovernor<Arc<KernelArtifact>, String, Vec<u8>>;

/// The runtime's kernel cache settings (`KasminaConfig` defaults: 300 s TTL, 512 MiB, 1000 entries).
fn runtime_like_cache() -> KernelGovernor {
    let defaults = KasminaConfig::default();
    let cfg = MemoryConfig {
        kernel_cache: TtlCacheConfig::new(defaults.kernel_cache_ttl, defaults.kernel_cache_bytes)
            .with_max_entries(1000),
        ..Default::default()
    };
    KernelGovernor::with_clock(cfg, quanta::Clock::new()).expect("valid config")
}

/// The runtime's cache key (`KernelCache::key`).
fn key(blueprint_id: &str, width: usize) -> String {
    format!("{blueprint_id}/w{width}")
}

fn kernel_load(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let library = builtin::write_library(dir.path(), &[512], 0).expect("library");
    let dev = Device::Cpu;
    let fetch = || library.fetch(builtin::RESIDUAL_MLP, 512, &dev).expect("BP001 at width 512");
    let cache = runtime_like_cache();
    for id in builtin::ALL {
        let artifact = library.fetch(id, 512, &dev).expect("built-in artefact");
        cache.kernels().insert(key(id, 512), Arc::new(artifact)).expect("fits");
    }
    cache.kernels().run_pending_tasks();

    let mut group = c.benchmark_group("cpu/runtime/kernel_load");
    group.bench_function("miss_disk", |b| b.iter(|| black_box(fetch())));
    let bp = builtin::RESIDUAL_MLP;
    group.bench_function("miss_disk_insert", |b| {
        b.iter(|| {
            cache.kernels().invalidate(key(bp, 512).as_str());
            cache.kernels().insert(key(bp, 512), Arc::new(fetch())).ok();
        })
    });
    group.bench_function("hit", |b| {
        b.iter(|| black_box(cache.kernels().get(key(black_box(bp), black_box(512)).as_str()).expect("hit")))
    });
    group.finish();

    // Single calls: avg, p95, max (the design validator's figures).
    let ids = [
        "cpu/runtime/kernel_load/miss_disk/single_call".to_owned(),
        "cpu/runtime/kernel_load/hit/single_call".to_owned(),
    ];
    if !wanted(&ids) {
        return;
    }
    let clock = quanta::Clock::new();
    let time = |n: usize, f: &dyn Fn()| -> Vec<f64> {
        (0..n)
            .map(|_| {
                let t0 = clock.raw();
                f();
                clock.delta_as_nanos(t0, clock.raw()) as f64
            })
            .collect()
    };
    let misses = time(if quick() { 200 } else { 1000 }, &|| {
        black_box(fetch());
    });
    let hits = time(if quick() { 20_000 } else { 100_000 }, &|| {
        black_box(cache.kernels().get(key(bp, 512).as_str()));
    });
    extras::report(
        "kernel_load",
        &[
            extras::Stats { name: "cpu/runtime/kernel_load/miss_disk/single_call".into(), samples_ns: misses },
            extras::Stats { name: "cpu/runtime/kernel_load/hit/single_call".into(), samples_ns: hits },
        ],
    );
}

// ------------------------------------------------------------------------------ training step

/// The host: three linear layers with ReLU between them; the slot sits after the first ReLU.
struct Host {
    layers: Vec<(Var, Var)>,
}

impl Host {
    fn new(dev: &Device) -> candle_core::Result<Self> {
        let layers = [(512, WIDTH), (WIDTH, WIDTH), (WIDTH, 512)]
            .into_iter()
            .map(|(i, o)| {
                let std = (2.0 / i as f64).sqrt() as f32;
                Ok((Var::randn(0f32, std, (i, o), dev)?, Var::zeros(o, DType::F32, dev)?))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { layers })
    }

    fn layer(&self, i: usize, x: &Tensor) -> candle_core::Result<Tensor> {
        let (w, b) = &self.layers[i];
        x.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())
    }

    /// The host's forward with `slot` applied to the input of layer `at` (0: the host's input).
    fn forward(&self, x: &Tensor, at: usize, slot: &mut dyn FnMut(&Tensor) -> BoxResult<Tensor>) -> BoxResult<Tensor> {
        let mut h = x.clone();
        for i in 0..self.layers.len() {
            if i == at {
                h = slot(&h)?;
            }
            h = self.layer(i, &h)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    fn named_vars(&self) -> Vec<(String, Var)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, (w, b))| [(format!("host.{i}.w"), w.clone()), (format!("host.{i}.b"), b.clone())])
            .collect()
    }
}

fn mse(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    a.sub(b)?.sqr()?.mean_all()
}

/// The seed of the plain loop: `BP001` at width 1024 written by hand, with the built-in weights.
struct PlainSeed {
    down_w: Var,
    down_b: Var,
    up_w: Var,
    up_b: Var,
    opt: AdamW,
    /// The same AdamW arithmetic in place ([`kasmina_runtime::AdamW`], what Kasmina's seeds
    /// use), over copies of the same weights: the plain loop with Kasmina's optimiser, to tell
    /// Kasmina's bookkeeping from its optimiser.
    in_place: (Vec<Var>, kasmina_runtime::AdamW),
}

impl PlainSeed {
    fn new(width: usize, dev: &Device) -> BoxResult<Self> {
        let art = builtin::artifact(builtin::RESIDUAL_MLP, width, 0, dev)?;
        let var = |n: &str| -> BoxResult<Var> { Ok(Var::from_tensor(art.tensors.get(n).ok_or("missing tensor")?)?) };
        let (down_w, down_b, up_w, up_b) = (var("down.weight")?, var("down.bias")?, var("up.weight")?, var("up.bias")?);
        let defaults = KasminaConfig::default();
        let params = ParamsAdamW { lr: defaults.seed_learning_rate, weight_decay: 0.0, ..ParamsAdamW::default() };
        let opt = AdamW::new(vec![down_w.clone(), down_b.clone(), up_w.clone(), up_b.clone()], params.clone())?;
        let copies = [&down_w, &down_b, &up_w, &up_b]
            .iter()
            .map(|v| Var::from_tensor(&v.as_tensor().copy()?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let in_place = (copies.clone(), kasmina_runtime::AdamW::new(copies, params)?);
        Ok(Self { down_w, down_b, up_w, up_b, opt, in_place })
    }

    /// The residual seed output on the detached host activation (`in_place`: with the copies
    /// Kasmina's optimiser trains).
    fn forward(&self, h: &Tensor, in_place: bool) -> candle_core::Result<Tensor> {
        let x = h.detach();
        let w: [&Var; 4] = if in_place {
            let c = &self.in_place.0;
            [&c[0], &c[1], &c[2], &c[3]]
        } else {
            [&self.down_w, &self.down_b, &self.up_w, &self.up_b]
        };
        let d = x.matmul(&w[0].as_tensor().t()?)?.broadcast_add(w[1].as_tensor())?.relu()?;
        let d = d.matmul(&w[2].as_tensor().t()?)?.broadcast_add(w[3].as_tensor())?;
        x.add(&d)
    }
}

/// Where the slot sits: on the input of the second layer (after the first hidden layer and its
/// ReLU, width 1024: the seed `BP001` is a 1024→512→1024 residual MLP, 1 M parameters) or on the
/// host's input (width 512: the seed is 512→256→512, the prototype's isolation seed, 0.26 M
/// parameters). In BLENDING the slot's host branch is detached (decisions D4), so the layers
/// before the slot get no gradient: with the slot on the input every host layer still trains.
#[derive(Clone, Copy)]
struct Placement {
    name: &'static str,
    before_layer: usize,
    width: usize,
}

const PLACEMENTS: [Placement; 2] = [
    Placement { name: "cpu/runtime", before_layer: 1, width: WIDTH },
    Placement { name: "cpu/runtime/w512", before_layer: 0, width: 512 },
];

struct Rig {
    at: Placement,
    host: Host,
    x: Tensor,
    target: Tensor,
    plain: PlainSeed,
    kasmina: Kasmina,
    slot: SeedSlot,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(at: Placement) -> BoxResult<Self> {
        let dev = Device::Cpu;
        let host = Host::new(&dev)?;
        let dir = tempfile::tempdir()?;
        let library = builtin::write_library(dir.path(), &[at.width], 0)?;
        // Reach BLENDING quickly and stay there. Straight-through TRAINING: the seed gets its
        // gradients from the step's own backward (this rig reports no shadow loss tensor), which
        // is what G1's gradient-health window reads.
        let mut cfg = rigs::holding_config(4);
        cfg.training_mode = kasmina_runtime::TrainingMode::StraightThrough;
        let kasmina = Kasmina::builder()
            .device(dev.clone())
            .config(cfg)
            .telemetry(Telemetry::new(NullSink, TelemetryConfig::default())?)
            .host_vars(host.named_vars())
            .blueprints(library)
            .build()?;
        let slot = kasmina.slot(SLOT, at.width)?;
        let rig = Self {
            at,
            x: Tensor::randn(0f32, 1.0, (BATCH, 512), &dev)?,
            target: Tensor::randn(0f32, 1.0, (BATCH, 512), &dev)?,
            plain: PlainSeed::new(at.width, &dev)?,
            host,
            kasmina,
            slot,
            _dir: dir,
        };
        rig.germinate_and_blend()?;
        Ok(rig)
    }

    /// GERMINATE BP001 (a trusted in-process command), then train until G1 moves it to BLENDING.
    fn germinate_and_blend(&self) -> BoxResult<()> {
        let cmd = rigs::germinate(builtin::RESIDUAL_MLP, SLOT);
        let receipt = self.kasmina.apply(cmd);
        if !receipt.accepted {
            return Err(format!("germinate refused: {receipt:?}").into());
        }
        for i in 0..64 {
            if self.slot.stage() == SeedLifecycleStage::SeedStageBlending {
                break;
            }
            // Shadow losses that improve, so that G1 passes at the end of the training window.
            self.step_with_kasmina(Some(2.0 - 0.02 * i as f32))?;
        }
        self.check_blending()
    }

    fn check_blending(&self) -> BoxResult<()> {
        let stage = self.slot.stage();
        let summary = self.kasmina.seed_summaries();
        if stage != SeedLifecycleStage::SeedStageBlending {
            return Err(format!("seed is in {stage:?}, not BLENDING: {summary:?}").into());
        }
        Ok(())
    }

    fn step_host_only(&self) -> BoxResult<f32> {
        let out = self.host.forward(&self.x, usize::MAX, &mut |h| Ok(h.clone()))?;
        let loss = mse(&out, &self.target)?;
        let grads = loss.backward()?;
        black_box(&grads);
        Ok(loss.to_scalar::<f32>()?)
    }

    /// The plain candle step: candle-nn's AdamW (`in_place`: Kasmina's in-place AdamW).
    fn step_plain(&mut self, in_place: bool) -> BoxResult<f32> {
        let seed = &self.plain;
        let out = self.host.forward(&self.x, self.at.before_layer, &mut |h| {
            let s = seed.forward(h, in_place)?;
            Ok(s.affine(ALPHA, 0.0)?.add(&h.detach().affine(1.0 - ALPHA, 0.0)?)?)
        })?;
        let loss = mse(&out, &self.target)?;
        let grads = loss.backward()?;
        if in_place {
            self.plain.in_place.1.step(&grads)?;
        } else {
            self.plain.opt.step(&grads)?;
        }
        Ok(loss.to_scalar::<f32>()?)
    }

    /// One step through Kasmina; returns the loss and the grads (so on_step can be timed apart).
    fn forward_backward_with_kasmina(&self) -> BoxResult<(f32, GradStore)> {
        let out = self.host.forward(&self.x, self.at.before_layer, &mut |h| Ok(self.slot.forward(h)?))?;
        let loss = mse(&out, &self.target)?;
        let grads = loss.backward()?;
        Ok((loss.to_scalar::<f32>()?, grads))
    }

    fn step_with_kasmina(&self, shadow_loss: Option<f32>) -> BoxResult<f32> {
        let (loss, grads) = self.forward_backward_with_kasmina()?;
        let mut report = StepReport::new(loss);
        if let Some(l) = shadow_loss {
            report = report.with_shadow_loss(SLOT, l);
        }
        self.kasmina.on_step(&grads, report)?;
        Ok(loss)
    }
}

fn training_step(c: &mut Criterion) {
    for at in PLACEMENTS {
        training_step_at(c, at);
    }
}

fn training_step_at(c: &mut Criterion, at: Placement) {
    let ids: Vec<String> = ["step_host_only", "step_plain", "step_with_kasmina", "interleaved/on_step"]
        .map(|n| format!("{}/{n}", at.name))
        .into();
    if !wanted(&ids) {
        return;
    }
    let mut rig = Rig::new(at).expect("rig");
    let mut group = c.benchmark_group(at.name);
    group.sampling_mode(SamplingMode::Flat).sample_size(30);
    group.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(if quick() { 3 } else { 12 }));
    group.bench_function("step_host_only", |b| b.iter(|| rig.step_host_only().expect("step")));
    group.bench_function("step_plain", |b| b.iter(|| rig.step_plain(false).expect("step")));
    group.bench_function("step_with_kasmina", |b| b.iter(|| rig.step_with_kasmina(None).expect("step")));
    group.finish();
    rig.check_blending().expect("the seed stayed in BLENDING");

    // Interleaved: host-only, plain, plain with Kasmina's optimiser, Kasmina, repeated (robust
    // to the vCPU's speed switches).
    let rounds = if quick() { 40 } else { 300 };
    let (mut host_only, mut plain, mut plain_ip, mut with_k, mut on_step) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut diff, mut diff_ip) = (Vec::new(), Vec::new());
    let ns = |d: Duration| d.as_secs_f64() * 1e9;
    for round in 0..rounds {
        let t = Instant::now();
        black_box(rig.step_host_only().expect("step"));
        host_only.push(ns(t.elapsed()));
        // The three seeded steps in a rotating order, so that what one step leaves behind
        // (allocator state, caches) does not always favour the same one.
        let (mut p, mut pi, mut k) = (0.0, 0.0, 0.0);
        for which in (0..3).map(|i| (i + round) % 3) {
            let t = Instant::now();
            match which {
                0 => {
                    black_box(rig.step_plain(false).expect("step"));
                    p = ns(t.elapsed());
                }
                1 => {
                    black_box(rig.step_plain(true).expect("step"));
                    pi = ns(t.elapsed());
                }
                _ => {
                    let (loss, grads) = rig.forward_backward_with_kasmina().expect("step");
                    let t_on = Instant::now();
                    rig.kasmina.on_step(&grads, StepReport::new(loss)).expect("on_step");
                    k = ns(t.elapsed());
                    on_step.push(ns(t_on.elapsed()));
                }
            }
        }
        plain.push(p);
        plain_ip.push(pi);
        with_k.push(k);
        diff.push(k - p);
        diff_ip.push(k - pi);
    }
    rig.check_blending().expect("the seed stayed in BLENDING");
    let (mp, mpi, mk) = (median(&plain), median(&plain_ip), median(&with_k));
    eprintln!(
        "{} (slot width {}) interleaved: Kasmina overhead over the plain candle step (candle-nn AdamW) {:+.2} % \
         (difference of medians), {:+.2} % (median of paired differences); over the plain step with Kasmina's \
         in-place AdamW {:+.2} % / {:+.2} %; on_step median {:.3} ms; the seed's own cost (plain - host only) {:+.1} %",
        at.name,
        at.width,
        (mk / mp - 1.0) * 100.0,
        median(&diff) / mp * 100.0,
        (mk / mpi - 1.0) * 100.0,
        median(&diff_ip) / mpi * 100.0,
        median(&on_step) / 1e6,
        (mp / median(&host_only) - 1.0) * 100.0
    );
    let name = |n: &str| format!("{}/interleaved/{n}", at.name);
    extras::report(
        &format!("runtime_step_w{}", at.width),
        &[
            extras::Stats { name: name("step_host_only"), samples_ns: host_only },
            extras::Stats { name: name("step_plain"), samples_ns: plain },
            extras::Stats { name: name("step_plain_in_place_adamw"), samples_ns: plain_ip },
            extras::Stats { name: name("step_with_kasmina"), samples_ns: with_k },
            extras::Stats { name: name("on_step"), samples_ns: on_step },
        ],
    );
    let stats = rig.kasmina.stats();
    eprintln!("{} kasmina stats after the bench: {stats:?}", at.name);
}

fn main() {
    kasmina_benches::threads::pin_candle_to_one_thread();
    let mut c = Criterion::default().configure_from_args();
    kernel_load(&mut c);
    training_step(&mut c);
    c.final_summary();
}
