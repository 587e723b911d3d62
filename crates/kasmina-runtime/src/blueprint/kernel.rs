//! Seed kernels: the small candle modules a blueprint describes, one instance per seed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor, Var};
use kasmina_isolation::Layout;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::spec::Spec;
use super::{dense, image, sequence};
use crate::error::{Error, Result};

/// The activation layout a kernel serves (artefact metadata `kasmina.family`). The names are
/// those of the slot layouts: `dense` `[batch, width]`, `sequence` `[batch, time, width]`
/// (features last), `image` `[batch, width, height, width_px]` (channels on axis 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Family {
    /// Any layout: the identity kernel, whose delta is `zeros_like(x)`.
    Any,
    /// Features on the last axis of an input of any rank ≥ 2: serves dense and sequence slots.
    Dense,
    /// `[batch, time, width]` only (attention mixes positions).
    Sequence,
    /// `[batch, width, height, width_px]` only.
    Image,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 4] = [Family::Any, Family::Dense, Family::Sequence, Family::Image];

    /// The metadata name of the family.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::Dense => "dense",
            Self::Sequence => "sequence",
            Self::Image => "image",
        }
    }

    /// Parses a metadata name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Whether a kernel of this family can run on a slot whose activation has `layout`.
    pub fn serves(self, layout: Layout) -> bool {
        match self {
            Self::Any => true,
            Self::Dense => matches!(layout, Layout::Dense | Layout::Sequence),
            Self::Sequence => layout == Layout::Sequence,
            Self::Image => layout == Layout::Image,
        }
    }

    /// The axis holding the width for an input of `rank`, or `None` when the family does not
    /// read inputs of that rank.
    fn feature_axis(self, rank: usize) -> Option<usize> {
        match self {
            Self::Any => None,
            Self::Dense => (rank >= 2).then(|| rank - 1),
            Self::Sequence => (rank == 3).then_some(2),
            Self::Image => (rank == 4).then_some(1),
        }
    }
}

/// The architecture of a kernel, read from its artefact's metadata (`kasmina.kernel`). Every
/// kernel's last layer starts at zero, so a fresh seed's delta is exactly zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelKind {
    /// No parameters: the delta is zero, so the seed reproduces its input (BP000, the fallback).
    Identity,
    /// `relu(x W1ᵀ + b1) W2ᵀ + b2` with `W2`, `b2` starting at zero (BP001).
    ResidualMlp,
    /// `(x A) B` with `B` starting at zero (BP002).
    LowRank,
    /// `x W + b` with `W`, `b` starting at zero (BP003).
    ZeroLinear,
    /// `x W + b + σ·ε` with fresh Gaussian noise `ε` (σ = [`NOISE_STD`]) at every call, from a
    /// seeded generator: a delta that hurts and that training cannot learn away (BP901).
    Noisy,
    /// Image: 3×3 conv → group norm → ReLU → 1×1 conv, the last starting at zero (BP100).
    ConvResidual,
    /// Image: depthwise 3×3 conv → ReLU → pointwise 1×1 conv starting at zero (BP101).
    DepthwiseSeparable,
    /// Image: squeeze-and-excitation gate `x ⊙ tanh(fc2(relu(fc1(pool(x)))))`, `fc2` starting
    /// at zero (BP102).
    SqueezeExcite,
    /// Image: 1×1 conv to a low rank and back, the second starting at zero (BP103).
    ConvLowRank,
    /// Sequence: layer norm → MLP with GELU, output layer starting at zero (BP200).
    PrenormMlp,
    /// Sequence: `(x A) B` over the last axis with `B` starting at zero (BP201).
    SequenceLowRank,
    /// Sequence: pre-norm causal multi-head self-attention, out projection starting at zero;
    /// the head count is artefact metadata `kasmina.heads` (BP202).
    CausalAttention,
}

/// Standard deviation of the noise a [`KernelKind::Noisy`] kernel adds.
pub const NOISE_STD: f64 = 1.0;

/// Causal masks a sequence kernel keeps, one per sequence length (oldest evicted first).
const MASK_CACHE_LEN: usize = 8;

impl KernelKind {
    /// Every kind.
    pub const ALL: [KernelKind; 12] = [
        Self::Identity,
        Self::ResidualMlp,
        Self::LowRank,
        Self::ZeroLinear,
        Self::Noisy,
        Self::ConvResidual,
        Self::DepthwiseSeparable,
        Self::SqueezeExcite,
        Self::ConvLowRank,
        Self::PrenormMlp,
        Self::SequenceLowRank,
        Self::CausalAttention,
    ];

