//! The built-in blueprints, with fixed ids that clients use.
//!
//! `W` is the slot's width: the feature size `D` of a dense `[B, D]` or sequence `[B, T, D]`
//! activation, the channel count `C` of an image `[B, C, H, W]` activation. Every kernel computes
//! a delta (the seed's output is `x + delta(x)`) whose last layer starts at zero, so a fresh
//! seed is exactly the identity.
//!
//! | id | family | kernel | notes |
//! |---|---|---|---|
//! | `BP000` | any | identity | no parameters; the last-resort fallback |
//! | `BP001` | dense | residual MLP adapter (hidden = width/2, ≥ 4) | output layer starts at zero; the default fallback |
//! | `BP002` | dense | low-rank adapter (rank = width/8, ≥ 2) | `B` starts at zero |
//! | `BP003` | dense | zero-initialised linear | |
//! | `BP004` | dense | wide residual MLP adapter (hidden = 4·width) | output layer starts at zero; adds real capacity |
//! | `BP100` | image | 3×3 conv → group norm → ReLU → 1×1 conv | groups: largest divisor of C ≤ min(32, C/4), else 1 |
//! | `BP101` | image | depthwise 3×3 conv → ReLU → pointwise 1×1 conv | |
//! | `BP102` | image | squeeze-and-excitation gate: `x ⊙ tanh(fc2(relu(fc1(pool(x)))))` | r = max(C/4, 1) |
//! | `BP103` | image | low-rank 1×1 convs C → r → C, no biases | r = max(C/8, 2) |
//! | `BP200` | sequence | pre-norm MLP: layer norm → D→4D → GELU → 4D→D | |
//! | `BP201` | sequence | low-rank adapter `x·A·B` on the last axis | r = max(D/8, 2) |
//! | `BP202` | sequence | pre-norm causal self-attention: layer norm → qkv → H heads → out | H = 4 if 4 divides D, else 1; no padding mask |
//! | `BP900` | dense | residual MLP that turns non-finite after 3 steps | deliberately broken, for demos and failure tests |
//! | `BP190` | image | `BP100`'s conv residual block, turning non-finite after 3 steps | deliberately broken (image family) |
//! | `BP290` | sequence | `BP200`'s pre-norm MLP block, turning non-finite after 3 steps | deliberately broken (sequence family) |
//! | `BP901` | dense | linear delta plus fresh Gaussian noise (σ 1) at every call | deliberately harmful: training cannot learn it away (no-trace tests) |
//!
//! A dense kernel reads the last axis of an input of any rank ≥ 2, so it serves sequence slots
//! too ([`Family::serves`]); image and sequence kernels serve only their own layout.
//!
//! ## Cost
//!
//! [`param_count`] and [`flops_per_element`] give each artefact's size and cost (the Leyline
//! descriptor has no field for them; its `description` states the formulas). FLOPs count the
//! delta per element of the input (`B·W` dense, `B·T·D` sequence, `B·C·H·W` image), with 2 per
//! multiply-add, 1 per bias, ReLU, pooling or gating element, 7 per normalised element, 8 per
//! GELU, 4 per tanh and 5 per softmax score; the residual add is not counted.
//!
//! | id | parameters | FLOPs per element |
//! |---|---|---|
//! | `BP000` | 0 | 0 |
//! | `BP001`, `BP900` (h = max(W/2, 4)) | `2hW + h + W` | `4h + 2h/W + 1` |
//! | `BP002` (r = max(W/8, 2)) | `2rW` | `4r` |
//! | `BP003` | `W² + W` | `2W + 1` |
//! | `BP004` (h = 4W) | `8W² + 5W` | `16W + 9` |
//! | `BP100` | `10C² + 4C` | `20C + 10` |
//! | `BP101` | `C² + 11C` | `2C + 21` |
//! | `BP102` (r = max(C/4, 1)) | `2rC + r + C` | `2 + (4rC + 2r + 5C)/(C·H·W)` |
//! | `BP103` (r = max(C/8, 2)) | `2rC` | `4r` |
//! | `BP200` | `8D² + 7D` | `16D + 44` |
//! | `BP201` (r = max(D/8, 2)) | `2rD` | `4r` |
//! | `BP202` | `4D² + 6D` | `8D + 11 + 4T + 7HT/D` |
//! | `BP901` | `W² + W` | `2W + 2` |
//!
//! Weights come from a seeded RNG, so a library written twice with the same seed is
//! byte-identical; adding a blueprint leaves every other one's weights unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use kasmina_isolation::Layout;
use leyline::{BlueprintDescriptor, BlueprintParameterBounds, BlueprintTier};
use rand::{SeedableRng, rngs::StdRng};

