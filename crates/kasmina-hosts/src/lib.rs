//! Reference host networks for Kasmina: the small models its demo grows seeds in and its
//! benchmarks time, each with its slots declared (name, width, [`Layout`]) and its activations
//! routed through them.
//!
//! This crate is an example of how a trainer wires Kasmina into a model, and a fixture for
//! whoever wants to time or test a runtime on a real architecture; it is not part of the
//! runtime, which stays model-agnostic (decisions D18).
//!
//! - [`Task::Mlp`]: a 4-unit ReLU network on a feature table; dense slots.
//! - [`Task::Cnn`]: two narrow 3×3 convolutions on 8×8 images; image slots.
//! - [`Task::Transformer`]: one causal self-attention block over bytes; sequence slots.
//!
//! Main types: [`Model`] (a host's parameters, network and [`Taps`]), [`Task`], [`Input`] (the
//! shape of the data a host is built for), [`SlotSpec`], [`HostError`].
//!
//! Layer L3 (above the runtime): depends on `kasmina-runtime`, candle and `rand` only.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use kasmina_hosts::{Input, Model, Task};
//!
//! # fn main() -> Result<(), kasmina_hosts::HostError> {
//! let input = Input::Features { features: 64, classes: 10 };
//! let model = Model::new(Task::Cnn, input, Task::Cnn.default_width(), 1, &Device::Cpu)?;
//! let logits = model.forward(&Tensor::zeros((2, 64), DType::F32, &Device::Cpu)?)?;
//! assert_eq!(logits.dims(), [2, 10]);
//! assert_eq!(model.slots().len(), 2);
//! # Ok(())
//! # }
//! ```

pub mod cnn;
pub mod mlp;
pub mod transformer;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kasmina_runtime::blueprint::builtin;
use kasmina_runtime::{Layout, SeedKernel, SeedSlot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use mlp::{HIDDEN, SLOT_A, SLOT_B};
pub use transformer::CONTEXT;

/// What can go wrong building or running a host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// A Kasmina slot refused the activation (wrong layout or width, a seed's failure).
    #[error(transparent)]
    Slot(#[from] kasmina_runtime::Error),
    /// The host cannot be built for this data.
    #[error("the {task} host cannot train on {input}: {reason}")]
    Input {
        /// The host.
        task: Task,
        /// The data's shape.
        input: Input,
        /// Why not.
        reason: &'static str,
    },
    /// The host cannot be built at this width.
    #[error("the {task} host cannot be {width} wide: {reason}")]
    Width {
        /// The host.
        task: Task,
        /// The width asked for.
        width: usize,
        /// Why not.
        reason: String,
    },
    /// `--task` named no host.
    #[error("unknown task `{0}` (mlp, cnn or transformer)")]
    UnknownTask(String),
    /// A host variable the initialisation expected is missing (a bug in a host).
    #[error("no host variable `{0}`")]
    NoVariable(String),
    /// The host's variable map was poisoned by a panic elsewhere.
    #[error("the host's variables are poisoned")]
    Poisoned,
    /// The host has no slot of this name.
    #[error("the host has no slot `{0}`")]
    NoSlot(String),
}

/// The crate's result.
pub type Result<T, E = HostError> = std::result::Result<T, E>;

/// The shape of the data a host is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Rows of `features` numbers, each labelled with one of `classes` classes (a flat 8×8
    /// image is 64 features).
    Features {
        /// Numbers per row.
        features: usize,
        /// Classes of the label.
        classes: usize,
    },
    /// Windows of `context` tokens from a `vocab`-sized vocabulary; the label of each position
    /// is the next token.
    Tokens {
        /// Tokens per window.
        context: usize,
        /// Size of the vocabulary (256 for bytes).
        vocab: usize,
    },
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Features { features, classes } => write!(f, "rows of {features} features in {classes} classes"),
            Self::Tokens { context, vocab } => write!(f, "windows of {context} tokens of a {vocab}-token vocabulary"),
        }
    }
}

/// Which host: the demo's `--task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Task {
    /// A 4-unit ReLU MLP on the built-in synthetic table (or `--data FILE.csv`).
    #[default]
    Mlp,
    /// A narrow CNN on the UCI 8×8 handwritten digits (`datasets/digits/`).
    Cnn,
    /// A small causal byte-level transformer on *Pride and Prejudice* (`datasets/text/`).
    Transformer,
}

impl Task {
    /// Every host, in the order of `--task`'s help.
    pub const ALL: [Self; 3] = [Self::Mlp, Self::Cnn, Self::Transformer];