    /// The metadata name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::ResidualMlp => "residual_mlp",
            Self::LowRank => "low_rank",
            Self::ZeroLinear => "zero_linear",
            Self::Noisy => "noisy",
            Self::ConvResidual => "conv_residual",
            Self::DepthwiseSeparable => "depthwise_separable",
            Self::SqueezeExcite => "squeeze_excite",
            Self::ConvLowRank => "conv_low_rank",
            Self::PrenormMlp => "prenorm_mlp",
            Self::SequenceLowRank => "sequence_low_rank",
            Self::CausalAttention => "causal_attention",
        }
    }

    /// Parses a metadata name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The activation layout the kind serves.
    pub fn family(self) -> Family {
        match self {
            Self::Identity => Family::Any,
            Self::ResidualMlp | Self::LowRank | Self::ZeroLinear | Self::Noisy => Family::Dense,
            Self::ConvResidual | Self::DepthwiseSeparable | Self::SqueezeExcite | Self::ConvLowRank => Family::Image,
            Self::PrenormMlp | Self::SequenceLowRank | Self::CausalAttention => Family::Sequence,
        }
    }

    /// The tensors an artefact of this kind must hold.
    pub(crate) fn tensor_names(self) -> Vec<&'static str> {
        self.specs(1, 1).into_iter().map(|s| s.name).collect()
    }

    /// Where the kind's free inner size (hidden units or rank) is read from an artefact: tensor
    /// and axis. Kinds whose every size follows from the width have none.
    fn inner_source(self) -> Option<(&'static str, usize)> {
        match self {
            Self::ResidualMlp => Some(("down.weight", 0)),
            Self::LowRank | Self::SequenceLowRank => Some(("a", 1)),
            Self::SqueezeExcite | Self::PrenormMlp => Some(("fc1.weight", 0)),
            Self::ConvLowRank => Some(("a", 0)),
            _ => None,
        }
    }

    /// The tensors of a kernel of `width` with `inner` hidden units or rank (ignored by the
    /// kinds without one), in the order the built-ins draw them.
    pub(super) fn specs(self, width: usize, inner: usize) -> Vec<Spec> {
        let (w, r) = (width, inner);
        match self {
            Self::Identity => Vec::new(),
            Self::ResidualMlp => dense::residual_mlp_specs(w, r),
            Self::LowRank | Self::SequenceLowRank => dense::low_rank_specs(w, r),
            Self::ZeroLinear | Self::Noisy => dense::linear_specs(w),
            Self::ConvResidual => image::conv_residual_specs(w),
            Self::DepthwiseSeparable => image::depthwise_separable_specs(w),
            Self::SqueezeExcite => image::squeeze_excite_specs(w, r),
            Self::ConvLowRank => image::conv_low_rank_specs(w, r),
            Self::PrenormMlp => sequence::prenorm_mlp_specs(w, r),
            Self::CausalAttention => sequence::causal_attention_specs(w),
        }
    }
}

/// A loaded kernel artefact: the weights a blueprint ships, shared read-only through the
/// kernel cache. Seeds never train these tensors: each seed gets its own copy ([`SeedKernel`]).
#[derive(Debug, Clone)]
pub struct KernelArtifact {
    /// The blueprint this artefact belongs to.
    pub blueprint_id: String,
    /// The activation width the kernel reads and writes: the last axis of a dense or sequence
    /// activation, the channel axis (1) of an image activation.
    pub width: usize,
    /// Its architecture.
    pub kind: KernelKind,
    /// Its tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// For deliberately broken kernels (BP900): the number of optimiser steps after which the
    /// kernel's output turns non-finite.
    pub poison_after_steps: Option<u64>,
    /// Attention heads of a [`KernelKind::CausalAttention`] kernel (metadata `kasmina.heads`;
    /// they must divide the width); `None` for every other kind.
    pub heads: Option<usize>,
    /// Live variables served by an in-process runtime, used as they are instead of copied (the
    /// prototype's way of handing out modules). The registry then refuses a seed whose variables
    /// belong to the host or to another seed; artefacts from files never set this.
    pub live_vars: Option<Vec<(String, Var)>>,
}

impl KernelArtifact {
    /// The identity artefact for a width (no tensors).
    pub fn identity(blueprint_id: &str, width: usize) -> Self {
        Self {
            blueprint_id: blueprint_id.to_owned(),
            width,
            kind: KernelKind::Identity,
            tensors: BTreeMap::new(),
            poison_after_steps: None,
            heads: None,
            live_vars: None,
        }
    }

