//! The demo's hosts: the networks Kasmina grows seeds in, one per `--task`. Each declares its
//! slots (name, width, layout) and routes its activations through them; the three demo runs
//! differ only in what sits behind those slots ([`Taps`]).
//!
//! - `mlp`: a 4-unit ReLU network on the built-in table (or `--data`); dense slots.
//! - `cnn`: two narrow 3×3 convolutions on the 8×8 digits; image slots.
//! - `transformer`: one causal self-attention block over bytes of *Pride and Prejudice*;
//!   sequence slots.

mod cnn;
mod mlp;
mod transformer;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kasmina_runtime::blueprint::builtin;
use kasmina_runtime::{Layout, SeedKernel, SeedSlot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{DIGITS_PIXELS, Data, VOCAB};

pub(crate) use mlp::{HIDDEN, SLOT_A, SLOT_B};
pub(crate) use transformer::CONTEXT;

/// Which host the demo trains, on which data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Task {
    /// A 4-unit ReLU MLP on the built-in synthetic table (or `--data FILE.csv`).
    #[default]
    Mlp,
    /// A narrow CNN on the UCI 8×8 handwritten digits (`datasets/digits/`).
    Cnn,
    /// A small causal byte-level transformer on *Pride and Prejudice* (`datasets/text/`).
    Transformer,
}

impl Task {
    /// The name `--task` takes.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Mlp => "mlp",
            Self::Cnn => "cnn",
            Self::Transformer => "transformer",
        }
    }

    /// The host's default width: hidden units (mlp), channels of the first convolution (cnn),
    /// model dimension (transformer).
    pub(crate) fn default_width(self) -> usize {
        match self {
            Self::Mlp => usize::from(HIDDEN),
            Self::Cnn => cnn::WIDTH,
            Self::Transformer => transformer::WIDTH,
        }
    }

    /// The demo's plan for this host: (slot, blueprint) of the helpful seed, then of the
    /// deliberately broken one, each of the slot's family.
    pub(crate) fn plan(self) -> [(&'static str, &'static str); 2] {
        match self {
            Self::Mlp => [(SLOT_A, builtin::WIDE_MLP), (SLOT_B, builtin::BROKEN)],
            Self::Cnn => [(cnn::SLOT_CONV2, builtin::CONV_RESIDUAL), (cnn::SLOT_CONV1, builtin::BROKEN_IMAGE)],
            Self::Transformer => {
                [(transformer::SLOT_BLOCK, builtin::PRENORM_MLP), (transformer::SLOT_EMBED, builtin::BROKEN_SEQUENCE)]
            }
        }
    }
}

/// A place in the host's forward where a seed can grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotSpec {
    /// The slot's name (what commands put in their `slot` annotation).
    pub(crate) name: &'static str,
    /// Features (dense, sequence) or channels (image).
    pub(crate) width: usize,
    /// The activation's layout.
    pub(crate) layout: Layout,
}

/// What sits behind the host's slots: Kasmina's slots (the grown run), one seed's architecture
/// trained as part of the host (the static run), or nothing (host only: activations pass).
#[derive(Debug, Default)]
pub(crate) struct Taps {
    slots: Vec<SeedSlot>,
    static_seed: Option<(String, SeedKernel)>,
}

impl Taps {
    /// The activation `h` of the layer that feeds `slot`, through the slot (or the static seed).
    pub(crate) fn through(&self, slot: &str, h: &Tensor) -> Result<Tensor> {
        if let Some((s, kernel)) = &self.static_seed
            && s == slot
        {
            return Ok((h + kernel.delta(h)?)?);
        }
        match self.slots.iter().find(|s| s.name() == slot) {
            Some(s) => Ok(s.forward(h)?),
            None => Ok(h.clone()),
        }
    }
}

/// The network of one task.
enum Net {
    Mlp(mlp::Mlp),
    Cnn(cnn::Cnn),
    Transformer(transformer::Transformer),
}

/// A host model: its parameters, its network and what sits behind its slots. `forward` returns
/// logits as `[rows, classes]` (one row per example, or per position of a text window), so one
/// cross entropy and one accuracy serve every task.
pub(crate) struct Model {
    pub(crate) varmap: VarMap,
    net: Net,
    taps: Taps,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("slots", &self.slots()).field("taps", &self.taps).finish_non_exhaustive()
    }
}

