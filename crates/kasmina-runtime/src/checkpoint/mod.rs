//! Checkpoints (decisions D13): Kasmina's whole state saved beside the trainer's, restored
//! exactly.
//!
//! [`Kasmina::save_checkpoint`] writes, atomically, a checkpoint directory under a root: the
//! seeds' tensors and optimiser moments in `kasmina.safetensors`, the trainer's own files (its
//! host weights, its optimiser — [`TrainerState`]), and `manifest.json`, a Leyline
//! [`CheckpointManifest`] in protobuf's canonical JSON with the SHA-256 of every file. The
//! schema is documented in `docs/checkpoint.md`.
//!
//! [`Checkpoint::load_latest`] reads the newest complete checkpoint and checks its schema
//! version, every file's size and hash; [`Kasmina::restore_checkpoint`] then checks it against
//! the running runtime (device, configuration, slot names, widths and layouts, blueprints and
//! their artefact hashes, every tensor's shape) and only then swaps the state in. Any failure
//! is a [`CheckpointError`] naming the problem, with the runtime untouched.
//!
//! Save between a step's `on_step` and the next forward (a safe point): what forwards observe
//! between safe points is not part of the state. Time-based quantities (embargo, breaker open
//! periods, nonces, pauses) resume with the time they had left; step-based ones by steps.

mod capture;
mod rebuild;
mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kasmina_telemetry::names;
use leyline::CheckpointManifest;

use crate::handle::Kasmina;

pub use store::sha256_hex;

/// The manifest schema this runtime writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The manifest's file name in a checkpoint directory.
pub const MANIFEST: &str = "manifest.json";
/// Kasmina's tensor file in a checkpoint directory.
pub const KASMINA_TENSORS: &str = "kasmina.safetensors";

/// Why a checkpoint could not be written, read or restored. A failed restore changes nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The root holds no complete checkpoint (no `LATEST`).
    #[error("no checkpoint in {dir}")]
    NoCheckpoint {
        /// The root.
        dir: PathBuf,
    },
    /// The manifest is not valid JSON or not a checkpoint manifest.
    #[error("invalid checkpoint manifest {path}: {reason}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint was written by a newer schema than this runtime reads.
    #[error("checkpoint schema version {found} is newer than this runtime reads ({supported})")]
    NewerSchema {
        /// The checkpoint's version.
        found: u64,
        /// The newest this runtime reads.
        supported: u32,
    },
    /// A file the manifest lists (or the manifest itself) is missing.
    #[error("checkpoint file `{name}` is missing")]
    MissingFile {
        /// The file.
        name: String,
    },
    /// A file is shorter or longer than the manifest says.
    #[error("checkpoint file `{name}` is {found} bytes, the manifest says {expected} (truncated?)")]
    Truncated {
        /// The file.
        name: String,
        /// Its size in the manifest.
        expected: u64,
        /// Its size on disk.
        found: u64,
    },
    /// A file's SHA-256 is not the manifest's.
    #[error("checkpoint file `{name}` is corrupt: SHA-256 {found}, the manifest says {expected}")]
    HashMismatch {
        /// The file.
        name: String,
        /// The manifest's hash.
        expected: String,
        /// The file's hash.
        found: String,
    },
    /// A tensor is missing, unreadable or of another shape than its variable.
    #[error("checkpoint tensor `{name}`: {reason}")]
    Tensor {
        /// The tensor's name in the file.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint's slots are not the runtime's.
    #[error("slot `{slot}`: {reason}")]
    SlotMismatch {
        /// The slot.
        slot: String,
        /// What differs.
        reason: String,
    },
    /// A seed's blueprint is unknown here, or its artefact is not the one it was built from.
    #[error("seed `{seed_id}`: blueprint `{blueprint_id}` {reason}")]
    Blueprint {
        /// The seed.
        seed_id: String,
        /// The blueprint serving it.
        blueprint_id: String,
        /// What is wrong (unknown, or artefact hash changed).
        reason: String,
    },
    /// The checkpoint was taken on another device.
    #[error("checkpoint taken on {saved}, the runtime runs on {running}")]
    Device {
        /// The checkpoint's device.
        saved: String,
        /// The runtime's.
        running: String,
    },
    /// A setting that shapes the lifecycle differs from the checkpoint's.
    #[error("configuration `{field}` is {running} here, {saved} in the checkpoint")]
    Config {
        /// The setting.
        field: String,
        /// The checkpoint's value.
        saved: String,
        /// The runtime's.
        running: String,
    },
    /// The runtime holds live seeds: a checkpoint is restored into a runtime without any.
    #[error("cannot restore into a runtime with a live seed (`{seed_id}` in slot `{slot}`)")]
    NotFresh {
        /// The slot.
        slot: String,
        /// Its seed.
        seed_id: String,
    },
    /// A value no runtime could have saved (an unknown stage, an inconsistent lifecycle...).
    #[error("invalid checkpoint {what}: {reason}")]
    Invalid {
        /// What.
        what: String,
        /// Why.
        reason: String,
    },
}

/// The ERROR event of a failed save or restore.
fn failed(dir: &Path, operation: &str, e: &CheckpointError) -> leyline::TelemetryEvent {
    names::CHECKPOINT_FAILED.event_with([
        ("dir", dir.display().to_string()),
        ("operation", operation.to_owned()),
        ("error", e.to_string()),
    ])
}

