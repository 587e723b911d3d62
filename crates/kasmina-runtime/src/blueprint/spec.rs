//! Tensor specifications: the name, shape and starting fill of every tensor a kernel holds.
//!
//! One table per kernel kind serves three purposes: [`KernelArtifact::validate`] compares an
//! artefact's shapes with it, [`builtin`](super::builtin) draws the built-in weights from it, and
//! the parameter count is the sum of its shapes.
//!
//! [`KernelArtifact::validate`]: super::KernelArtifact::validate

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use rand::rngs::StdRng;

use crate::error::Result;

/// A kernel's tensors by name, as its forward reads them (a seed's own variables).
pub(super) type Params<'a> = dyn Fn(&str) -> candle_core::Result<Tensor> + 'a;

/// How a built-in artefact fills a tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Fill {
    /// Uniform in `(-bound, bound)` from the artefact's seeded generator.
    Uniform(f32),
    /// Zero: every last layer, so a fresh seed's delta is exactly zero.
    Zeros,
    /// One: the scale of a normalisation.
    Ones,
}

/// One tensor of a kernel.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Spec {
    /// Its name in the artefact.
    pub(super) name: &'static str,
    /// Its shape.
    pub(super) shape: Vec<usize>,
    /// Its fill in a built-in artefact.
    pub(super) fill: Fill,
}

/// A tensor specification.
pub(super) fn spec(name: &'static str, shape: &[usize], fill: Fill) -> Spec {
    Spec { name, shape: shape.to_vec(), fill }
}

/// The uniform fill of a layer reading `fan_in` inputs: bound `1/√fan_in` (PyTorch's default).
pub(super) fn fan_in(fan_in: usize) -> Fill {
    Fill::Uniform((1.0 / fan_in.max(1) as f32).sqrt())
}

/// Number of parameters the tensors hold.
pub(super) fn param_count(specs: &[Spec]) -> usize {
    specs.iter().map(|s| s.shape.iter().product::<usize>()).sum()
}

/// Draws the tensors in table order; only uniform fills consume the generator, so adding a
/// zero or one tensor to a table leaves the other tensors' values unchanged.
pub(super) fn draw(specs: &[Spec], rng: &mut StdRng, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let mut tensors = BTreeMap::new();
    for s in specs {
        let n: usize = s.shape.iter().product();
        let t = match s.fill {
            Fill::Uniform(bound) if bound > 0.0 => {
                let data: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
                Tensor::from_vec(data, s.shape.as_slice(), device)?
            }
            Fill::Uniform(_) | Fill::Zeros => Tensor::zeros(s.shape.as_slice(), DType::F32, device)?,
            Fill::Ones => Tensor::ones(s.shape.as_slice(), DType::F32, device)?,
        };
        tensors.insert(s.name.to_owned(), t);
    }
    Ok(tensors)
}
