//! Kasmina's per-step overhead on the demo's convolutional and transformer hosts (issue 16),
//! beside the bare host.
//!
//! Each host is the one `kasmina demo --task cnn|transformer` trains (`kasmina-hosts`, default
//! width, the demo's batch): the cnn is two narrow 3×3 convolutions on 8×8 images (batch 64),
//! the transformer one causal attention block over 32-byte windows (batch 16). Inputs are random
//! of the right shape (timing does not depend on the values). A step is the demo's
//! (`Session::step`): forward, cross entropy, backward, the host's AdamW step, then with
//! Kasmina the shadow losses of the slots that ask for one and `Kasmina::on_step`.
//!
//! Four rigs per host, each with its own copy of the host:
//! - `bare`: the host alone, nothing behind its slots;
//! - `dormant`: Kasmina's slots in the forward, no seed;
//! - `training`: the demo's helpful seed in TRAINING (shadow mode: its stand-alone loss is one
//!   more forward of the host through the slot), its window made too long to leave;
//! - `blending`: the same seed in BLENDING (alpha held near 0.5 by a very long schedule);
//! - `static`: no Kasmina, the same seed's architecture trained as part of the host (the demo's
//!   static run): what the seed's own arithmetic costs, so that `blending - static` is what
//!   Kasmina adds around a live seed (its isolation probe, its own optimiser, the gates).
//!
//! Criterion times each (`cpu/hosts/<host>/<rig>`); then, because this machine's vCPU switches
//! between a fast and a slow state, the four steps run interleaved (bare, dormant, training,
//! blending, repeated) and the bench prints each rig's overhead over `bare` as the difference of
//! medians and as the median of the paired per-round differences, and writes the samples for
//! `cargo xtask bench` (`cpu/hosts/<host>/interleaved/*`).
//!
//! One thread (the bench re-runs itself with `RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1`); pin
//! it too: `taskset -c 1 cargo xtask bench --filter cpu/hosts`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::loss::cross_entropy;
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use criterion::{Criterion, SamplingMode};
use kasmina_benches::extras::{self, median, quick, wanted};
use kasmina_benches::rigs;
use kasmina_hosts::{CONTEXT, Input, Model, Task, cnn};
use kasmina_runtime::reexports::telemetry::{NullSink, Telemetry, TelemetryConfig};
use kasmina_runtime::{Kasmina, SeedKernel, StepReport, blueprint::builtin};
use leyline::SeedLifecycleStage as Stage;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The demo's learning rate for the cnn and transformer hosts (and their seeds).
const LR: f64 = 0.01;
const SEED: u64 = 1;

/// A host as the demo builds it: its data's shape and its batch.
#[derive(Clone, Copy)]
struct Host {
    task: Task,
    input: Input,
    batch: usize,
}

const HOSTS: [Host; 2] = [
    Host { task: Task::Cnn, input: Input::Features { features: cnn::PIXELS, classes: 10 }, batch: 64 },
    Host { task: Task::Transformer, input: Input::Tokens { context: CONTEXT, vocab: 256 }, batch: 16 },
];

impl Host {
    fn name(self) -> String {
        format!("cpu/hosts/{}", self.task)
    }

    /// A random batch of inputs and labels of this host's kind.
    fn batch(self, dev: &Device) -> BoxResult<(Tensor, Tensor)> {
        Ok(match self.input {
            Input::Features { features, classes } => (
                Tensor::rand(0f32, 1.0, (self.batch, features), dev)?,
                Tensor::rand(0f32, classes as f32, self.batch, dev)?.floor()?.to_dtype(DType::U32)?,
            ),
            Input::Tokens { context, vocab } => {
                let tokens = Tensor::rand(0f32, vocab as f32, (self.batch, context + 1), dev)?;
                let tokens = tokens.floor()?.to_dtype(DType::U32)?;
                (tokens.narrow(1, 0, context)?.contiguous()?, tokens.narrow(1, 1, context)?.contiguous()?)
            }
        })
    }
}

/// What a rig has behind the host's slots.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Bare,
    Dormant,
    Training,
    Blending,
    Static,
}