use super::spec::{self, Spec};
use super::{BlueprintLibrary, Family, KernelArtifact, KernelKind, dense, image, sequence};
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
/// Image: convolutional residual block (3×3 conv, group norm, ReLU, zero 1×1 conv).
pub const CONV_RESIDUAL: &str = "BP100";
/// Image: depthwise-separable block (depthwise 3×3 conv, ReLU, zero pointwise conv).
pub const DEPTHWISE_SEPARABLE: &str = "BP101";
/// Image: squeeze-and-excitation channel gate.
pub const SQUEEZE_EXCITE: &str = "BP102";
/// Image: low-rank 1×1 convolutions.
pub const CONV_LOW_RANK: &str = "BP103";
/// Sequence: pre-norm MLP block (hidden = 4 × width, GELU).
pub const PRENORM_MLP: &str = "BP200";
/// Sequence: low-rank adapter on the last axis.
pub const SEQUENCE_LOW_RANK: &str = "BP201";
/// Sequence: pre-norm causal self-attention block.
pub const CAUSAL_ATTENTION: &str = "BP202";
/// Deliberately broken kernel (output non-finite after a few steps).
pub const BROKEN: &str = "BP900";
/// Deliberately harmful kernel (a linear delta plus fresh Gaussian noise at every call).
pub const NOISY: &str = "BP901";
/// Deliberately broken image kernel (`BP100`'s architecture, non-finite after a few steps).
pub const BROKEN_IMAGE: &str = "BP190";
/// Deliberately broken sequence kernel (`BP200`'s architecture, non-finite after a few steps).
pub const BROKEN_SEQUENCE: &str = "BP290";
/// The deliberately broken built-ins, one per family.
pub const BROKEN_ALL: &[&str] = &[BROKEN, BROKEN_IMAGE, BROKEN_SEQUENCE];
/// Every built-in id. The position salts an artefact's generator, so new ids go at the end.
pub const ALL: &[&str] = &[
    IDENTITY,
    RESIDUAL_MLP,
    LOW_RANK,
    ZERO_LINEAR,
    BROKEN,
    NOISY,
    WIDE_MLP,
    CONV_RESIDUAL,
    DEPTHWISE_SEPARABLE,
    SQUEEZE_EXCITE,
    CONV_LOW_RANK,
    PRENORM_MLP,
    SEQUENCE_LOW_RANK,
    CAUSAL_ATTENTION,
    BROKEN_IMAGE,
    BROKEN_SEQUENCE,
];
/// The built-in image kernels.
pub const IMAGE: &[&str] = &[CONV_RESIDUAL, DEPTHWISE_SEPARABLE, SQUEEZE_EXCITE, CONV_LOW_RANK];
/// The built-in sequence kernels.
pub const SEQUENCE: &[&str] = &[PRENORM_MLP, SEQUENCE_LOW_RANK, CAUSAL_ATTENTION];
/// Optimiser steps after which `BP900`, `BP190` and `BP290` turn non-finite.
pub const BROKEN_AFTER_STEPS: u64 = 3;

/// The kind of a built-in and its inner size (hidden units or rank; 0 when it has none) for
/// `width`, or `None` for an unknown id.
fn geometry(blueprint_id: &str, width: usize) -> Option<(KernelKind, usize)> {
    Some(match blueprint_id {
        IDENTITY => (KernelKind::Identity, 0),
        RESIDUAL_MLP | BROKEN => (KernelKind::ResidualMlp, (width / 2).max(4)),
        WIDE_MLP => (KernelKind::ResidualMlp, 4 * width),
        LOW_RANK => (KernelKind::LowRank, (width / 8).max(2)),
        ZERO_LINEAR => (KernelKind::ZeroLinear, 0),
        NOISY => (KernelKind::Noisy, 0),
        CONV_RESIDUAL | BROKEN_IMAGE => (KernelKind::ConvResidual, 0),
        DEPTHWISE_SEPARABLE => (KernelKind::DepthwiseSeparable, 0),
        SQUEEZE_EXCITE => (KernelKind::SqueezeExcite, (width / 4).max(1)),
        CONV_LOW_RANK => (KernelKind::ConvLowRank, (width / 8).max(2)),
        PRENORM_MLP | BROKEN_SEQUENCE => (KernelKind::PrenormMlp, 4 * width),
        SEQUENCE_LOW_RANK => (KernelKind::SequenceLowRank, (width / 8).max(2)),
        CAUSAL_ATTENTION => (KernelKind::CausalAttention, 0),
        _ => return None,
    })
}

