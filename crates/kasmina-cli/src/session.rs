//! A training session: the host model, its data, and Kasmina embedded the way Esper's trainer
//! embeds it. Shared by `demo` and `serve`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::loss::cross_entropy;
use candle_nn::optim::{Optimizer, ParamsAdamW};
use kasmina_runtime::reexports::security::{KeyRing, VerifierConfig};
use kasmina_runtime::reexports::telemetry::Telemetry;
use kasmina_runtime::{
    AdamW, EpochReport, FossilizedSeed, Kasmina, KasminaConfig, SeedKernel, StepReport, blueprint::builtin,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::data::{DIGITS_FILE, Data, Dataset, TEXT_FILE, Text, locate};
use kasmina_hosts::{CONTEXT, Model, Task};

/// Width of `serve`'s host (the slot width remote clients size their seeds for).
pub(crate) const SERVE_WIDTH: usize = 128;
/// Training windows per epoch of the text task (64 steps of 16).
const TEXT_WINDOWS_PER_EPOCH: usize = 1024;
/// Fixed validation windows of the text task, spread evenly over the held-out chapters.
const TEXT_VAL_WINDOWS: usize = 512;

/// Raised from the per-step callback to stop an epoch at a step boundary.
#[derive(Debug)]
pub(crate) struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("training stopped")
    }
}

impl std::error::Error for Stopped {}

/// How to build a session.
#[derive(Debug)]
pub(crate) struct SessionOptions {
    pub(crate) device: Device,
    /// The host and its data.
    pub(crate) task: Task,
    /// The mlp host's data: a CSV file (default: the built-in synthetic table).
    pub(crate) data: Option<PathBuf>,
    /// Where the cnn and transformer hosts' datasets are (default: the first `datasets/` found
    /// walking up from the current directory).
    pub(crate) data_dir: Option<PathBuf>,
    /// At most this many training rows (text windows per epoch) and validation rows (windows).
    pub(crate) limit: Option<usize>,
    pub(crate) seed: u64,
    pub(crate) batch: usize,
    pub(crate) host_lr: f64,
    pub(crate) config: KasminaConfig,
    pub(crate) keys: KeyRing,
    pub(crate) telemetry: Telemetry,
    pub(crate) blueprint_dir: PathBuf,
    pub(crate) host_only: bool,
    /// Width of the host: hidden units (mlp), channels of the first convolution (cnn), model
    /// dimension (transformer).
    pub(crate) width: usize,
    /// The static baseline: this blueprint's architecture in this slot from step 0, trained by
    /// the host's optimiser (no Kasmina seeds then).
    pub(crate) static_seed: Option<(String, String)>,
    /// Standardise the mlp host's features (mean 0, variance 1 from the training split).
    pub(crate) standardize: bool,
    /// The command verifier's limits (default: the library's).
    pub(crate) verifier: Option<VerifierConfig>,
}

/// What one training step did.
#[derive(Debug, Clone)]
pub(crate) struct StepInfo {
    pub(crate) step: u64,
    pub(crate) loss: f32,
    /// Seeds fossilized at this step's safe point.
    #[allow(dead_code)] // read by `serve`'s log, not by the demo
    pub(crate) fossilized: Vec<FossilizedSeed>,
}

/// How far into its epoch a session is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct EpochProgress {
    /// Batches of the epoch already trained on.
    pub(crate) batches: usize,
    /// Their summed training loss.
    pub(crate) total: f32,
}

/// What one epoch did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EpochInfo {
    pub(crate) epoch: u32,
    pub(crate) train_loss: f32,
    pub(crate) val_loss: f32,
    pub(crate) val_acc: f32,
}

/// A running training session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) kasmina: Kasmina,
    pub(crate) model: Model,
    pub(crate) data: Data,
    opt: AdamW,
    /// The optimiser's variables by name, in its order (host variables sorted by name, then
    /// the static seed's as `static.<name>`): what a checkpoint saves.
    opt_vars: Vec<(String, Var)>,
    rng: StdRng,
    /// Where the current epoch is (batches done, their summed loss): a checkpoint taken
    /// mid-epoch resumes from here.
    pub(crate) progress: EpochProgress,
    batch: usize,
    pub(crate) step: u64,
    pub(crate) epoch: u32,
    /// Wall time of the training steps, and the part spent inside Kasmina, in ms.
    pub(crate) step_ms: f64,
    pub(crate) kasmina_ms: f64,
}