const KINDS: [Kind; 5] = [Kind::Bare, Kind::Dormant, Kind::Training, Kind::Blending, Kind::Static];

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Dormant => "dormant",
            Self::Training => "training",
            Self::Blending => "blending",
            Self::Static => "static",
        }
    }
}

/// One host copy, its optimiser and (except `bare`) its Kasmina.
struct Rig {
    kind: Kind,
    model: Model,
    opt: AdamW,
    kasmina: Option<Kasmina>,
    seed_slot: &'static str,
    /// How long the last step spent after the host's optimiser step (shadow losses, `on_step`).
    kasmina_ns: f64,
    x: Tensor,
    y: Tensor,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(host: Host, kind: Kind) -> BoxResult<Self> {
        let dev = Device::Cpu;
        let mut model = Model::new(host.task, host.input, host.task.default_width(), SEED, &dev)?;
        let (x, y) = host.batch(&dev)?;
        let dir = tempfile::tempdir()?;
        let [(seed_slot, blueprint), _] = host.task.plan();
        let mut host_vars = model.varmap.all_vars();
        let kasmina = if kind == Kind::Bare {
            None
        } else if kind == Kind::Static {
            let spec = model.slots().into_iter().find(|s| s.name == seed_slot).ok_or("no such slot")?;
            let kernel = SeedKernel::instantiate(&builtin::artifact(blueprint, spec.width, SEED, &dev)?, &dev)?;
            host_vars.extend(kernel.vars());
            model.set_static(seed_slot, kernel);
            None
        } else {
            let mut widths: Vec<usize> = model.slots().iter().map(|s| s.width).collect();
            widths.dedup();
            let mut cfg = rigs::holding_config(if kind == Kind::Training { 1 << 40 } else { 4 });
            cfg.seed_learning_rate = LR;
            let kasmina = Kasmina::builder()
                .device(dev.clone())
                .config(cfg)
                .telemetry(Telemetry::new(NullSink, TelemetryConfig::default())?)
                .host_varmap(&model.varmap)
                .blueprints(builtin::write_library(dir.path(), &widths, SEED)?)
                .build()?;
            model.attach_to(&kasmina)?;
            Some(kasmina)
        };
        let params = ParamsAdamW { lr: LR, weight_decay: 0.0, ..ParamsAdamW::default() };
        let opt = AdamW::new(host_vars, params)?;
        let mut rig = Self { kind, model, opt, kasmina, seed_slot, kasmina_ns: 0.0, x, y, _dir: dir };
        rig.reach_stage(host)?;
        Ok(rig)
    }

    /// The stage the rig's seed must be in while it is timed (`None`: no seed).
    fn wanted_stage(&self) -> Option<Stage> {
        match self.kind {
            Kind::Bare | Kind::Dormant | Kind::Static => None,
            Kind::Training => Some(Stage::SeedStageTraining),
            Kind::Blending => Some(Stage::SeedStageBlending),
        }
    }

    /// Germinates the demo's helpful seed (a trusted in-process command) and trains until it is
    /// in the rig's stage.
    fn reach_stage(&mut self, host: Host) -> BoxResult<()> {
        let (Some(stage), Some(kasmina)) = (self.wanted_stage(), &self.kasmina) else {
            return Ok(());
        };
        let [(slot, blueprint), _] = host.task.plan();
        let receipt = kasmina.apply(rigs::germinate(blueprint, slot));
        if !receipt.accepted {
            return Err(format!("germinate refused: {receipt:?}").into());
        }
        for _ in 0..200 {
            if self.stage() == Some(stage) {
                return Ok(());
            }
            self.step()?;
        }
        self.check()
    }

    fn stage(&self) -> Option<Stage> {
        let kasmina = self.kasmina.as_ref()?;
        kasmina.seed_summaries().into_iter().find(|s| s.slot == self.seed_slot).map(|s| s.stage)
    }

    /// The seed is still where it is timed (a cull mid-bench would time something else).
    fn check(&self) -> BoxResult<()> {
        let (want, got) = (self.wanted_stage(), self.stage());
        if want == got {
            return Ok(());
        }
        let summaries = self.kasmina.as_ref().map(Kasmina::seed_summaries);
        Err(format!("{:?} rig: seed in {got:?}, not {want:?}: {summaries:?}", self.kind).into())
    }

