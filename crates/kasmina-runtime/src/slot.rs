//! Seed slots: the points inside the host model where a seed can grow.

use std::sync::Arc;

use candle_core::{Module, Tensor};
use kasmina_isolation::{SeedBranch, seed_input, seed_output, slot_output};
use leyline::SeedLifecycleStage as Stage;
use parking_lot::Mutex;

use crate::blueprint::SeedKernel;
use crate::error::{Error, Result};
use crate::seed::SeedRecord;

/// What a slot remembers between a forward and the next safe point.
#[derive(Debug, Default)]
pub(crate) struct SlotState {
    /// The seed in the slot (kept after a reset to DORMANT so observers see the failure path
    /// complete, until a new seed is germinated here).
    pub(crate) seed: Option<SeedRecord>,
    /// The seed branch of the last forward (for the isolation probe).
    pub(crate) last_branch: Option<SeedBranch>,
    /// Forward in shadow mode: output the seed branch, detached.
    pub(crate) shadow: bool,
    /// Identity passes taken by a paused seed since the last safe point.
    pub(crate) paused_passes: u64,
}

/// One slot: its name, width and depth, and its state.
#[derive(Debug)]
pub(crate) struct SlotCell {
    pub(crate) name: String,
    pub(crate) width: usize,
    pub(crate) depth: u32,
    pub(crate) state: Mutex<SlotState>,
}

impl SlotCell {
    /// Free for a germination: empty, or holding a seed that was reset to DORMANT.
    pub(crate) fn is_free(state: &SlotState) -> bool {
        state.seed.as_ref().is_none_or(|s| s.stage() == Stage::SeedStageDormant)
    }
}

/// A seed slot inside the host model (a cheap handle; clone it freely).
///
/// Call [`forward`](Self::forward) where the slot sits in the model's forward pass, with the host
/// activation of shape `[batch, width]`. What comes out depends on the stage of the seed in the
/// slot (decisions D4): the host activation unchanged (no seed, DORMANT, GERMINATED, the failure
/// path, TERMINATED, paused), the straight-through form in TRAINING (equal to the host activation
/// in value), the alpha blend in BLENDING, the seed's output in SHADOWING, PROBATIONARY and
/// FOSSILIZED. The seed reads the host activation detached until FOSSILIZED, so the seed's
/// loss never moves host weights. A seed whose output turns non-finite is bypassed (the host
/// activation goes through) and is culled at the next safe point.
#[derive(Debug, Clone)]
pub struct SeedSlot {
    pub(crate) cell: Arc<SlotCell>,
}

impl SeedSlot {
    /// The slot's name.
    pub fn name(&self) -> &str {
        &self.cell.name
    }

    /// The activation width the slot expects.
    pub fn width(&self) -> usize {
        self.cell.width
    }

    /// The stage of the seed in the slot (DORMANT when empty).
    pub fn stage(&self) -> Stage {
        self.cell.state.lock().seed.as_ref().map(|s| s.stage()).unwrap_or(Stage::SeedStageDormant)
    }

    /// The id of the seed in the slot, if any.
    pub fn seed_id(&self) -> Option<String> {
        self.cell.state.lock().seed.as_ref().map(|s| s.id.clone())
    }

    /// The slot's forward pass for the host activation `host` (`[batch, width]`).
    pub fn forward(&self, host: &Tensor) -> Result<Tensor> {
        let dims = host.dims();
        if dims.last().copied() != Some(self.cell.width) {
            return Err(Error::Isolation(kasmina_isolation::Error::ShapeMismatch {
                what: "slot input",
                expected: vec![self.cell.width],
                actual: dims.to_vec(),
            }));
        }
        // Read what the forward needs, then compute without holding the lock.
        let (stage, paused, alpha, kernel, shadow) = {
            let mut st = self.cell.state.lock();
            let shadow = st.shadow;
            match st.seed.as_ref() {
                None => return Ok(host.clone()),
                Some(seed) => {
                    let info = (seed.stage(), seed.pause.is_some(), seed.current_alpha(), seed.kernel.clone(), shadow);
                    if info.1 {
                        st.paused_passes += 1;
                    }
                    info
                }
            }
        };
        let Some(kernel) = kernel else { return Ok(host.clone()) };
        if shadow {
            return self.shadow_output(stage, paused, host, &kernel);
        }
        let fwd = slot_output(stage, paused, host, alpha, kernel.as_ref())?;
        let Some(branch) = fwd.seed else { return Ok(fwd.output) };
        let finite = all_finite(&branch.output)?;
        let mut st = self.cell.state.lock();
        if let Some(seed) = st.seed.as_mut() {
            seed.seed_output_shape = branch.output.dims().to_vec();
            seed.seed_dtype = format!("{:?}", branch.output.dtype()).to_lowercase();
            seed.host_output_shape = host.dims().to_vec();
            seed.host_dtype = format!("{:?}", host.dtype()).to_lowercase();
            if !finite {
                seed.nan_output = true;
                if stage == Stage::SeedStageBlending {
                    seed.blended_finite = false;
                }
            }
        }
        if !finite && stage != Stage::SeedStageFossilized {
            // Never let a broken seed poison the host's forward or gradients.
            st.last_branch = Some(branch);
            return Ok(host.clone());
        }
        st.last_branch = Some(branch);
        Ok(fwd.output)
    }

    /// Shadow mode: the seed branch's output, detached (no gradient), for the stages where the
    /// seed runs; the host activation otherwise.
    fn shadow_output(&self, stage: Stage, paused: bool, host: &Tensor, kernel: &Arc<SeedKernel>) -> Result<Tensor> {
        if paused || !(stage.is_monitored() || stage == Stage::SeedStageFossilized) {
            return Ok(host.clone());
        }
        Ok(seed_output(&seed_input(host), kernel.as_ref())?.detach())
    }
}

impl Module for SeedSlot {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        SeedSlot::forward(self, xs).map_err(candle_core::Error::wrap)
    }
}

/// Whether every element is finite (one reduction and one device sync).
pub(crate) fn all_finite(t: &Tensor) -> Result<bool> {
    let s = t.detach().sum_all()?.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
    Ok(s.is_finite())
}

/// Gives `kernel` to the monitor as a module (the probe re-runs it on one row).
pub(crate) fn as_module(kernel: &Arc<SeedKernel>) -> &dyn Module {
    kernel.as_ref()
}
