//! A training session: the host model, its data, and Kasmina embedded the way Esper's trainer
//! embeds it. Shared by `demo` and `serve`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use candle_nn::{Linear, VarBuilder, VarMap, linear, loss::cross_entropy};
use kasmina_runtime::reexports::security::{KeyRing, VerifierConfig};
use kasmina_runtime::reexports::telemetry::Telemetry;
use kasmina_runtime::{
    EpochReport, FossilizedSeed, Kasmina, KasminaConfig, SeedKernel, SeedSlot, StepReport, blueprint::builtin,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Default width of the host's hidden layers (and of its second slot): small on purpose, so
/// that the host is too small for the built-in task and a seed has capacity to add.
pub(crate) const HIDDEN: u16 = 4;
/// Width of `serve`'s host (the slot width remote clients size their seeds for).
pub(crate) const SERVE_WIDTH: usize = 128;
/// The slot on the host's input (width = the number of features).
pub(crate) const SLOT_A: &str = "input";
/// The slot after the second hidden layer (width = the host's width).
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
    /// The built-in task: 8 uniform features in [-1, 1]; the class (4, balanced) is the
    /// quartile of the radius of the first five, `|x[..5]|` (thresholds 1.088, 1.278, 1.452).
    /// A radial boundary in five dimensions needs many ReLU units: the demo's 4-wide host is
    /// simply too small for it and plateaus around 50 %; a seed that adds capacity can lift it.
    pub(crate) fn synthetic(seed: u64, n: usize, device: &Device) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xDA7A);
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let x: Vec<f32> = (0..8).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let r = x[..5].iter().map(|v| v * v).sum::<f32>().sqrt();
            let label = u32::from(r > 1.088) + u32::from(r > 1.278) + u32::from(r > 1.452);
            rows.push((x, label));
        }
        Self::from_rows(rows, 8, 4, "synthetic 5-d radial quartiles (8 features, 4 classes)", device)
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

    /// Standardises every feature with the training split's mean and standard deviation (a
    /// constant feature is centred only).
    pub(crate) fn standardize(&mut self) -> Result<()> {
        let mean = self.train_x.mean_keepdim(0)?;
        let centred = self.train_x.broadcast_sub(&mean)?;
        let std = centred.sqr()?.mean_keepdim(0)?.sqrt()?;
        let ones = std.ones_like()?;
        let std = std.ge(1e-8)?.where_cond(&std, &ones)?;
        self.train_x = centred.broadcast_div(&std)?;
        self.val_x = self.val_x.broadcast_sub(&mean)?.broadcast_div(&std)?;
        Ok(())
    }

    pub(crate) fn train_len(&self) -> usize {
        self.train_x.dims()[0]
    }
}

/// The host: slot A on its input → linear → ReLU → linear → ReLU → slot B → linear, `width`
/// units wide.
/// With the default width it is simply too small for the built-in task; a seed can add the
/// capacity it lacks. `static_seed` puts a seed's architecture into the host from step 0 (the
/// "static" baseline: the same capacity, trained by the host's optimiser from the start).
pub(crate) struct Model {
    pub(crate) varmap: VarMap,
    l1: Linear,
    l2: Linear,
    l3: Linear,
    pub(crate) slots: Option<(SeedSlot, SeedSlot)>,
    static_seed: Option<(String, SeedKernel)>,
    pub(crate) width: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("slots", &self.slots).field("width", &self.width).finish_non_exhaustive()
    }
}

impl Model {
    fn new(features: usize, classes: usize, width: usize, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let l1 = linear(features, width, vb.pp("l1"))?;
        let l2 = linear(width, width, vb.pp("l2"))?;
        let l3 = linear(width, classes, vb.pp("l3"))?;
        // Seeded initialisation (candle's CPU RNG cannot be seeded): uniform ±1/sqrt(fan_in).
        let mut varmap = varmap;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x1417);
        for (name, rows, cols) in [
            ("l1.weight", width, features),
            ("l1.bias", width, 0),
            ("l2.weight", width, width),
            ("l2.bias", width, 0),
            ("l3.weight", classes, width),
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
        Ok(Self { varmap, l1, l2, l3, slots: None, static_seed: None, width })
    }

    /// Parameters of the host (and of its static seed, when it has one).
    pub(crate) fn params(&self) -> usize {
        let host: usize = self.varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        host + self.static_seed.as_ref().map_or(0, |(_, k)| k.param_count())
    }

    /// The output of the layer that feeds `slot`, through the slot (or the static seed).
    fn through(&self, slot: &str, h: &Tensor) -> Result<Tensor> {
        if let Some((s, kernel)) = &self.static_seed
            && s == slot
        {
            return Ok((h + kernel.delta(h)?)?);
        }
        match (&self.slots, slot) {
            (Some((a, _)), SLOT_A) => Ok(a.forward(h)?),
            (Some((_, b)), SLOT_B) => Ok(b.forward(h)?),
            _ => Ok(h.clone()),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.through(SLOT_A, x)?;
        let h = self.l1.forward(&h)?.relu()?;
        let h = self.through(SLOT_B, &self.l2.forward(&h)?.relu()?)?;
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
    /// Width of the host's hidden layers.
    pub(crate) width: usize,
    /// The static baseline: this blueprint's architecture in this slot from step 0, trained by
    /// the host's optimiser (no Kasmina seeds then).
    pub(crate) static_seed: Option<(String, String)>,
    /// Standardise the features (mean 0, variance 1 from the training split).
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
        let mut data = match &opts.data {
            Some(path) => Dataset::csv(path, opts.seed, &opts.device)?,
            None => Dataset::synthetic(opts.seed, 8192, &opts.device)?,
        };
        if opts.standardize {
            data.standardize()?;
        }
        let mut model = Model::new(data.features, data.classes, opts.width, opts.seed, &opts.device)?;
        let library = builtin::write_library(&opts.blueprint_dir, &[data.features, opts.width], opts.seed)?;
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
        let mut host_vars = model.varmap.all_vars();
        if let Some((slot, blueprint)) = &opts.static_seed {
            let width = if slot == SLOT_A { data.features } else { opts.width };
            let artifact = builtin::artifact(blueprint, width, opts.seed, &opts.device)?;
            let kernel = SeedKernel::instantiate(&artifact, &opts.device)?;
            host_vars.extend(kernel.vars());
            model.static_seed = Some((slot.clone(), kernel));
        } else if !opts.host_only {
            model.slots = Some((kasmina.slot(SLOT_A, data.features)?, kasmina.slot(SLOT_B, opts.width)?));
        }
        let params = ParamsAdamW { lr: opts.host_lr, weight_decay: 0.0, ..ParamsAdamW::default() };
        let opt = AdamW::new(host_vars, params)?;
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