/// What the trainer saves with Kasmina's state: its own files (host weights and optimiser
/// state, typically safetensors) and metadata (its step, epoch, data position...).
#[derive(Debug, Clone, Default)]
pub struct TrainerState {
    files: BTreeMap<String, Vec<u8>>,
    meta: BTreeMap<String, String>,
}

impl TrainerState {
    /// Nothing of the trainer's.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file (a plain name: letters, digits, `.`, `_`, `-`; not `manifest.json` nor
    /// Kasmina's own [`KASMINA_TENSORS`]).
    pub fn file(mut self, name: impl Into<String>, bytes: Vec<u8>) -> Self {
        self.files.insert(name.into(), bytes);
        self
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.meta.insert(key.into(), value.to_string());
        self
    }
}

/// What a save wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedCheckpoint {
    /// The checkpoint's directory.
    pub dir: PathBuf,
    /// The runtime's step.
    pub step: u64,
    /// Bytes written (every file and the manifest).
    pub bytes: u64,
    /// How long the save took (capture, serialisation, writes, fsyncs).
    pub took: Duration,
}

/// A checkpoint read from disk, its schema, sizes and hashes checked: what
/// [`Kasmina::restore_checkpoint`] takes, and where the trainer finds its files.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    manifest: CheckpointManifest,
    files: BTreeMap<String, Vec<u8>>,
}

impl Checkpoint {
    /// The newest complete checkpoint under `root` (what `LATEST` names).
    pub fn load_latest(root: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        Self::load(store::latest(root.as_ref())?)
    }

    /// The checkpoint in `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let dir = dir.as_ref().to_owned();
        let (manifest, files) = store::load(&dir)?;
        Ok(Self { dir, manifest, files })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &CheckpointManifest {
        &self.manifest
    }

    /// The runtime's step when it was saved.
    pub fn step(&self) -> u64 {
        self.manifest.kasmina.as_ref().map_or(0, |k| k.step)
    }

    /// A file of the checkpoint (the trainer's, or Kasmina's).
    pub fn file(&self, name: &str) -> Result<&[u8], CheckpointError> {
        self.files.get(name).map(Vec::as_slice).ok_or_else(|| CheckpointError::MissingFile { name: name.to_owned() })
    }

    /// The trainer's metadata entry `key`.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.manifest.trainer.get(key).map(String::as_str)
    }
}

impl Kasmina {
    /// Saves the runtime's whole state and `trainer`'s files under `root`, atomically (see
    /// the module documentation); the previous checkpoint stays until this one is complete.
    /// Call it at a safe point (after `on_step`, before the next forward).
    pub fn save_checkpoint(
        &self,
        root: impl AsRef<Path>,
        trainer: TrainerState,
    ) -> Result<SavedCheckpoint, CheckpointError> {
        let root = root.as_ref();
        let result = self.save_inner(root, trainer);
        let event = match &result {
            Ok(s) => names::CHECKPOINT_SAVED.event_with([
                ("dir", s.dir.display().to_string()),
                ("step", s.step.to_string()),
                ("bytes", s.bytes.to_string()),
                ("took_ms", format!("{:.3}", s.took.as_secs_f64() * 1e3)),
            ]),
            Err(e) => failed(root, "save", e),
        };
        self.inner.publish(vec![event], false);
        result
    }

    fn save_inner(&self, root: &Path, trainer: TrainerState) -> Result<SavedCheckpoint, CheckpointError> {
        let started = std::time::Instant::now();
        if trainer.files.contains_key(KASMINA_TENSORS) {
            return Err(CheckpointError::Invalid {
                what: format!("trainer file `{KASMINA_TENSORS}`"),
                reason: "the name is Kasmina's own".into(),
            });
        }
        let (state, tensors) = self.inner.capture()?;
        let step = state.step;
        let mut files = trainer.files;
        files.insert(KASMINA_TENSORS.to_owned(), tensors);
        let manifest = CheckpointManifest {
            schema_version: SCHEMA_VERSION,
            created_at: Some(capture::timestamp(self.inner.wall.now())),
            producer: format!("kasmina-runtime {}", env!("CARGO_PKG_VERSION")),
            files: Vec::new(),
            kasmina: Some(state),
            trainer: trainer.meta.into_iter().collect(),
        };
        let (dir, bytes) = store::commit(root, step, &files, manifest)?;
        Ok(SavedCheckpoint { dir, step, bytes, took: started.elapsed() })
    }

    /// Restores the state of `checkpoint` (validated first against this runtime; on any error
    /// nothing changes). The runtime must have the checkpoint's slots (same names, widths and
    /// layouts) and no live seed.
    pub fn restore_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let result = self.restore_inner(checkpoint);
        let event = match &result {
            Ok(()) => names::CHECKPOINT_RESTORED
                .event_with([("dir", checkpoint.dir.display().to_string()), ("step", checkpoint.step().to_string())]),
            Err(e) => failed(&checkpoint.dir, "restore", e),
        };
        self.inner.publish(vec![event], false);
        result
    }

    fn restore_inner(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let state = checkpoint.manifest.kasmina.as_ref().ok_or_else(|| CheckpointError::Manifest {
            path: checkpoint.dir.join(MANIFEST),
            reason: "no Kasmina state".into(),
        })?;
        let tensors = checkpoint.file(KASMINA_TENSORS)?;
        let plan = self.inner.plan_restore(state, tensors)?;
        self.inner.apply_restore(plan)
    }
}