impl Session {
    /// Loads the data, builds the host and Kasmina, attaches the slots (grown run) or the static
    /// seed (static run).
    /// For a training thread: builds the session and hands its `Kasmina` (or the build error)
    /// to the thread waiting on `ready`; `None` when the build failed.
    pub(crate) fn start(options: SessionOptions, ready: &std::sync::mpsc::SyncSender<Result<Kasmina>>) -> Option<Self> {
        match Self::new(options) {
            Ok(session) => {
                let _ = ready.send(Ok(session.kasmina.clone()));
                Some(session)
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                None
            }
        }
    }

    pub(crate) fn new(opts: SessionOptions) -> Result<Self> {
        let data = load_data(&opts)?;
        let mut model = Model::new(opts.task, data.input(), opts.width, opts.seed, &opts.device)?;
        let specs = model.slots();
        let mut widths: Vec<usize> = specs.iter().map(|s| s.width).collect();
        widths.dedup();
        let library = builtin::write_library(&opts.blueprint_dir, &widths, opts.seed)?;
        let mut builder = Kasmina::builder()
            .device(opts.device.clone())
            .config(opts.config)
            .signing_keys(opts.keys)
            .blueprints(library)
            .telemetry(opts.telemetry)
            .host_varmap(&model.varmap);
        if let Some(verifier) = opts.verifier {
            builder = builder.verifier_config(verifier);
        }
        let kasmina = builder.build()?;
        // Sorted by name: the optimiser's order (and a checkpoint's) is the same in every process.
        let mut opt_vars: Vec<(String, Var)> = {
            let vars = model.varmap.data().lock().map_err(|_| anyhow::anyhow!("the host's variables are poisoned"))?;
            vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        opt_vars.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some((slot, blueprint)) = &opts.static_seed {
            let spec =
                specs.iter().find(|s| s.name == slot).with_context(|| format!("the host has no slot `{slot}`"))?;
            let artifact = builtin::artifact(blueprint, spec.width, opts.seed, &opts.device)?;
            let kernel = SeedKernel::instantiate(&artifact, &opts.device)?;
            opt_vars.extend(kernel.named_vars().iter().map(|(n, v)| (format!("static.{n}"), v.clone())));
            model.set_static(slot, kernel);
        } else if !opts.host_only {
            model.attach_to(&kasmina)?;
        }
        let params = ParamsAdamW { lr: opts.host_lr, weight_decay: 0.0, ..ParamsAdamW::default() };
        let opt = AdamW::new(opt_vars.iter().map(|(_, v)| v.clone()).collect(), params)?;
        Ok(Self {
            kasmina,
            model,
            data,
            opt,
            opt_vars,
            rng: StdRng::seed_from_u64(opts.seed ^ RNG_SALT),
            progress: EpochProgress::default(),
            batch: opts.batch.max(1),
            step: 0,
            epoch: 0,
            step_ms: 0.0,
            kasmina_ms: 0.0,
        })
    }

    /// Steps per epoch.
    pub(crate) fn steps_per_epoch(&self) -> usize {
        self.data.steps_per_epoch(self.batch)
    }

    /// One training step on a batch: forward, loss, backward, host step, shadow losses, the
    /// Kasmina safe point.
    pub(crate) fn step(&mut self, x: &Tensor, y: &Tensor) -> Result<StepInfo> {
        let start = Instant::now();
        let y = &y.flatten_all()?;
        let logits = self.model.forward(x)?;
        let loss = cross_entropy(&logits, y)?;
        let grads = loss.backward()?;
        self.opt.step(&grads)?;
        let loss_value = loss.to_scalar::<f32>()?;
        let mut fossilized = Vec::new();
        if self.model.has_slots() {
            let k_start = Instant::now();
            let mut report = StepReport::new(loss_value);
            for slot in self.kasmina.shadow_slots() {
                let shadow = self.kasmina.with_shadow(&slot, || self.model.forward(x))??;
                report = report.with_shadow_loss_tensor(slot, &cross_entropy(&shadow, y)?)?;
            }
            // A fossilized seed keeps training with its own optimiser inside Kasmina; the host's
            // optimiser is left alone (decisions D4).
            let outcome = self.kasmina.on_step(&grads, report)?;
            self.kasmina_ms += k_start.elapsed().as_secs_f64() * 1e3;
            fossilized = outcome.fossilized;
        }
        self.step += 1;
        self.step_ms += start.elapsed().as_secs_f64() * 1e3;
        Ok(StepInfo { step: self.step, loss: loss_value, fossilized })
    }

    /// One epoch over shuffled batches (the rest of it, when a checkpoint was taken
    /// mid-epoch), then validation and the epoch safe point.
    pub(crate) fn epoch(&mut self, mut on_step: impl FnMut(&Self, &StepInfo) -> Result<()>) -> Result<EpochInfo> {
        for (x, y) in self.data.batches(&mut self.rng, self.batch)?.into_iter().skip(self.progress.batches) {
            let info = self.step(&x, &y)?;
            self.progress.total += info.loss;
            self.progress.batches += 1;
            on_step(self, &info)?;
        }
        let EpochProgress { batches: count, total } = std::mem::take(&mut self.progress);
        let (val_loss, val_acc) = self.validate()?;
        if self.model.has_slots() {
            let k_start = Instant::now();
            // The counterfactual contribution of seeds in SHADOWING/PROBATIONARY (gates G3, G4):
            // the validation batches with each such slot bypassed vs as it is.
            let (model, data) = (&self.model, &self.data);
            self.kasmina.evaluate_counterfactual(|| validation_batches(model, data))?;
            self.kasmina.on_epoch(EpochReport { epoch: self.epoch, val_loss, val_acc })?;
            self.kasmina_ms += k_start.elapsed().as_secs_f64() * 1e3;
        }
        let info = EpochInfo { epoch: self.epoch, train_loss: total / count.max(1) as f32, val_loss, val_acc };
        self.epoch += 1;
        Ok(info)
    }

    /// Validation loss and accuracy.
    pub(crate) fn validate(&self) -> Result<(f32, f32)> {
        let (x, y) = self.data.val();
        let y = y.flatten_all()?;
        let logits = self.model.forward(x)?;
        let loss = cross_entropy(&logits, &y)?.to_scalar::<f32>()?;
        let pred = logits.argmax(1)?;
        let acc = pred.eq(&y)?.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()?;
        Ok((loss, acc))
    }
}

/// Salt of the batch-order generator's seed.
const RNG_SALT: u64 = 0xBA7C;

impl Session {
    /// The host's state for a checkpoint: every optimiser variable (`var.<name>`) and its two
    /// AdamW moments (`adam_m.<name>`, `adam_v.<name>`) as safetensors bytes, and the
    /// optimiser's step count.
    pub(crate) fn host_state(&self) -> Result<(Vec<u8>, u64)> {
        let state = self.opt.state()?;
        let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(3 * self.opt_vars.len());
        for ((name, var), (m, v)) in self.opt_vars.iter().zip(state.moments) {
            tensors.push((format!("var.{name}"), var.as_tensor().copy()?));
            tensors.push((format!("adam_m.{name}"), m));
            tensors.push((format!("adam_v.{name}"), v));
        }
        let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), None)?;
        Ok((bytes, state.step))
    }

    /// Restores what [`host_state`](Self::host_state) saved and Kasmina's part of `checkpoint`,
    /// then moves the session to `step`, `epoch` and `progress` (the batch order is replayed
    /// from the seed: the generator draws one shuffle per epoch). Checked before anything
    /// changes, except that Kasmina's own restore comes first and is itself all-or-nothing.
    pub(crate) fn restore(
        &mut self,
        checkpoint: &kasmina_runtime::Checkpoint,
        host_file: &str,
        seed: u64,
        (step, epoch, progress, opt_steps): (u64, u32, EpochProgress, u64),
    ) -> Result<()> {
        let saved = candle_core::safetensors::load_buffer(checkpoint.file(host_file)?, self.model_device())?;
        let get = |key: String, like: &Var| -> Result<Tensor> {
            let t = saved.get(&key).with_context(|| format!("{host_file}: no tensor `{key}`"))?;
            anyhow::ensure!(
                t.dims() == like.dims(),
                "{host_file}: `{key}` is {:?}, the host's {:?}",
                t.dims(),
                like.dims()
            );
            Ok(t.clone())
        };
        let mut values = Vec::with_capacity(self.opt_vars.len());
        let mut moments = Vec::with_capacity(self.opt_vars.len());
        for (name, var) in &self.opt_vars {
            values.push(get(format!("var.{name}"), var)?);
            moments.push((get(format!("adam_m.{name}"), var)?, get(format!("adam_v.{name}"), var)?));
        }
        self.kasmina.restore_checkpoint(checkpoint)?;
        for ((_, var), value) in self.opt_vars.iter().zip(values) {
            var.set(&value)?;
        }
        let params = self.opt.params().clone();
        self.opt.load_state(&kasmina_runtime::AdamWState { step: opt_steps, params, moments })?;
        self.rng = StdRng::seed_from_u64(seed ^ RNG_SALT);
        for _ in 0..epoch {
            self.data.batches(&mut self.rng, self.batch)?;
        }
        (self.step, self.epoch, self.progress) = (step, epoch, progress);
        Ok(())
    }

    fn model_device(&self) -> &Device {
        self.opt_vars.first().map_or(&Device::Cpu, |(_, v)| v.device())
    }
}