/// The activation layout a built-in serves (its artefacts' `kasmina.family`), or `None` for an
/// unknown id: [`Family::Any`] for `BP000`, [`Family::Dense`] for `BP001`–`BP004`, `BP900`,
/// `BP901` (which serve sequence slots too), [`Family::Image`] for `BP1xx`,
/// [`Family::Sequence`] for `BP2xx`.
pub fn layout_family(blueprint_id: &str) -> Option<Family> {
    geometry(blueprint_id, 1).map(|(kind, _)| kind.family())
}

/// The built-ins that can run on a slot of `layout`, in [`ALL`]'s order.
pub fn serving(layout: Layout) -> Vec<&'static str> {
    ALL.iter().copied().filter(|id| layout_family(id).is_some_and(|f| f.serves(layout))).collect()
}

/// Parameters of the built-in artefact of `blueprint_id` for `width` (see the module's cost
/// table), or `None` for an unknown id.
pub fn param_count(blueprint_id: &str, width: usize) -> Option<usize> {
    let (kind, inner) = geometry(blueprint_id, width)?;
    Some(spec::param_count(&kind.specs(width, inner)))
}

/// FLOPs per input element of the built-in kernel of `blueprint_id` for `width` (see the
/// module's cost table), or `None` for an unknown id. `extent` is the sequence length `T` of a
/// sequence input or the pixel count `H·W` of an image input; only `BP102` (pooling amortises
/// its gate) and `BP202` (attention grows with `T`) depend on it.
pub fn flops_per_element(blueprint_id: &str, width: usize, extent: usize) -> Option<f64> {
    let (kind, inner) = geometry(blueprint_id, width)?;
    Some(match kind {
        KernelKind::ResidualMlp => dense::residual_mlp_flops(width, inner),
        KernelKind::LowRank | KernelKind::SequenceLowRank => dense::low_rank_flops(inner),
        KernelKind::ZeroLinear => dense::linear_flops(width),
        KernelKind::Noisy => dense::linear_flops(width) + 1.0,
        KernelKind::ConvResidual => image::conv_residual_flops(width),
        KernelKind::DepthwiseSeparable => image::depthwise_separable_flops(width),
        KernelKind::SqueezeExcite => image::squeeze_excite_flops(width, inner, extent),
        KernelKind::ConvLowRank => image::conv_low_rank_flops(inner),
        KernelKind::PrenormMlp => sequence::prenorm_mlp_flops(width, inner),
        KernelKind::CausalAttention => sequence::causal_attention_flops(width, sequence::heads_for(width), extent),
        _ => 0.0,
    })
}

fn bounds(pairs: &[(&str, f64, f64)]) -> BTreeMap<String, BlueprintParameterBounds> {
    pairs
        .iter()
        .map(|(k, lo, hi)| ((*k).to_owned(), BlueprintParameterBounds { min_value: *lo, max_value: *hi }))
        .collect()
}