    /// The demo's step (`Session::step`).
    fn step(&mut self) -> BoxResult<f32> {
        let logits = self.model.forward(&self.x)?;
        let y = self.y.flatten_all()?;
        let loss = cross_entropy(&logits, &y)?;
        let grads = loss.backward()?;
        self.opt.step(&grads)?;
        let value = loss.to_scalar::<f32>()?;
        if let Some(kasmina) = &self.kasmina {
            let start = Instant::now();
            let mut report = StepReport::new(value);
            for slot in kasmina.shadow_slots() {
                let shadow = kasmina.with_shadow(&slot, || self.model.forward(&self.x))??;
                report = report.with_shadow_loss_tensor(slot, &cross_entropy(&shadow, &y)?)?;
            }
            kasmina.on_step(&grads, report)?;
            self.kasmina_ns = start.elapsed().as_secs_f64() * 1e9;
        }
        Ok(value)
    }
}

fn host_steps(c: &mut Criterion, host: Host) {
    let ids: Vec<String> = KINDS.iter().map(|k| format!("{}/{}", host.name(), k.as_str())).collect();
    if !wanted(&ids) {
        return;
    }
    let mut rigs: Vec<Rig> = KINDS.iter().map(|&k| Rig::new(host, k).expect("rig")).collect();
    let mut group = c.benchmark_group(host.name());
    group.sampling_mode(SamplingMode::Flat).sample_size(30);
    group.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(if quick() { 3 } else { 10 }));
    for rig in &mut rigs {
        group.bench_function(rig.kind.as_str(), |b| b.iter(|| black_box(rig.step().expect("step"))));
    }
    group.finish();
    for rig in &rigs {
        rig.check().expect("the seed stayed in its stage");
    }

    // Interleaved: bare, dormant, training, blending, static, repeated.
    let rounds = if quick() { 60 } else { 600 };
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); KINDS.len()];
    let mut dormant_safe_point = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        for (rig, out) in rigs.iter_mut().zip(samples.iter_mut()) {
            let t = Instant::now();
            black_box(rig.step().expect("step"));
            out.push(t.elapsed().as_secs_f64() * 1e9);
            if rig.kind == Kind::Dormant {
                dormant_safe_point.push(rig.kasmina_ns);
            }
        }
    }
    for rig in &rigs {
        rig.check().expect("the seed stayed in its stage");
    }
    let bare = median(&samples[0]);
    for (kind, s) in KINDS.iter().zip(&samples).skip(1) {
        let paired: Vec<f64> = s.iter().zip(&samples[0]).map(|(k, b)| k - b).collect();
        eprintln!(
            "{} interleaved: {:<8} step {:+.2} % over bare (difference of medians), {:+.2} % (median of paired \
             differences); bare median {:.3} ms",
            host.name(),
            kind.as_str(),
            (median(s) / bare - 1.0) * 100.0,
            median(&paired) / bare * 100.0,
            bare / 1e6,
        );
    }
    eprintln!(
        "{} dormant: on_step (no seed) median {:.2} µs = {:.2} % of the bare step",
        host.name(),
        median(&dormant_safe_point) / 1e3,
        median(&dormant_safe_point) / bare * 100.0
    );
    let mut stats: Vec<extras::Stats> = KINDS
        .iter()
        .zip(samples)
        .map(|(k, s)| extras::Stats { name: format!("{}/interleaved/{}", host.name(), k.as_str()), samples_ns: s })
        .collect();
    stats.push(extras::Stats {
        name: format!("{}/interleaved/dormant_on_step", host.name()),
        samples_ns: dormant_safe_point,
    });
    extras::report(&format!("hosts_step_{}", host.task), &stats);
}

fn main() {
    kasmina_benches::threads::pin_candle_to_one_thread();
    let mut c = Criterion::default().configure_from_args();
    for host in HOSTS {
        host_steps(&mut c, host);
    }
    c.final_summary();
}
