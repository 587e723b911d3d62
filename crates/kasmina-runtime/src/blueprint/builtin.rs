//! The built-in blueprints, with fixed ids that clients use.
//!
//! | id | kernel | notes |
//! |---|---|---|
//! | `BP000` | identity | no parameters; the last-resort fallback |
//! | `BP001` | residual MLP adapter (hidden = width/2, ≥ 4) | output layer starts at zero; the default fallback |
//! | `BP002` | low-rank adapter (rank = width/8, ≥ 2) | `B` starts at zero |
//! | `BP003` | zero-initialised linear | |
//! | `BP004` | wide residual MLP adapter (hidden = 4·width) | output layer starts at zero; adds real capacity |
//! | `BP900` | residual MLP that turns non-finite after 3 steps | deliberately broken, for demos and failure tests |
//! | `BP901` | linear delta plus fresh Gaussian noise (σ 2) at every call | deliberately harmful: training cannot learn it away (no-trace tests) |
//!
//! Weights come from a seeded RNG, so a library written twice with the same seed is
//! byte-identical.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use leyline::{BlueprintDescriptor, BlueprintParameterBounds, BlueprintTier};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{BlueprintLibrary, KernelArtifact, KernelKind};
use crate::error::{Error, Result};

/// Identity: no parameters.
pub const IDENTITY: &str = "BP000";
/// Residual MLP adapter.
pub const RESIDUAL_MLP: &str = "BP001";
/// Low-rank adapter.
pub const LOW_RANK: &str = "BP002";
/// Zero-initialised linear.
pub const ZERO_LINEAR: &str = "BP003";
/// Wide residual MLP adapter (hidden = 4 × width).
pub const WIDE_MLP: &str = "BP004";
/// Deliberately broken kernel (output non-finite after a few steps).
pub const BROKEN: &str = "BP900";
/// Deliberately harmful kernel (a linear delta plus fresh Gaussian noise at every call).
pub const NOISY: &str = "BP901";
/// Every built-in id.
pub const ALL: &[&str] = &[IDENTITY, RESIDUAL_MLP, LOW_RANK, ZERO_LINEAR, BROKEN, NOISY, WIDE_MLP];
/// Optimiser steps after which `BP900` turns non-finite.
pub const BROKEN_AFTER_STEPS: u64 = 3;

fn bounds(pairs: &[(&str, f64, f64)]) -> BTreeMap<String, BlueprintParameterBounds> {
    pairs
        .iter()
        .map(|(k, lo, hi)| ((*k).to_owned(), BlueprintParameterBounds { min_value: *lo, max_value: *hi }))
        .collect()
}

/// The descriptors of the built-in set.
pub fn descriptors() -> Vec<BlueprintDescriptor> {
    let common = [("alpha", 0.0, 1.0), ("lr", 1e-6, 1.0), ("weight_decay", 0.0, 1.0)];
    let d = |id: &str, name: &str, tier: BlueprintTier, risk: f32, description: &str| BlueprintDescriptor {
        blueprint_id: id.to_owned(),
        name: name.to_owned(),
        tier: tier as i32,
        allowed_parameters: bounds(&common),
        risk,
        stage: 1,
        quarantine_only: false,
        approval_required: false,
        description: description.to_owned(),
    };
    let mut broken = d(
        BROKEN,
        "broken-residual-mlp",
        BlueprintTier::HighRisk,
        0.95,
        "deliberately broken: its output turns non-finite after a few steps (failure-path demos and tests)",
    );
    broken.quarantine_only = true;
    let mut noisy = d(
        NOISY,
        "noisy-linear",
        BlueprintTier::HighRisk,
        0.9,
        "deliberately harmful: adds fresh Gaussian noise at every call, which training cannot learn away (no-trace tests)",
    );
    noisy.quarantine_only = true;
    vec![
        d(IDENTITY, "identity", BlueprintTier::Safe, 0.0, "identity kernel, no parameters (last-resort fallback)"),
        d(RESIDUAL_MLP, "residual-mlp", BlueprintTier::Safe, 0.1, "residual MLP adapter; output layer starts at zero"),
        d(LOW_RANK, "low-rank", BlueprintTier::Safe, 0.1, "low-rank adapter x·A·B; B starts at zero"),
        d(ZERO_LINEAR, "zero-linear", BlueprintTier::Experimental, 0.2, "zero-initialised linear delta"),
        d(
            WIDE_MLP,
            "wide-residual-mlp",
            BlueprintTier::Safe,
            0.15,
            "wide residual MLP adapter (hidden 4x width); output layer starts at zero",
        ),
        broken,
        noisy,
    ]
}

