//! The checkpoint directory on disk: atomic commits, validated loads.
//!
//! ```text
//! ROOT/
//!   LATEST                      the name of the newest complete checkpoint (one line)
//!   ckpt-<step>-<nanos>/        one checkpoint: manifest.json and the files it lists
//!   .staging-<pid>-<nanos>/     a save in progress (or one a crash interrupted; swept later)
//! ```
//!
//! A save writes every file into a fresh staging directory, fsyncs each, writes the manifest
//! last, fsyncs the directory, renames it to `ckpt-<step>-<nanos>` and fsyncs the root, then replaces
//! `LATEST` the same way (temporary file, fsync, rename, fsync the root). A crash at any point
//! leaves `LATEST` naming the previous complete checkpoint; the older ones beyond
//! [`KEEP`] are removed only after `LATEST` moved.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use leyline::{CheckpointFile, CheckpointManifest};
use sha2::{Digest, Sha256};

use super::{CheckpointError, MANIFEST, SCHEMA_VERSION};

/// The pointer to the newest complete checkpoint.
pub(crate) const LATEST: &str = "LATEST";
/// Complete checkpoints kept (the newest and the one before it).
pub(crate) const KEEP: usize = 2;
const PREFIX: &str = "ckpt-";
const STAGING: &str = ".staging-";

/// Lower-case hex SHA-256 of `bytes` (how the manifest writes a file's hash).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_owned(), source }
}

/// Writes `bytes` to a new file at `path` and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut file = File::create(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Fsyncs a directory (its entries: a rename into it is durable after this).
fn sync_dir(path: &Path) -> Result<(), CheckpointError> {
    File::open(path).and_then(|d| d.sync_all()).map_err(io(path))
}

/// Commits `files` and the manifest (with every file's hash filled in) under `root` as the
/// checkpoint of `step`; returns its directory and the bytes written.
pub(crate) fn commit(
    root: &Path,
    step: u64,
    files: &BTreeMap<String, Vec<u8>>,
    mut manifest: CheckpointManifest,
) -> Result<(PathBuf, u64), CheckpointError> {
    fs::create_dir_all(root).map_err(io(root))?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let staging = root.join(format!("{STAGING}{}-{nanos}", std::process::id()));
    fs::create_dir(&staging).map_err(io(&staging))?;
    let mut total = 0u64;
    manifest.files.clear();
    for (name, bytes) in files {
        check_name(name)?;
        write_synced(&staging.join(name), bytes)?;
        total += bytes.len() as u64;
        manifest.files.push(CheckpointFile {
            name: name.clone(),
            sha256: sha256_hex(bytes),
            size_bytes: bytes.len() as u64,
        });
    }
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| CheckpointError::Manifest { path: staging.join(MANIFEST), reason: e.to_string() })?;
    write_synced(&staging.join(MANIFEST), &json)?;
    total += json.len() as u64;
    sync_dir(&staging)?;
    // Unique even for two saves of one step (a save repeated after a restore): a rename never
    // replaces the checkpoint LATEST names.
    let name = format!("{PREFIX}{step:020}-{nanos:032x}");
    let target = root.join(&name);
    fs::rename(&staging, &target).map_err(io(&target))?;
    sync_dir(root)?;
    point_latest(root, &name)?;
    prune(root, &name);
    Ok((target, total))
}

/// Replaces `LATEST` atomically and durably.
fn point_latest(root: &Path, name: &str) -> Result<(), CheckpointError> {
    let latest = root.join(LATEST);
    let tmp = root.join(format!("{LATEST}.tmp"));
    write_synced(&tmp, format!("{name}\n").as_bytes())?;
    fs::rename(&tmp, &latest).map_err(io(&latest))?;
    sync_dir(root)
}

/// Removes staging leftovers and every complete checkpoint but the newest [`KEEP`] (best
/// effort: a file that cannot be removed is left for the next save).
fn prune(root: &Path, newest: &str) {
    let Ok(entries) = fs::read_dir(root) else { return };
    let mut complete = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(STAGING) {
            let _ = fs::remove_dir_all(entry.path());
        } else if name.starts_with(PREFIX) && name.as_str() != newest {
            complete.push(name);
        }
    }
    complete.sort();
    let excess = (complete.len() + 1).saturating_sub(KEEP);
    for name in complete.iter().take(excess) {
        let _ = fs::remove_dir_all(root.join(name));
    }
}

/// A file name the checkpoint may hold: one plain component.
fn check_name(name: &str) -> Result<(), CheckpointError> {
    let plain = !name.is_empty()
        && name != MANIFEST
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if plain {
        Ok(())
    } else {
        Err(CheckpointError::Invalid { what: format!("file name `{name}`"), reason: "not a plain file name".into() })
    }
}

/// The directory `LATEST` names under `root`.
pub(crate) fn latest(root: &Path) -> Result<PathBuf, CheckpointError> {
    let pointer = root.join(LATEST);
    let name = match fs::read_to_string(&pointer) {
        Ok(s) => s.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CheckpointError::NoCheckpoint { dir: root.to_owned() });
        }
        Err(e) => return Err(CheckpointError::Io { path: pointer, source: e }),
    };
    if !name.starts_with(PREFIX) || check_name(&name).is_err() {
        return Err(CheckpointError::Invalid {
            what: pointer.display().to_string(),
            reason: format!("names `{name}`"),
        });
    }
    Ok(root.join(name))
}

/// Reads the manifest of the checkpoint in `dir` and every file it lists, checking the schema
/// version, each file's size and SHA-256, and that no listed file is missing.
pub(crate) fn load(dir: &Path) -> Result<(CheckpointManifest, BTreeMap<String, Vec<u8>>), CheckpointError> {
    let path = dir.join(MANIFEST);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CheckpointError::MissingFile { name: MANIFEST.into() });
        }
        Err(e) => return Err(CheckpointError::Io { path, source: e }),
    };
    // Check the version before the shape: a newer schema may not parse as this one.
    let raw: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| CheckpointError::Manifest { path: path.clone(), reason: e.to_string() })?;
    let version = raw.get("schemaVersion").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if version > u64::from(SCHEMA_VERSION) {
        return Err(CheckpointError::NewerSchema { found: version, supported: SCHEMA_VERSION });
    }
    if version == 0 {
        return Err(CheckpointError::Manifest { path, reason: "no schemaVersion".into() });
    }
    let manifest: CheckpointManifest = serde_json::from_value(raw)
        .map_err(|e| CheckpointError::Manifest { path: path.clone(), reason: e.to_string() })?;
    let mut files = BTreeMap::new();
    for f in &manifest.files {
        check_name(&f.name)?;
        let p = dir.join(&f.name);
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CheckpointError::MissingFile { name: f.name.clone() });
            }
            Err(e) => return Err(CheckpointError::Io { path: p, source: e }),
        };
        if bytes.len() as u64 != f.size_bytes {
            return Err(CheckpointError::Truncated {
                name: f.name.clone(),
                expected: f.size_bytes,
                found: bytes.len() as u64,
            });
        }
        let found = sha256_hex(&bytes);
        if found != f.sha256 {
            return Err(CheckpointError::HashMismatch { name: f.name.clone(), expected: f.sha256.clone(), found });
        }
        files.insert(f.name.clone(), bytes);
    }
    Ok((manifest, files))
}
