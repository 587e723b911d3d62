//! The on-disk blueprint library.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use leyline::BlueprintDescriptor;

use super::{BlueprintRuntime, KernelArtifact, KernelKind};

/// Metadata key naming the kernel architecture in a safetensors artefact.
pub(crate) const META_KERNEL: &str = "kasmina.kernel";
/// Metadata key of the activation width.
pub(crate) const META_WIDTH: &str = "kasmina.width";
/// Metadata key of a broken kernel's step budget.
pub(crate) const META_POISON: &str = "kasmina.poison_after_steps";

/// Why a kernel could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The blueprint id is not in the library.
    #[error("unknown blueprint `{0}`")]
    UnknownBlueprint(String),
    /// The blueprint exists but has no artefact for this width.
    #[error("blueprint `{blueprint_id}` has no kernel for width {width}")]
    WidthUnavailable {
        /// Blueprint id.
        blueprint_id: String,
        /// Requested width.
        width: usize,
    },
    /// Reading the artefact failed.
    #[error("reading {path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The artefact is not a valid kernel.
    #[error("invalid kernel artefact for `{blueprint_id}`: {reason}")]
    Invalid {
        /// Blueprint id.
        blueprint_id: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other failure of a custom source (network, injected faults in tests).
    #[error("kernel fetch failed: {0}")]
    Other(String),
}

/// A directory of blueprints: `<ID>.json` (a `BlueprintDescriptor` in protobuf's canonical JSON
/// mapping) and `<ID>.w<WIDTH>.safetensors` (the kernel for one activation width; metadata
/// `kasmina.kernel` names its architecture).
#[derive(Debug, Clone)]
pub struct BlueprintLibrary {
    dir: PathBuf,
    descriptors: BTreeMap<String, BlueprintDescriptor>,
}

impl BlueprintLibrary {
    /// Opens a library directory and reads every descriptor in it.
    pub fn open(dir: impl AsRef<Path>) -> crate::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let entries = std::fs::read_dir(&dir).map_err(|source| crate::Error::Io { path: dir.clone(), source })?;
        let mut descriptors = BTreeMap::new();
        for entry in entries {
            let path = entry.map_err(|source| crate::Error::Io { path: dir.clone(), source })?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text =
                std::fs::read_to_string(&path).map_err(|source| crate::Error::Io { path: path.clone(), source })?;
            let d: BlueprintDescriptor = serde_json::from_str(&text)
                .map_err(|e| crate::Error::InvalidDescriptor { path: path.clone(), reason: e.to_string() })?;
            if d.blueprint_id.trim().is_empty() {
                return Err(crate::Error::InvalidDescriptor { path, reason: "empty blueprint_id".into() });
            }
            descriptors.insert(d.blueprint_id.clone(), d);
        }
        Ok(Self { dir, descriptors })
    }

    /// The library's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the artefact of `blueprint_id` for `width`.
    pub fn artifact_path(dir: &Path, blueprint_id: &str, width: usize) -> PathBuf {
        dir.join(format!("{blueprint_id}.w{width}.safetensors"))
    }

    /// Parses a safetensors artefact.
    pub fn parse_artifact(blueprint_id: &str, bytes: &[u8], device: &Device) -> Result<KernelArtifact, FetchError> {
        let invalid = |reason: String| FetchError::Invalid { blueprint_id: blueprint_id.to_owned(), reason };
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| invalid(e.to_string()))?;
        let meta: HashMap<String, String> = meta.metadata().clone().unwrap_or_default();
        let kind_name = meta.get(META_KERNEL).ok_or_else(|| invalid(format!("metadata `{META_KERNEL}` missing")))?;
        let kind = KernelKind::parse(kind_name).ok_or_else(|| invalid(format!("unknown kernel kind `{kind_name}`")))?;
        let width = meta
            .get(META_WIDTH)
            .and_then(|w| w.parse::<usize>().ok())
            .ok_or_else(|| invalid(format!("metadata `{META_WIDTH}` missing or not a number")))?;
        let poison_after_steps = match meta.get(META_POISON) {
            Some(v) => Some(v.parse::<u64>().map_err(|_| invalid(format!("bad `{META_POISON}`: {v}")))?),
            None => None,
        };
        let tensors: BTreeMap<String, Tensor> = candle_core::safetensors::load_buffer(bytes, device)
            .map_err(|e| invalid(e.to_string()))?
            .into_iter()
            .collect();
        let artifact = KernelArtifact {
            blueprint_id: blueprint_id.to_owned(),
            width,
            kind,
            tensors,
            poison_after_steps,
            live_vars: None,
        };
        artifact.validate().map_err(|e| invalid(e.to_string()))?;
        Ok(artifact)
    }

    /// Serialises an artefact to safetensors bytes with its metadata.
    pub fn serialize_artifact(artifact: &KernelArtifact) -> crate::Result<Vec<u8>> {
        let mut meta = HashMap::new();
        meta.insert(META_KERNEL.to_owned(), artifact.kind.as_str().to_owned());
        meta.insert(META_WIDTH.to_owned(), artifact.width.to_string());
        if let Some(n) = artifact.poison_after_steps {
            meta.insert(META_POISON.to_owned(), n.to_string());
        }
        let tensors: Vec<(&str, &Tensor)> = artifact.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        safetensors::serialize(tensors, Some(meta)).map_err(|e| crate::Error::InvalidArtifact {
            blueprint_id: artifact.blueprint_id.clone(),
            reason: e.to_string(),
        })
    }
}

impl BlueprintRuntime for BlueprintLibrary {
    fn descriptor(&self, blueprint_id: &str) -> Option<BlueprintDescriptor> {
        self.descriptors.get(blueprint_id).cloned()
    }

    fn descriptors(&self) -> Vec<BlueprintDescriptor> {
        self.descriptors.values().cloned().collect()
    }

    fn fetch(&self, blueprint_id: &str, width: usize, device: &Device) -> Result<KernelArtifact, FetchError> {
        if !self.descriptors.contains_key(blueprint_id) {
            return Err(FetchError::UnknownBlueprint(blueprint_id.to_owned()));
        }
        let path = Self::artifact_path(&self.dir, blueprint_id, width);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FetchError::WidthUnavailable { blueprint_id: blueprint_id.to_owned(), width });
            }
            Err(source) => return Err(FetchError::Io { path, source }),
        };
        let artifact = Self::parse_artifact(blueprint_id, &bytes, device)?;
        if artifact.width != width {
            return Err(FetchError::Invalid {
                blueprint_id: blueprint_id.to_owned(),
                reason: format!("artefact width {} at the path for width {width}", artifact.width),
            });
        }
        Ok(artifact)
    }
}