/// One row of the descriptor table: id, name, tier, risk, description.
type Row = (&'static str, &'static str, BlueprintTier, f32, &'static str);

/// The descriptors' rows, in [`ALL`]'s order.
const ROWS: &[Row] = &[
    (IDENTITY, "identity", BlueprintTier::Safe, 0.0, "[any] identity kernel, no parameters (last-resort fallback)"),
    (
        RESIDUAL_MLP,
        "residual-mlp",
        BlueprintTier::Safe,
        0.1,
        "[dense] residual MLP adapter (hidden h = max(W/2, 4)); output layer starts at zero; \
         params 2hW + h + W; FLOPs/element 4h + 2h/W + 1",
    ),
    (
        LOW_RANK,
        "low-rank",
        BlueprintTier::Safe,
        0.1,
        "[dense] low-rank adapter x·A·B (r = max(W/8, 2)); B starts at zero; params 2rW; FLOPs/element 4r",
    ),
    (
        ZERO_LINEAR,
        "zero-linear",
        BlueprintTier::Experimental,
        0.2,
        "[dense] zero-initialised linear delta; params W² + W; FLOPs/element 2W + 1",
    ),
    (
        BROKEN,
        "broken-residual-mlp",
        BlueprintTier::HighRisk,
        0.95,
        "[dense] deliberately broken: its output turns non-finite after a few steps (failure-path demos and tests)",
    ),
    (
        NOISY,
        "noisy-linear",
        BlueprintTier::HighRisk,
        0.9,
        "[dense] deliberately harmful: adds fresh Gaussian noise at every call, which training cannot learn away \
         (no-trace tests)",
    ),
    (
        WIDE_MLP,
        "wide-residual-mlp",
        BlueprintTier::Safe,
        0.15,
        "[dense] wide residual MLP adapter (hidden 4x width); output layer starts at zero; \
         params 8W² + 5W; FLOPs/element 16W + 9",
    ),
    (
        CONV_RESIDUAL,
        "conv-residual",
        BlueprintTier::Safe,
        0.15,
        "[image] conv residual block: 3x3 conv -> group norm -> ReLU -> 1x1 conv starting at zero; \
         params 10C² + 4C; FLOPs/element 20C + 10",
    ),
    (
        DEPTHWISE_SEPARABLE,
        "depthwise-separable",
        BlueprintTier::Safe,
        0.1,
        "[image] depthwise 3x3 conv -> ReLU -> pointwise 1x1 conv starting at zero; \
         params C² + 11C; FLOPs/element 2C + 21",
    ),
    (
        SQUEEZE_EXCITE,
        "squeeze-excite",
        BlueprintTier::Safe,
        0.1,
        "[image] squeeze-and-excitation gate x * tanh(fc2(relu(fc1(pool(x))))) (r = max(C/4, 1)), fc2 starting \
         at zero; params 2rC + r + C; FLOPs/element 2 + (4rC + 2r + 5C)/(C·H·W)",
    ),
    (
        CONV_LOW_RANK,
        "conv-low-rank",
        BlueprintTier::Safe,
        0.1,
        "[image] low-rank 1x1 convs C -> r -> C (r = max(C/8, 2)), the second starting at zero; \
         params 2rC; FLOPs/element 4r",
    ),
    (
        PRENORM_MLP,
        "prenorm-mlp",
        BlueprintTier::Safe,
        0.15,
        "[sequence] pre-norm MLP block: layer norm -> D->4D -> GELU -> 4D->D starting at zero; \
         params 8D² + 7D; FLOPs/element 16D + 44",
    ),
    (
        SEQUENCE_LOW_RANK,
        "sequence-low-rank",
        BlueprintTier::Safe,
        0.1,
        "[sequence] low-rank adapter x·A·B on the last axis (r = max(D/8, 2)); B starts at zero; \
         params 2rD; FLOPs/element 4r",
    ),
    (
        CAUSAL_ATTENTION,
        "causal-attention",
        BlueprintTier::Experimental,
        0.25,
        "[sequence] pre-norm causal self-attention (H = 4 heads if 4 divides D, else 1; no padding mask), \
         out projection starting at zero; params 4D² + 6D; FLOPs/element 8D + 11 + 4T + 7HT/D",
    ),
    (
        BROKEN_IMAGE,
        "broken-conv-residual",
        BlueprintTier::HighRisk,
        0.95,
        "[image] deliberately broken: BP100's block, its output turns non-finite after a few steps          (failure-path demos and tests)",
    ),
    (
        BROKEN_SEQUENCE,
        "broken-prenorm-mlp",
        BlueprintTier::HighRisk,
        0.95,
        "[sequence] deliberately broken: BP200's block, its output turns non-finite after a few steps          (failure-path demos and tests)",
    ),
];

/// The descriptors of the built-in set.
pub fn descriptors() -> Vec<BlueprintDescriptor> {
    let common = bounds(&[("alpha", 0.0, 1.0), ("lr", 1e-6, 1.0), ("weight_decay", 0.0, 1.0)]);
    ROWS.iter()
        .map(|&(id, name, tier, risk, description)| BlueprintDescriptor {
            blueprint_id: id.to_owned(),
            name: name.to_owned(),
            tier: tier as i32,
            allowed_parameters: common.clone(),
            risk,
            stage: 1,
            quarantine_only: tier == BlueprintTier::HighRisk,
            approval_required: false,
            description: description.to_owned(),
        })
        .collect()
}

/// The built-in artefact of `blueprint_id` for `width`, with weights drawn from `seed`.
pub fn artifact(blueprint_id: &str, width: usize, seed: u64, device: &Device) -> Result<KernelArtifact> {
    if width == 0 {
        return Err(Error::InvalidArtifact { blueprint_id: blueprint_id.to_owned(), reason: "width 0".into() });
    }
    let (kind, inner) =
        geometry(blueprint_id, width).ok_or_else(|| Error::UnknownBlueprint(blueprint_id.to_owned()))?;
    let salt = ALL.iter().position(|id| *id == blueprint_id).unwrap_or(ALL.len()) as u64;
    let mut rng = StdRng::seed_from_u64(seed ^ (salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ width as u64);
    let specs: Vec<Spec> = kind.specs(width, inner);
    Ok(KernelArtifact {
        blueprint_id: blueprint_id.to_owned(),
        width,
        kind,
        tensors: spec::draw(&specs, &mut rng, device)?,
        poison_after_steps: BROKEN_ALL.contains(&blueprint_id).then_some(BROKEN_AFTER_STEPS),
        heads: (kind == KernelKind::CausalAttention).then(|| sequence::heads_for(width)),
        live_vars: None,
    })
}

/// Writes the built-in library for the given activation widths to `dir` (created if needed)
/// and opens it: every built-in at every width (image kernels read the width as channels).
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
