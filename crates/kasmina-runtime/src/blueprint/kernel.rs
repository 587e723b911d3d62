//! Seed kernels: the small candle modules a blueprint describes, one instance per seed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor, Var};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// The architecture of a kernel, read from its artefact's metadata (`kasmina.kernel`).
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
}

/// Standard deviation of the noise a [`KernelKind::Noisy`] kernel adds.
pub const NOISE_STD: f64 = 1.0;

impl KernelKind {
    /// The metadata name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::ResidualMlp => "residual_mlp",
            Self::LowRank => "low_rank",
            Self::ZeroLinear => "zero_linear",
            Self::Noisy => "noisy",
        }
    }

    /// Parses a metadata name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Identity, Self::ResidualMlp, Self::LowRank, Self::ZeroLinear, Self::Noisy]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// The tensors an artefact of this kind must hold.
    pub(crate) fn tensor_names(self) -> &'static [&'static str] {
        match self {
            Self::Identity => &[],
            Self::ResidualMlp => &["down.weight", "down.bias", "up.weight", "up.bias"],
            Self::LowRank => &["a", "b"],
            Self::ZeroLinear | Self::Noisy => &["weight", "bias"],
        }
    }
}

/// A loaded kernel artefact: the weights a blueprint ships, shared read-only through the
/// kernel cache. Seeds never train these tensors: each seed gets its own copy ([`SeedKernel`]).
#[derive(Debug, Clone)]
pub struct KernelArtifact {
    /// The blueprint this artefact belongs to.
    pub blueprint_id: String,
    /// The activation width the kernel reads and writes.
    pub width: usize,
    /// Its architecture.
    pub kind: KernelKind,
    /// Its tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// For deliberately broken kernels (BP900): the number of optimiser steps after which the
    /// kernel's output turns non-finite.
    pub poison_after_steps: Option<u64>,
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
            live_vars: None,
        }
    }

    /// Bytes held by the artefact's tensors (what the kernel cache weighs).
    pub fn size_bytes(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum()
    }

    /// Checks the tensors against the kind and the width.
    pub fn validate(&self) -> Result<()> {
        for name in self.kind.tensor_names() {
            let t = self.tensors.get(*name).ok_or_else(|| Error::InvalidArtifact {
                blueprint_id: self.blueprint_id.clone(),
                reason: format!("tensor `{name}` missing for a {} kernel", self.kind.as_str()),
            })?;
            if t.dtype() != DType::F32 {
                return Err(Error::InvalidArtifact {
                    blueprint_id: self.blueprint_id.clone(),
                    reason: format!("tensor `{name}` is {:?}, expected f32", t.dtype()),
                });
            }
        }
        let w = self.width;
        let dims = |n: &str| self.tensors.get(n).map(|t| t.dims().to_vec()).unwrap_or_default();
        let ok = match self.kind {
            KernelKind::Identity => true,
            KernelKind::ResidualMlp => {
                let h = dims("down.weight").first().copied().unwrap_or(0);
                dims("down.weight") == [h, w]
                    && dims("down.bias") == [h]
                    && dims("up.weight") == [w, h]
                    && dims("up.bias") == [w]
            }
            KernelKind::LowRank => {
                let r = dims("a").get(1).copied().unwrap_or(0);
                dims("a") == [w, r] && dims("b") == [r, w]
            }
            KernelKind::ZeroLinear | KernelKind::Noisy => dims("weight") == [w, w] && dims("bias") == [w],
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArtifact {
                blueprint_id: self.blueprint_id.clone(),
                reason: format!("tensor shapes do not fit a {} kernel of width {w}", self.kind.as_str()),
            })
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
    steps: AtomicU64,
    /// The noise generator of a [`KernelKind::Noisy`] kernel (seeded from the width, so runs
    /// repeat).
    noise: Option<Mutex<StdRng>>,
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
            steps: AtomicU64::new(0),
            noise: (artifact.kind == KernelKind::Noisy)
                .then(|| Mutex::new(StdRng::seed_from_u64(0x9015_E000 ^ artifact.width as u64))),
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

    fn var(&self, name: &str) -> candle_core::Result<&Var> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| candle_core::Error::Msg(format!("kernel `{}`: tensor `{name}` missing", self.blueprint_id)))
    }

    /// The kernel's delta for an input of shape `[batch, width]`; the seed's output is
    /// `x + delta(x)` (seeds are residual, decisions D4; the residual add is
    /// `kasmina_isolation::seed_output`).
    pub fn delta(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let delta = match self.kind {
            KernelKind::Identity => x.zeros_like()?,
            KernelKind::ResidualMlp => {
                let h = x.matmul(&self.var("down.weight")?.t()?)?.broadcast_add(self.var("down.bias")?)?.relu()?;
                h.matmul(&self.var("up.weight")?.t()?)?.broadcast_add(self.var("up.bias")?)?
            }
            KernelKind::LowRank => x.matmul(self.var("a")?)?.matmul(self.var("b")?)?,
            KernelKind::ZeroLinear => x.matmul(self.var("weight")?)?.broadcast_add(self.var("bias")?)?,
            KernelKind::Noisy => {
                let linear = x.matmul(self.var("weight")?)?.broadcast_add(self.var("bias")?)?;
                (linear + self.noise_like(x)?)?
            }
        };
        match self.poison_after_steps {
            Some(n) if self.steps.load(Ordering::Relaxed) >= n => delta + f64::NAN,
            _ => Ok(delta),
        }
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
