//! A training session: the host model, its data, and Kasmina embedded the way Esper's trainer
//! embeds it. Shared by `demo` and `serve`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use candle_nn::{Linear, VarBuilder, VarMap, linear, loss::cross_entropy};
use kasmina_runtime::reexports::security::KeyRing;
use kasmina_runtime::reexports::telemetry::Telemetry;
use kasmina_runtime::{EpochReport, FossilizedSeed, Kasmina, KasminaConfig, SeedSlot, StepReport, blueprint::builtin};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Width of the host's hidden layers (and of its two seed slots).
pub(crate) const HIDDEN: usize = 128;
/// The slot after the first hidden layer.
pub(crate) const SLOT_A: &str = "hidden1";
/// The slot after the second hidden layer.
pub(crate) const SLOT_B: &str = "hidden2";

/// Train and validation tensors.
#[derive(Debug, Clone)]
pub(crate) struct Dataset {
    pub(crate) train_x: Tensor,
    pub(crate) train_y: Tensor,
    pub(crate) val_x: Tensor,
    pub(crate) val_y: Tensor,
    pub(crate) features: usize,
    pub(crate) classes: usize,
    pub(crate) name: String,
}

impl Dataset {
    /// The built-in task: 8 uniform features in [-1, 1], 4 classes =
    /// 2·[x0·x1 > 0] + [x2 + 0.5·x3 > 0]. The second bit is linear, the first is XOR-like: a host
    /// without non-linearity solves half the task (≈ 50 % accuracy) and plateaus.
    pub(crate) fn synthetic(seed: u64, n: usize, device: &Device) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xDA7A);
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let x: Vec<f32> = (0..8).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let label = 2 * u32::from(x[0] * x[1] > 0.0) + u32::from(x[2] + 0.5 * x[3] > 0.0);
            rows.push((x, label));
        }
        Self::from_rows(rows, 8, 4, "synthetic xor+linear (8 features, 4 classes)", device)
    }

    /// A CSV file: numeric feature columns, the last column an integer class label (0-based).
    /// A header line is skipped when its first field is not a number. 80 % train, 20 % validation
    /// after a seeded shuffle.
    pub(crate) fn csv(path: &Path, seed: u64, device: &Device) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut rows = Vec::new();
        let mut width = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if i == 0 && fields[0].parse::<f32>().is_err() {
                continue;
            }
            if fields.len() < 2 {
                bail!("{}:{}: need at least one feature and a label", path.display(), i + 1);
            }
            let (label, feats) = fields.split_last().context("empty line")?;
            let x: Vec<f32> = feats
                .iter()
                .map(|f| {
                    f.parse::<f32>().with_context(|| format!("{}:{}: `{f}` is not a number", path.display(), i + 1))
                })
                .collect::<Result<_>>()?;
            if x.iter().any(|v| !v.is_finite()) {
                bail!("{}:{}: non-finite feature", path.display(), i + 1);
            }
            let label: u32 = label
                .parse()
                .with_context(|| format!("{}:{}: label `{label}` is not a class index", path.display(), i + 1))?;
            match width {
                None => width = Some(x.len()),
                Some(w) if w != x.len() => bail!("{}:{}: {} features, expected {w}", path.display(), i + 1, x.len()),
                _ => {}
            }
            rows.push((x, label));
        }
        let features = width.context("the CSV has no data rows")?;
        if rows.len() < 10 {
            bail!("{}: only {} rows; need at least 10", path.display(), rows.len());
        }
        let classes = rows.iter().map(|(_, l)| *l as usize).max().unwrap_or(0) + 1;
        let mut rng = StdRng::seed_from_u64(seed);
        rows.shuffle(&mut rng);
        Self::from_rows(rows, features, classes.max(2), &path.display().to_string(), device)
    }

    fn from_rows(
        rows: Vec<(Vec<f32>, u32)>,
        features: usize,
        classes: usize,
        name: &str,
        device: &Device,
    ) -> Result<Self> {
        let n_val = (rows.len() / 5).max(1);
        let (val, train) = rows.split_at(n_val);
        let to_tensors = |part: &[(Vec<f32>, u32)]| -> Result<(Tensor, Tensor)> {
            let xs: Vec<f32> = part.iter().flat_map(|(x, _)| x.iter().copied()).collect();
            let ys: Vec<u32> = part.iter().map(|(_, y)| *y).collect();
            Ok((Tensor::from_vec(xs, (part.len(), features), device)?, Tensor::from_vec(ys, part.len(), device)?))
        };
        let (train_x, train_y) = to_tensors(train)?;
        let (val_x, val_y) = to_tensors(val)?;
        Ok(Self { train_x, train_y, val_x, val_y, features, classes, name: name.to_owned() })
    }

    pub(crate) fn train_len(&self) -> usize {
        self.train_x.dims()[0]
    }
}

