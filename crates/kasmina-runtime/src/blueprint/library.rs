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
/// Metadata key of the activation layout the kernel serves ([`Family`](super::Family)).
pub(crate) const META_FAMILY: &str = "kasmina.family";
/// Metadata key of an attention kernel's head count.
pub(crate) const META_HEADS: &str = "kasmina.heads";
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
/// `kasmina.kernel` names its architecture, `kasmina.width` its width, `kasmina.family` the
/// layout it serves — checked against the kind when present —, `kasmina.heads` an attention
/// kernel's head count and `kasmina.poison_after_steps` a broken kernel's budget).
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
        if let Some(family) = meta.get(META_FAMILY).filter(|f| f.as_str() != kind.family().as_str()) {
            return Err(invalid(format!(
                "`{META_FAMILY}` is `{family}` but a {} kernel is {}",
                kind_name,
                kind.family().as_str()
            )));
        }
        let number = |key: &str| -> Result<Option<u64>, FetchError> {
            meta.get(key).map(|v| v.parse::<u64>().map_err(|_| invalid(format!("bad `{key}`: {v}")))).transpose()
        };
        let width = number(META_WIDTH)?.ok_or_else(|| invalid(format!("metadata `{META_WIDTH}` missing")))?;
        let heads = number(META_HEADS)?;
        let tensors: BTreeMap<String, Tensor> = candle_core::safetensors::load_buffer(bytes, device)
            .map_err(|e| invalid(e.to_string()))?
            .into_iter()
            .collect();
        let artifact = KernelArtifact {
            blueprint_id: blueprint_id.to_owned(),
            width: usize::try_from(width).map_err(|_| invalid(format!("width {width} too large")))?,
            kind,
            tensors,
            poison_after_steps: number(META_POISON)?,
            heads: heads.map(|h| usize::try_from(h).unwrap_or(usize::MAX)),
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
        meta.insert(META_FAMILY.to_owned(), artifact.kind.family().as_str().to_owned());
        if let Some(h) = artifact.heads {
            meta.insert(META_HEADS.to_owned(), h.to_string());
        }
        if let Some(n) = artifact.poison_after_steps {
            meta.insert(META_POISON.to_owned(), n.to_string());
        }
        let tensors: Vec<(&str, &Tensor)> = artifact.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let invalid =
            |reason: String| crate::Error::InvalidArtifact { blueprint_id: artifact.blueprint_id.clone(), reason };
        let bytes = safetensors::serialize(tensors, Some(meta)).map_err(|e| invalid(e.to_string()))?;
        canonical_header(&bytes).map_err(invalid)
    }
}

/// Rewrites a safetensors file's JSON header with its keys sorted. `safetensors` writes the
/// metadata from a `HashMap` in a random order, so the same artefact would serialise to
/// different bytes; sorted, an artefact written twice is byte-identical. Tensor offsets are
/// explicit in the header, so reordering its entries leaves the data untouched.
fn canonical_header(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (len, rest) = bytes.split_first_chunk::<8>().ok_or("safetensors file shorter than its header length")?;
    let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|e| e.to_string())?;
    let (header, data) = rest.split_at_checked(len).ok_or("safetensors header longer than the file")?;
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("safetensors header: {e}"))?;
    if let Some(meta) = entries.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> = serde_json::from_value(meta.take()).map_err(|e| e.to_string())?;
        *meta = serde_json::to_value(sorted).map_err(|e| e.to_string())?;
    }
    let mut header = serde_json::to_vec(&entries).map_err(|e| e.to_string())?;
    // Padded with spaces to a multiple of 8, as `safetensors` does, so the data stays aligned.
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    Ok(out)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::blueprint::builtin;

    #[test]
    fn an_artefact_serialises_to_the_same_bytes_every_time() {
        let art = builtin::artifact(builtin::CAUSAL_ATTENTION, 8, 3, &Device::Cpu).unwrap();
        let first = BlueprintLibrary::serialize_artifact(&art).unwrap();
        for _ in 0..8 {
            assert_eq!(BlueprintLibrary::serialize_artifact(&art).unwrap(), first);
        }
        assert_eq!(u64::from_le_bytes(first[..8].try_into().unwrap()) % 8, 0);
        let back = BlueprintLibrary::parse_artifact(builtin::CAUSAL_ATTENTION, &first, &Device::Cpu).unwrap();
        assert_eq!((back.kind, back.width, back.heads), (art.kind, 8, Some(4)));
        assert!(canonical_header(&first[..4]).is_err());
    }
}