fn uniform(rng: &mut StdRng, rows: usize, cols: usize, bound: f32, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-bound..bound)).collect();
    Ok(Tensor::from_vec(data, (rows, cols), device)?)
}

/// The built-in artefact of `blueprint_id` for `width`, with weights drawn from `seed`.
pub fn artifact(blueprint_id: &str, width: usize, seed: u64, device: &Device) -> Result<KernelArtifact> {
    if width == 0 {
        return Err(Error::InvalidArtifact { blueprint_id: blueprint_id.to_owned(), reason: "width 0".into() });
    }
    let salt = ALL.iter().position(|id| *id == blueprint_id).unwrap_or(ALL.len()) as u64;
    let mut rng = StdRng::seed_from_u64(seed ^ (salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ width as u64);
    let mut tensors = BTreeMap::new();
    let (kind, poison) = match blueprint_id {
        IDENTITY => (KernelKind::Identity, None),
        RESIDUAL_MLP | BROKEN | WIDE_MLP => {
            let hidden = if blueprint_id == WIDE_MLP { 4 * width } else { (width / 2).max(4) };
            let bound = (1.0 / width as f32).sqrt();
            tensors.insert("down.weight".to_owned(), uniform(&mut rng, hidden, width, bound, device)?);
            tensors.insert("down.bias".to_owned(), Tensor::zeros(hidden, candle_core::DType::F32, device)?);
            tensors.insert("up.weight".to_owned(), Tensor::zeros((width, hidden), candle_core::DType::F32, device)?);
            tensors.insert("up.bias".to_owned(), Tensor::zeros(width, candle_core::DType::F32, device)?);
            (KernelKind::ResidualMlp, (blueprint_id == BROKEN).then_some(BROKEN_AFTER_STEPS))
        }
        LOW_RANK => {
            let rank = (width / 8).max(2);
            let bound = (1.0 / width as f32).sqrt();
            tensors.insert("a".to_owned(), uniform(&mut rng, width, rank, bound, device)?);
            tensors.insert("b".to_owned(), Tensor::zeros((rank, width), candle_core::DType::F32, device)?);
            (KernelKind::LowRank, None)
        }
        NOISY => {
            tensors.insert("weight".to_owned(), Tensor::zeros((width, width), candle_core::DType::F32, device)?);
            tensors.insert("bias".to_owned(), Tensor::zeros(width, candle_core::DType::F32, device)?);
            (KernelKind::Noisy, None)
        }
        ZERO_LINEAR => {
            tensors.insert("weight".to_owned(), Tensor::zeros((width, width), candle_core::DType::F32, device)?);
            tensors.insert("bias".to_owned(), Tensor::zeros(width, candle_core::DType::F32, device)?);
            (KernelKind::ZeroLinear, None)
        }
        other => return Err(Error::UnknownBlueprint(other.to_owned())),
    };
    Ok(KernelArtifact {
        blueprint_id: blueprint_id.to_owned(),
        width,
        kind,
        tensors,
        poison_after_steps: poison,
        live_vars: None,
    })
}

/// Writes the built-in library for the given activation widths to `dir` (created if needed)
/// and opens it.
pub fn write_library(dir: impl AsRef<Path>, widths: &[usize], seed: u64) -> Result<BlueprintLibrary> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    for d in descriptors() {
        let path = dir.join(format!("{}.json", d.blueprint_id));
        let json = serde_json::to_string_pretty(&d)
            .map_err(|e| Error::InvalidDescriptor { path: path.clone(), reason: e.to_string() })?;
        std::fs::write(&path, json + "\n").map_err(|source| Error::Io { path, source })?;
        for &w in widths {
            let art = artifact(&d.blueprint_id, w, seed, &Device::Cpu)?;
            let path = BlueprintLibrary::artifact_path(dir, &d.blueprint_id, w);
            let bytes = BlueprintLibrary::serialize_artifact(&art)?;
            std::fs::write(&path, bytes).map_err(|source| Error::Io { path, source })?;
        }
    }
    BlueprintLibrary::open(dir)
}