/// The host: linear → slot A → linear → slot B → linear. No non-linearity of its own, so on the
/// built-in task it learns the linear half and plateaus; a seed can add what it lacks.
pub(crate) struct Model {
    pub(crate) varmap: VarMap,
    l1: Linear,
    l2: Linear,
    l3: Linear,
    pub(crate) slots: Option<(SeedSlot, SeedSlot)>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("slots", &self.slots).finish_non_exhaustive()
    }
}

impl Model {
    fn new(features: usize, classes: usize, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let l1 = linear(features, HIDDEN, vb.pp("l1"))?;
        let l2 = linear(HIDDEN, HIDDEN, vb.pp("l2"))?;
        let l3 = linear(HIDDEN, classes, vb.pp("l3"))?;
        // Seeded initialisation (candle's CPU RNG cannot be seeded): uniform ±1/sqrt(fan_in).
        let mut varmap = varmap;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x1417);
        for (name, rows, cols) in [
            ("l1.weight", HIDDEN, features),
            ("l1.bias", HIDDEN, 0),
            ("l2.weight", HIDDEN, HIDDEN),
            ("l2.bias", HIDDEN, 0),
            ("l3.weight", classes, HIDDEN),
            ("l3.bias", classes, 0),
        ] {
            let fan_in = if cols == 0 { rows } else { cols };
            let bound = 1.0 / (fan_in as f32).sqrt();
            let n = rows * cols.max(1);
            let data: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
            let t = if cols == 0 {
                Tensor::from_vec(data, rows, device)?
            } else {
                Tensor::from_vec(data, (rows, cols), device)?
            };
            varmap.set_one(name, t)?;
        }
        Ok(Self { varmap, l1, l2, l3, slots: None })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.l1.forward(x)?;
        if let Some((a, _)) = &self.slots {
            h = a.forward(&h)?;
        }
        h = self.l2.forward(&h)?;
        if let Some((_, b)) = &self.slots {
            h = b.forward(&h)?;
        }
        Ok(self.l3.forward(&h)?)
    }
}

/// How to build a session.
#[derive(Debug)]
pub(crate) struct SessionOptions {
    pub(crate) device: Device,
    pub(crate) data: Option<PathBuf>,
    pub(crate) seed: u64,
    pub(crate) batch: usize,
    pub(crate) host_lr: f64,
    pub(crate) config: KasminaConfig,
    pub(crate) keys: KeyRing,
    pub(crate) telemetry: Telemetry,
    pub(crate) blueprint_dir: PathBuf,
    pub(crate) host_only: bool,
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
    pub(crate) data: Dataset,
    opt: AdamW,
    rng: StdRng,
    batch: usize,
    pub(crate) step: u64,
    pub(crate) epoch: u32,
    /// Wall time of the training steps, and the part spent inside Kasmina, in ms.
    pub(crate) step_ms: f64,
    pub(crate) kasmina_ms: f64,
}

