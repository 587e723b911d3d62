//! Blueprints: descriptors (`leyline::BlueprintDescriptor`) and kernel artefacts.
//!
//! A [`BlueprintRuntime`] answers "what is blueprint X" and "give me its kernel for width W".
//! The embedded default is [`BlueprintLibrary`], a directory of descriptor files (protobuf
//! canonical JSON) and safetensors artefacts; Esper's Urza plays the same role remotely.
//! [`builtin`] writes the fixed built-in set to such a directory, so demos and tests need no
//! download: dense kernels (`BP000`–`BP004`, `BP900`, `BP901`; they also serve sequence slots),
//! image kernels (`BP100`–`BP103`) and sequence kernels (`BP200`–`BP202`); [`Family`] says which
//! activation layout a kernel serves.

pub mod builtin;
mod dense;
mod image;
mod kernel;
mod library;
mod sequence;
mod spec;

pub use kernel::{Family, FrozenKernel, KernelArtifact, KernelKind, NOISE_STD, SeedKernel};
pub use library::{BlueprintLibrary, FetchError};

use candle_core::Device;
use leyline::BlueprintDescriptor;

/// A source of blueprints and their kernels. Implementations must be cheap to query for
/// descriptors; `fetch` may be slow (disk, network) — the runtime times it, caches its result
/// and protects it with a circuit breaker.
pub trait BlueprintRuntime: Send + Sync + std::fmt::Debug {
    /// The descriptor of `blueprint_id`, if the source knows it.
    fn descriptor(&self, blueprint_id: &str) -> Option<BlueprintDescriptor>;

    /// Every descriptor the source knows, sorted by id.
    fn descriptors(&self) -> Vec<BlueprintDescriptor>;

    /// Loads the kernel artefact of `blueprint_id` for activations of `width`, on `device`.
    fn fetch(&self, blueprint_id: &str, width: usize, device: &Device) -> Result<KernelArtifact, FetchError>;
}

impl<T: BlueprintRuntime + ?Sized> BlueprintRuntime for std::sync::Arc<T> {
    fn descriptor(&self, blueprint_id: &str) -> Option<BlueprintDescriptor> {
        (**self).descriptor(blueprint_id)
    }
    fn descriptors(&self) -> Vec<BlueprintDescriptor> {
        (**self).descriptors()
    }
    fn fetch(&self, blueprint_id: &str, width: usize, device: &Device) -> Result<KernelArtifact, FetchError> {
        (**self).fetch(blueprint_id, width, device)
    }
}