    /// SHA-256 (hex) of what the artefact is: blueprint, width, kind, heads, poison budget and
    /// every tensor's name, shape, dtype and values (as f32, little-endian). A checkpoint keeps
    /// it and a restore refuses an artefact whose fingerprint changed. Live variables
    /// ([`live_vars`](Self::live_vars)) are not part of it: they are the trainer's, and train.
    pub fn fingerprint(&self) -> candle_core::Result<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let header = format!(
            "{}\n{}\n{}\n{:?}\n{:?}\n",
            self.blueprint_id,
            self.width,
            self.kind.as_str(),
            self.heads,
            self.poison_after_steps
        );
        h.update(header.as_bytes());
        for (name, t) in &self.tensors {
            h.update(format!("{name}\n{:?}\n{}\n", t.dims(), t.dtype().as_str()).as_bytes());
            for v in t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()? {
                h.update(v.to_le_bytes());
            }
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Bytes held by the artefact's tensors (what the kernel cache weighs).
    pub fn size_bytes(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum()
    }

    fn invalid(&self, reason: String) -> Error {
        Error::InvalidArtifact { blueprint_id: self.blueprint_id.clone(), reason }
    }

    /// Checks the tensors (names, dtype f32, shapes) and the head count against the kind and
    /// the width.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 && self.kind != KernelKind::Identity {
            return Err(self.invalid(format!("width 0 for a {} kernel", self.kind.as_str())));
        }
        let inner = self.inner_size()?;
        for spec in self.kind.specs(self.width, inner) {
            let name = spec.name;
            let t = self
                .tensors
                .get(name)
                .ok_or_else(|| self.invalid(format!("tensor `{name}` missing for a {} kernel", self.kind.as_str())))?;
            if t.dtype() != DType::F32 {
                return Err(self.invalid(format!("tensor `{name}` is {:?}, expected f32", t.dtype())));
            }
            if t.dims() != spec.shape.as_slice() {
                return Err(self.invalid(format!(
                    "tensor shapes do not fit a {} kernel of width {}: `{name}` is {:?}, expected {:?}",
                    self.kind.as_str(),
                    self.width,
                    t.dims(),
                    spec.shape
                )));
            }
        }
        self.validate_heads()
    }

    /// The hidden units or rank of a kind that has them, read from its tensors (0 when the
    /// tensor is missing, which the shape check then reports).
    fn inner_size(&self) -> Result<usize> {
        let Some((name, axis)) = self.kind.inner_source() else { return Ok(0) };
        match self.tensors.get(name).and_then(|t| t.dims().get(axis).copied()) {
            Some(0) => Err(self.invalid(format!("`{name}` of a {} kernel has size 0", self.kind.as_str()))),
            n => Ok(n.unwrap_or(0)),
        }
    }

    fn validate_heads(&self) -> Result<()> {
        match (self.kind, self.heads) {
            (KernelKind::CausalAttention, Some(h)) if h > 0 && self.width.is_multiple_of(h) => Ok(()),
            (KernelKind::CausalAttention, h) => {
                Err(self.invalid(format!("heads {h:?} do not divide the width {}", self.width)))
            }
            (_, None) => Ok(()),
            (kind, Some(h)) => Err(self.invalid(format!("heads {h} given for a {} kernel", kind.as_str()))),
        }
    }
}

/// One seed's own kernel: trainable `Var`s copied from an artefact (decisions D10).
#[derive(Debug)]
pub struct SeedKernel {
    blueprint_id: String,
    kind: KernelKind,
    width: usize,
    vars: Vec<(String, Var)>,
    poison_after_steps: Option<u64>,
    /// Attention heads (0 for kinds without attention).
    heads: usize,
    steps: AtomicU64,
    /// Causal masks by sequence length, built once per length ([`MASK_CACHE_LEN`] kept).
    masks: Mutex<Vec<Tensor>>,
    /// The noise generator of a [`KernelKind::Noisy`] kernel (seeded from the width, so runs
    /// repeat).
    noise: Option<Mutex<ChaCha12Rng>>,
}

impl SeedKernel {
    /// A fresh instance of `artifact` on `device`, with its own parameters.
    pub fn instantiate(artifact: &KernelArtifact, device: &Device) -> Result<Self> {
        artifact.validate()?;
        let mut vars = Vec::with_capacity(artifact.tensors.len());
        if let Some(live) = &artifact.live_vars {
            vars = live.clone();
        }
        for name in artifact.kind.tensor_names().iter().filter(|_| artifact.live_vars.is_none()) {
            if let Some(t) = artifact.tensors.get(*name) {
                // `to_device` + `copy` guarantees fresh storage even on the artefact's device.
                let owned = t.to_device(device)?.copy()?;
                vars.push(((*name).to_owned(), Var::from_tensor(&owned)?));
            }
        }
        Ok(Self {
            blueprint_id: artifact.blueprint_id.clone(),
            kind: artifact.kind,
            width: artifact.width,
            vars,
            poison_after_steps: artifact.poison_after_steps,
            heads: artifact.heads.unwrap_or(0),
            steps: AtomicU64::new(0),
            masks: Mutex::new(Vec::new()),
            noise: (artifact.kind == KernelKind::Noisy)
                .then(|| Mutex::new(ChaCha12Rng::seed_from_u64(0x9015_E000 ^ artifact.width as u64))),
        })
    }