impl Session {
    pub(crate) fn new(opts: SessionOptions) -> Result<Self> {
        let data = match &opts.data {
            Some(path) => Dataset::csv(path, opts.seed, &opts.device)?,
            None => Dataset::synthetic(opts.seed, 8192, &opts.device)?,
        };
        let mut model = Model::new(data.features, data.classes, opts.seed, &opts.device)?;
        let library = builtin::write_library(&opts.blueprint_dir, &[HIDDEN], opts.seed)?;
        let kasmina = Kasmina::builder()
            .device(opts.device.clone())
            .config(opts.config)
            .signing_keys(opts.keys)
            .blueprints(library)
            .telemetry(opts.telemetry)
            .host_varmap(&model.varmap)
            .build()?;
        if !opts.host_only {
            model.slots = Some((kasmina.slot(SLOT_A, HIDDEN)?, kasmina.slot(SLOT_B, HIDDEN)?));
        }
        let params = ParamsAdamW { lr: opts.host_lr, weight_decay: 0.0, ..ParamsAdamW::default() };
        let opt = AdamW::new(model.varmap.all_vars(), params)?;
        Ok(Self {
            kasmina,
            model,
            data,
            opt,
            rng: StdRng::seed_from_u64(opts.seed ^ 0xBA7C),
            batch: opts.batch.max(1),
            step: 0,
            epoch: 0,
            step_ms: 0.0,
            kasmina_ms: 0.0,
        })
    }

    /// Steps per epoch.
    pub(crate) fn steps_per_epoch(&self) -> usize {
        self.data.train_len().div_ceil(self.batch)
    }

    /// One training step on a batch: forward, loss, backward, host step, shadow losses, the
    /// Kasmina safe point.
    pub(crate) fn step(&mut self, x: &Tensor, y: &Tensor) -> Result<StepInfo> {
        let start = Instant::now();
        let logits = self.model.forward(x)?;
        let loss = cross_entropy(&logits, y)?;
        let grads = loss.backward()?;
        self.opt.step(&grads)?;
        let loss_value = loss.to_scalar::<f32>()?;
        let mut fossilized = Vec::new();
        if self.model.slots.is_some() {
            let k_start = Instant::now();
            let mut report = StepReport::new(loss_value);
            for slot in self.kasmina.shadow_slots() {
                let shadow = self.kasmina.with_shadow(&slot, || self.model.forward(x))??;
                report = report.with_shadow_loss(slot, cross_entropy(&shadow, y)?.to_scalar::<f32>()?);
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

    /// One epoch over shuffled batches, then validation and the epoch safe point.
    pub(crate) fn epoch(&mut self, mut on_step: impl FnMut(&Self, &StepInfo) -> Result<()>) -> Result<EpochInfo> {
        let n = self.data.train_len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut self.rng);
        let mut total = 0.0;
        let mut count = 0;
        for chunk in order.chunks(self.batch) {
            let idx = Tensor::from_vec(chunk.to_vec(), chunk.len(), self.data.train_x.device())?;
            let x = self.data.train_x.index_select(&idx, 0)?;
            let y = self.data.train_y.index_select(&idx, 0)?;
            let info = self.step(&x, &y)?;
            total += info.loss;
            count += 1;
            on_step(self, &info)?;
        }
        let (val_loss, val_acc) = self.validate()?;
        if self.model.slots.is_some() {
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
        let logits = self.model.forward(&self.data.val_x)?;
        let loss = cross_entropy(&logits, &self.data.val_y)?.to_scalar::<f32>()?;
        let pred = logits.argmax(1)?;
        let acc = pred.eq(&self.data.val_y)?.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()?;
        Ok((loss, acc))
    }
}

/// Validation batches used for counterfactual evaluation.
const VAL_BATCHES: usize = 8;

/// The validation loss of each of [`VAL_BATCHES`] fixed batches (no training).
fn validation_batches(model: &Model, data: &Dataset) -> candle_core::Result<Vec<f32>> {
    let n = data.val_x.dim(0)?;
    let size = n.div_ceil(VAL_BATCHES).max(1);
    let mut out = Vec::with_capacity(VAL_BATCHES);
    let mut start = 0;
    while start < n {
        let len = size.min(n - start);
        let x = data.val_x.narrow(0, start, len)?;
        let y = data.val_y.narrow(0, start, len)?;
        let logits = model.forward(&x).map_err(candle_core::Error::msg)?;
        out.push(cross_entropy(&logits, &y)?.to_scalar::<f32>()?);
        start += len;
    }
    Ok(out)
}

/// Parses `--device`.
pub(crate) fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).context("no CUDA device (build with `--features cuda` on a machine with a GPU)"),
        other => bail!("unknown device `{other}` (cpu or cuda)"),
    }
}
