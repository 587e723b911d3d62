//! The demo's convolutional and transformer hosts as benchmark rigs (issue 16): each host as
//! `kasmina demo --task cnn|transformer` trains it (`kasmina-hosts`, default width, the demo's
//! batch), bare or with Kasmina behind its slots and the demo's helpful seed held in one stage.
//! The `hosts` bench times them on the CPU; the `gpu_check` example on a CUDA device.
//!
//! Inputs are random of the right shape (timing does not depend on the values). A step is the
//! demo's (`Session::step`): forward, cross entropy, backward, the host's AdamW step, then with
//! Kasmina the shadow losses of the slots that ask for one and `Kasmina::on_step`.
//!
//! Rigs, each with its own copy of the host:
//! - `bare`: the host alone, nothing behind its slots;
//! - `dormant`: Kasmina's slots in the forward, no seed;
//! - `training`: the demo's helpful seed in TRAINING (shadow mode: its stand-alone loss is one
//!   more forward of the host through the slot), its window made too long to leave;
//! - `blending`: the same seed in BLENDING (alpha held near 0.5 by a very long schedule);
//! - `static`: no Kasmina, the same seed's architecture trained as part of the host (the demo's
//!   static run): what the seed's own arithmetic costs, so that `blending - static` is what
//!   Kasmina adds around a live seed (its isolation probe, its own optimiser, the gates).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::loss::cross_entropy;
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use kasmina_hosts::{CONTEXT, Input, Model, Task, cnn};
use kasmina_runtime::reexports::telemetry::{NullSink, Telemetry, TelemetryConfig};
use kasmina_runtime::{Kasmina, SeedKernel, StepReport, blueprint::builtin};
use leyline::SeedLifecycleStage as Stage;

use crate::rigs;

/// The error of a rig.
pub type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The demo's learning rate for the cnn and transformer hosts (and their seeds).
pub const LR: f64 = 0.01;
/// The RNG seed of the hosts, their data and their seeds' kernels.
pub const SEED: u64 = 1;

/// A host as the demo builds it: its data's shape and its batch.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// The task (cnn or transformer).
    pub task: Task,
    /// Its data's shape.
    pub input: Input,
    /// The demo's batch.
    pub batch: usize,
}

/// The cnn (batch 64) and the transformer (batch 16).
pub const HOSTS: [Host; 2] = [
    Host { task: Task::Cnn, input: Input::Features { features: cnn::PIXELS, classes: 10 }, batch: 64 },
    Host { task: Task::Transformer, input: Input::Tokens { context: CONTEXT, vocab: 256 }, batch: 16 },
];

impl Host {
    /// `cpu/hosts/<task>`, or `<device>/hosts/<task>`.
    pub fn name(self, device: &str) -> String {
        format!("{device}/hosts/{}", self.task)
    }

    /// A random batch of inputs and labels of this host's kind.
    pub fn batch(self, dev: &Device) -> BoxResult<(Tensor, Tensor)> {
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
#[allow(missing_docs)]
pub enum Kind {
    Bare,
    Dormant,
    Training,
    Blending,
    Static,
}

/// Every rig kind, `bare` first.
pub const KINDS: [Kind; 5] = [Kind::Bare, Kind::Dormant, Kind::Training, Kind::Blending, Kind::Static];

impl Kind {
    /// The rig's name.
    pub fn as_str(self) -> &'static str {
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
pub struct Rig {
    /// What is behind the host's slots.
    pub kind: Kind,
    model: Model,
    opt: AdamW,
    kasmina: Option<Kasmina>,
    seed_slot: &'static str,
    /// How long the last step spent after the host's optimiser step (shadow losses, `on_step`).
    pub kasmina_ns: f64,
    /// Device-to-host reads Kasmina made in the last step's `on_step`.
    last_reads: u64,
    x: Tensor,
    y: Tensor,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// A rig of `kind` for `host` on `dev`, its seed (if any) already in the rig's stage.
    pub fn new(host: Host, kind: Kind, dev: &Device) -> BoxResult<Self> {
        let dev = dev.clone();
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
        let mut rig = Self { kind, model, opt, kasmina, seed_slot, kasmina_ns: 0.0, last_reads: 0, x, y, _dir: dir };
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

    /// The stage of the rig's seed (`None`: no seed).
    pub fn stage(&self) -> Option<Stage> {
        let kasmina = self.kasmina.as_ref()?;
        kasmina.seed_summaries().into_iter().find(|s| s.slot == self.seed_slot).map(|s| s.stage)
    }

    /// The seed is still where it is timed (a cull mid-bench would time something else).
    pub fn check(&self) -> BoxResult<()> {
        let (want, got) = (self.wanted_stage(), self.stage());
        if want == got {
            return Ok(());
        }
        let summaries = self.kasmina.as_ref().map(Kasmina::seed_summaries);
        Err(format!("{:?} rig: seed in {got:?}, not {want:?}: {summaries:?}", self.kind).into())
    }

    /// The demo's step (`Session::step`); the loss.
    pub fn step(&mut self) -> BoxResult<f32> {
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
            let reads = kasmina.stats().device_reads;
            kasmina.on_step(&grads, report)?;
            self.last_reads = kasmina.stats().device_reads - reads;
            self.kasmina_ns = start.elapsed().as_secs_f64() * 1e9;
        }
        Ok(value)
    }
}

impl Rig {
    /// The device reads Kasmina made in the last step's `on_step` (0 without Kasmina).
    pub fn device_reads_per_step(&self) -> u64 {
        self.last_reads
    }
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig").field("kind", &self.kind).field("stage", &self.stage()).finish_non_exhaustive()
    }
}