    /// The name `--task` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mlp => "mlp",
            Self::Cnn => "cnn",
            Self::Transformer => "transformer",
        }
    }

    /// The host's default width: hidden units (mlp), channels of the first convolution (cnn),
    /// model dimension (transformer).
    pub fn default_width(self) -> usize {
        match self {
            Self::Mlp => usize::from(HIDDEN),
            Self::Cnn => cnn::WIDTH,
            Self::Transformer => transformer::WIDTH,
        }
    }

    /// The demo's plan for this host: (slot, blueprint) of the helpful seed, then of the
    /// deliberately broken one, each of the slot's family.
    pub fn plan(self) -> [(&'static str, &'static str); 2] {
        match self {
            Self::Mlp => [(SLOT_A, builtin::WIDE_MLP), (SLOT_B, builtin::BROKEN)],
            Self::Cnn => [(cnn::SLOT_CONV2, builtin::CONV_RESIDUAL), (cnn::SLOT_CONV1, builtin::BROKEN_IMAGE)],
            Self::Transformer => {
                [(transformer::SLOT_BLOCK, builtin::PRENORM_MLP), (transformer::SLOT_EMBED, builtin::BROKEN_SEQUENCE)]
            }
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Task {
    type Err = HostError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| HostError::UnknownTask(s.to_owned()))
    }
}

/// A place in the host's forward where a seed can grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSpec {
    /// The slot's name (what commands put in their `slot` annotation).
    pub name: &'static str,
    /// Features (dense, sequence) or channels (image).
    pub width: usize,
    /// The activation's layout.
    pub layout: Layout,
}

/// What sits behind the host's slots: Kasmina's slots (the grown run), one seed's architecture
/// trained as part of the host (the static run), or nothing (host only: activations pass).
#[derive(Debug, Default)]
pub struct Taps {
    slots: Vec<SeedSlot>,
    static_seed: Option<(String, SeedKernel)>,
}

impl Taps {
    /// The activation `h` of the layer that feeds `slot`, through the slot (or the static seed).
    pub fn through(&self, slot: &str, h: &Tensor) -> Result<Tensor> {
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
pub struct Model {
    /// The host's own parameters (what its optimiser trains and what Kasmina's registry
    /// fences as the host's).
    pub varmap: VarMap,
    net: Net,
    taps: Taps,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("slots", &self.slots()).field("taps", &self.taps).finish_non_exhaustive()
    }
}

impl Model {
    /// The host of `task` for data of shape `input`, `width` wide, initialised from `seed`.
    pub fn new(task: Task, input: Input, width: usize, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let refuse = |reason| HostError::Input { task, input, reason };
        let net = match (task, input) {
            (Task::Mlp, Input::Features { features, classes }) => {
                Net::Mlp(mlp::Mlp::new(&varmap, vb, features, classes, width, seed)?)
            }
            (Task::Cnn, Input::Features { features, classes }) => {
                if features != cnn::PIXELS {
                    return Err(refuse("it reads 8×8 images (64 features)"));
                }
                Net::Cnn(cnn::Cnn::new(&varmap, vb, classes, width, seed)?)
            }
            (Task::Transformer, Input::Tokens { context, vocab }) => {
                Net::Transformer(transformer::Transformer::new(&varmap, vb, context, vocab, width, seed)?)
            }
            (Task::Transformer, Input::Features { .. }) => return Err(refuse("it reads token windows")),
            (Task::Mlp | Task::Cnn, Input::Tokens { .. }) => return Err(refuse("it reads rows of features")),
        };
        Ok(Self { varmap, net, taps: Taps::default() })
    }

    /// The host's slots, in the order of its forward.
    pub fn slots(&self) -> Vec<SlotSpec> {
        match &self.net {
            Net::Mlp(n) => n.slots(),
            Net::Cnn(n) => n.slots(),
            Net::Transformer(n) => n.slots(),
        }
    }

    /// Routes the slots through Kasmina (the grown run).
    pub fn attach(&mut self, slots: Vec<SeedSlot>) {
        self.taps.slots = slots;
    }

    /// Creates one of `kasmina`'s slots for each of the host's ([`Self::slots`]: name, width,
    /// layout) and routes the forward through them. On an error nothing is attached.
    pub fn attach_to(&mut self, kasmina: &kasmina_runtime::Kasmina) -> Result<()> {
        let slots: kasmina_runtime::Result<Vec<SeedSlot>> =
            self.slots().iter().map(|s| kasmina.slot_with_layout(s.name, s.width, s.layout)).collect();
        self.taps.slots = slots.map_err(HostError::Slot)?;
        Ok(())
    }

    /// Puts `kernel` in `slot` as part of the host (the static run).
    pub fn set_static(&mut self, slot: &str, kernel: SeedKernel) {
        self.taps.static_seed = Some((slot.to_owned(), kernel));
    }

    /// Whether Kasmina's slots are in the forward (the grown run).
    pub fn has_slots(&self) -> bool {
        !self.taps.slots.is_empty()
    }

    /// Parameters of the host (and of its static seed, when it has one).
    pub fn params(&self) -> usize {
        let host: usize = self.varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        host + self.taps.static_seed.as_ref().map_or(0, |(_, k)| k.param_count())
    }

    /// Logits `[rows, classes]` for a batch of inputs.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
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
        let vars = self.varmap.data().lock().map_err(|_| HostError::Poisoned)?;
        let var = vars.get(name).ok_or_else(|| HostError::NoVariable(name.to_owned()))?;
        var.set(&value)?;
        Ok(())
    }
}