    /// The blueprint the kernel was built from.
    pub fn blueprint_id(&self) -> &str {
        &self.blueprint_id
    }

    /// The kernel's architecture.
    pub fn kind(&self) -> KernelKind {
        self.kind
    }

    /// The width it reads and writes.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Its trainable variables with their names.
    pub fn named_vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Its trainable variables.
    pub fn vars(&self) -> Vec<Var> {
        self.vars.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Number of parameters.
    pub fn param_count(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Counts one optimiser step (a broken kernel turns non-finite after its budget).
    pub fn advance_step(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    /// Optimiser steps counted.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Sets the step count (a kernel rebuilt from a checkpoint).
    pub(crate) fn set_steps(&self, steps: u64) {
        self.steps.store(steps, Ordering::Relaxed);
    }

    /// Where a noisy kernel's generator is (ChaCha12 word position); `None` for other kinds.
    pub fn noise_position(&self) -> Option<u128> {
        self.noise.as_ref().map(|rng| rng.lock().get_word_pos())
    }

    /// Moves a noisy kernel's generator to `position` (a kernel rebuilt from a checkpoint).
    pub(crate) fn set_noise_position(&self, position: u128) {
        if let Some(rng) = &self.noise {
            rng.lock().set_word_pos(position);
        }
    }

    fn var(&self, name: &str) -> candle_core::Result<&Var> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| candle_core::Error::Msg(format!("kernel `{}`: tensor `{name}` missing", self.blueprint_id)))
    }

    /// The kernel's delta for an input of its family's layout ([`KernelKind::family`]): the
    /// width on the last axis for dense (any rank ≥ 2) and sequence (`[batch, time, width]`)
    /// kernels, on axis 1 for image kernels (`[batch, width, height, width_px]`); the identity
    /// takes any shape. The delta has the input's shape; the seed's output is `x + delta(x)`
    /// (seeds are residual, decisions D4; the residual add is `kasmina_isolation::seed_output`).
    /// An input of another layout is a [`candle_core::Error::UnexpectedShape`].
    pub fn delta(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.delta_with(x, false)
    }

    /// The kernel as a module whose parameters are constants: the same delta, to the bit, but a
    /// backward through it computes no gradient for the kernel's own variables — only for its
    /// input and what the input's graph reaches. The isolation probe runs it (decisions D24):
    /// what it asks is whether the seed's output reaches host variables, which the seed's weight
    /// gradients (a full-size tensor per weight) do not tell.
    pub fn frozen(&self) -> FrozenKernel<'_> {
        FrozenKernel(self)
    }

    fn delta_with(&self, x: &Tensor, frozen: bool) -> candle_core::Result<Tensor> {
        self.check_input(x)?;
        // Mixed precision: the parameters stay f32 (the master weights the seed's AdamW steps);
        // on a host of another float dtype (bf16, f16) they enter the graph cast to it, and the
        // cast's backward hands f32 gradients back to the master weights.
        let dtype = x.dtype();
        let p = |name: &str| {
            let t = self.var(name)?.as_tensor();
            let t = if frozen { t.detach() } else { t.clone() };
            if t.dtype() == dtype || !dtype.is_float() { Ok(t) } else { t.to_dtype(dtype) }
        };
        let delta = match self.kind {
            KernelKind::Identity => x.zeros_like()?,
            KernelKind::ResidualMlp => dense::residual_mlp(x, &p)?,
            KernelKind::LowRank | KernelKind::SequenceLowRank => dense::low_rank(x, &p)?,
            KernelKind::ZeroLinear => dense::linear(x, &p)?,
            KernelKind::Noisy => (dense::linear(x, &p)? + self.noise_like(x)?)?,
            KernelKind::ConvResidual => image::conv_residual(x, &p)?,
            KernelKind::DepthwiseSeparable => image::depthwise_separable(x, &p)?,
            KernelKind::SqueezeExcite => image::squeeze_excite(x, &p)?,
            KernelKind::ConvLowRank => image::conv_low_rank(x, &p)?,
            KernelKind::PrenormMlp => sequence::prenorm_mlp(x, &p)?,
            KernelKind::CausalAttention => sequence::causal_attention(x, &p, self.heads, &self.causal_mask(x)?)?,
        };
        match self.poison_after_steps {
            Some(n) if self.steps.load(Ordering::Relaxed) >= n => delta + f64::NAN,
            _ => Ok(delta),
        }
    }