impl Model {
    /// The host of `task` for `data`, `width` wide, initialised from `seed`.
    pub(crate) fn new(task: Task, data: &Data, width: usize, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let net = match (task, data) {
            (Task::Mlp, Data::Table(d)) => Net::Mlp(mlp::Mlp::new(&varmap, vb, d.features, d.classes, width, seed)?),
            (Task::Cnn, Data::Table(d)) => {
                anyhow::ensure!(d.features == DIGITS_PIXELS, "the cnn host reads 8×8 images (64 features)");
                Net::Cnn(cnn::Cnn::new(&varmap, vb, d.classes, width, seed)?)
            }
            (Task::Transformer, Data::Text(t)) => {
                Net::Transformer(transformer::Transformer::new(&varmap, vb, t.context, VOCAB, width, seed)?)
            }
            _ => anyhow::bail!("the {} host cannot train on {}", task.as_str(), data.name()),
        };
        Ok(Self { varmap, net, taps: Taps::default() })
    }

    /// The host's slots, in the order of its forward.
    pub(crate) fn slots(&self) -> Vec<SlotSpec> {
        match &self.net {
            Net::Mlp(n) => n.slots(),
            Net::Cnn(n) => n.slots(),
            Net::Transformer(n) => n.slots(),
        }
    }

    /// Routes the slots through Kasmina (the grown run).
    pub(crate) fn attach(&mut self, slots: Vec<SeedSlot>) {
        self.taps.slots = slots;
    }

    /// Puts `kernel` in `slot` as part of the host (the static run).
    pub(crate) fn set_static(&mut self, slot: &str, kernel: SeedKernel) {
        self.taps.static_seed = Some((slot.to_owned(), kernel));
    }

    /// Whether Kasmina's slots are in the forward (the grown run).
    pub(crate) fn has_slots(&self) -> bool {
        !self.taps.slots.is_empty()
    }

    /// Parameters of the host (and of its static seed, when it has one).
    pub(crate) fn params(&self) -> usize {
        let host: usize = self.varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        host + self.taps.static_seed.as_ref().map_or(0, |(_, k)| k.param_count())
    }

    /// Logits `[rows, classes]` for a batch of inputs.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.net {
            Net::Mlp(n) => n.forward(x, &self.taps),
            Net::Cnn(n) => n.forward(x, &self.taps),
            Net::Transformer(n) => n.forward(x, &self.taps),
        }
    }
}

/// Seeded initialisation (candle's CPU generator cannot be seeded): sets the variables a host
/// created, in a fixed order, from one generator.
pub(crate) struct Init<'a> {
    varmap: &'a VarMap,
    rng: StdRng,
    device: Device,
}

impl<'a> Init<'a> {
    /// A generator for `varmap`'s variables seeded with `seed`.
    pub(crate) fn new(varmap: &'a VarMap, seed: u64, device: &Device) -> Self {
        Self { varmap, rng: StdRng::seed_from_u64(seed), device: device.clone() }
    }

    /// Sets `name` (of shape `dims`) to values drawn uniformly from ±`bound`.
    pub(crate) fn uniform(&mut self, name: &str, dims: &[usize], bound: f32) -> Result<()> {
        let n = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| self.rng.random_range(-bound..bound)).collect();
        self.set(name, Tensor::from_vec(data, dims, &self.device)?)
    }

    /// Sets `name` (of shape `dims`) to `value` everywhere.
    pub(crate) fn constant(&mut self, name: &str, dims: &[usize], value: f32) -> Result<()> {
        self.set(name, Tensor::full(value, dims, &self.device)?)
    }

    /// A linear layer `prefix` (`weight` `[out, inp]`, `bias` `[out]`) with PyTorch's default
    /// bound, 1/√fan_in.
    pub(crate) fn linear(&mut self, prefix: &str, inp: usize, out: usize) -> Result<()> {
        let bound = 1.0 / (inp as f32).sqrt();
        self.uniform(&format!("{prefix}.weight"), &[out, inp], bound)?;
        self.uniform(&format!("{prefix}.bias"), &[out], bound)
    }

    fn set(&mut self, name: &str, value: Tensor) -> Result<()> {
        let vars = self.varmap.data().lock().map_err(|_| anyhow::anyhow!("the host's variables are poisoned"))?;
        let var = vars.get(name).ok_or_else(|| anyhow::anyhow!("no host variable `{name}`"))?;
        var.set(&value)?;
        Ok(())
    }
}