/// Validation batches used for counterfactual evaluation.
const VAL_BATCHES: usize = 8;

/// The validation loss of each of [`VAL_BATCHES`] fixed batches (no training).
fn validation_batches(model: &Model, data: &Data) -> candle_core::Result<Vec<f32>> {
    let (val_x, val_y) = data.val();
    let n = val_x.dim(0)?;
    let size = n.div_ceil(VAL_BATCHES).max(1);
    let mut out = Vec::with_capacity(VAL_BATCHES);
    let mut start = 0;
    while start < n {
        let len = size.min(n - start);
        let x = val_x.narrow(0, start, len)?;
        let y = val_y.narrow(0, start, len)?.flatten_all()?;
        let logits = model.forward(&x).map_err(candle_core::Error::msg)?;
        out.push(cross_entropy(&logits, &y)?.to_scalar::<f32>()?);
        start += len;
    }
    Ok(out)
}

/// The data of `opts.task`: the mlp's table (standardised unless told not to), the digits or
/// the text, cut to `opts.limit`.
fn load_data(opts: &SessionOptions) -> Result<Data> {
    let dir = opts.data_dir.as_deref();
    let mut data = match opts.task {
        Task::Mlp => {
            let mut data = match &opts.data {
                Some(path) => Dataset::csv(path, opts.seed, &opts.device)?,
                None => Dataset::synthetic(opts.seed, 8192, &opts.device)?,
            };
            if opts.standardize {
                data.standardize()?;
            }
            Data::Table(data)
        }
        Task::Cnn => Data::Table(Dataset::digits(&locate(dir, DIGITS_FILE)?, &opts.device)?),
        Task::Transformer => Data::Text(Text::pride_and_prejudice(
            &locate(dir, TEXT_FILE)?,
            CONTEXT,
            TEXT_WINDOWS_PER_EPOCH,
            TEXT_VAL_WINDOWS,
            &opts.device,
        )?),
    };
    if let Some(n) = opts.limit {
        data.limit(n)?;
    }
    Ok(data)
}

/// Parses `--device`.
pub(crate) fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).context("no CUDA device (build with `--features cuda` on a machine with a GPU)"),
        other => bail!("unknown device `{other}` (cpu or cuda)"),
    }
}