    /// Refuses an input that is not of the kernel's layout and width.
    fn check_input(&self, x: &Tensor) -> candle_core::Result<()> {
        let family = self.kind.family();
        if family == Family::Any {
            return Ok(());
        }
        let dims = x.dims();
        let axis = family.feature_axis(dims.len());
        if axis.is_some_and(|a| dims.get(a) == Some(&self.width)) {
            return Ok(());
        }
        // The shape this kernel would take, keeping the input's other sizes where it has them.
        let rank = match family {
            Family::Sequence => 3,
            Family::Image => 4,
            _ => dims.len().max(2),
        };
        let axis = family.feature_axis(rank).unwrap_or(rank - 1);
        let expected: Vec<usize> =
            (0..rank).map(|i| if i == axis { self.width } else { dims.get(i).copied().unwrap_or(1) }).collect();
        Err(candle_core::Error::UnexpectedShape {
            msg: format!("kernel `{}` ({} layout, width {})", self.blueprint_id, family.as_str(), self.width),
            expected: expected.into(),
            got: x.shape().clone(),
        })
    }

    /// The causal mask for `x`'s sequence length, built once per length, dtype and device.
    fn causal_mask(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let t = x.dim(1)?;
        let mut masks = self.masks.lock();
        let fits = |m: &Tensor| m.dims() == [t, t] && m.dtype() == x.dtype() && m.device().same_device(x.device());
        if let Some(m) = masks.iter().find(|m| fits(m)) {
            return Ok(m.clone());
        }
        let mask = sequence::causal_mask(t, x.dtype(), x.device())?;
        if masks.len() >= MASK_CACHE_LEN {
            masks.remove(0);
        }
        masks.push(mask.clone());
        Ok(mask)
    }
}

impl SeedKernel {
    /// Gaussian noise (σ = [`NOISE_STD`]) shaped like `x`, from the kernel's own generator.
    fn noise_like(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let n = x.elem_count();
        let mut values = Vec::with_capacity(n);
        {
            let Some(rng) = self.noise.as_ref() else { return x.zeros_like() };
            let mut rng = rng.lock();
            while values.len() < n {
                // Box–Muller: two uniforms in (0, 1] give two independent normals.
                let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
                let r = (-2.0 * u1.ln()).sqrt() * NOISE_STD;
                let t = std::f64::consts::TAU * u2;
                values.push((r * t.cos()) as f32);
                values.push((r * t.sin()) as f32);
            }
        }
        values.truncate(n);
        Tensor::from_vec(values, x.shape(), x.device())?.to_dtype(x.dtype())
    }
}

/// A kernel is a candle module computing the seed's *delta*.
impl candle_core::Module for SeedKernel {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.delta(xs)
    }
}

/// A [`SeedKernel`] whose parameters enter the graph as constants ([`SeedKernel::frozen`]).
#[derive(Debug, Clone, Copy)]
pub struct FrozenKernel<'a>(&'a SeedKernel);

impl candle_core::Module for FrozenKernel<'_> {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.0.delta_with(xs, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_their_names_and_declare_distinct_tensors() {
        for kind in KernelKind::ALL {
            assert_eq!(KernelKind::parse(kind.as_str()), Some(kind));
            let names = kind.tensor_names();
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), names.len(), "{kind:?}");
            assert_eq!(kind.inner_source().is_some(), kind.specs(8, 3) != kind.specs(8, 5), "{kind:?}");
        }
    }

    #[test]
    fn families_serve_their_layouts() {
        use Layout::{Dense, Image, Sequence};
        assert!(Family::Any.serves(Image) && Family::Any.serves(Dense) && Family::Any.serves(Sequence));
        assert!(Family::Dense.serves(Dense) && Family::Dense.serves(Sequence) && !Family::Dense.serves(Image));
        assert!(
            Family::Sequence.serves(Sequence) && !Family::Sequence.serves(Dense) && !Family::Sequence.serves(Image)
        );
        assert!(Family::Image.serves(Image) && !Family::Image.serves(Dense) && !Family::Image.serves(Sequence));
        for f in Family::ALL {
            assert_eq!(Family::parse(f.as_str()), Some(f));
        }
    }
}
