//! Seed slots: the points inside the host model where a seed can grow.
//!
//! A slot has two locks: its seed (the state machine, taken at safe points) and its forward
//! state (the route the runtime set from the seed's stage, and what forwards observed since
//! the last safe point). The forward takes only the second; the order is seed, then forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Module, Tensor};
use kasmina_isolation::{Layout, SeedBranch, SlotMode, finite_check, guarded_slot_forward, seed_input};
use leyline::SeedLifecycleStage as Stage;
use parking_lot::Mutex;

use crate::error::Result;
use crate::seed::{Interface, Route, Seed};

/// What forwards observed since the last safe point. Nothing here has been read from the device:
/// the safe point reads it with everything else ([`crate::readout`]).
#[derive(Debug, Default)]
pub(crate) struct Observation {
    /// The sum of the forwards' finite checks (`Σd − Σd`, f32 scalar on the device): 0 when
    /// every seed delta since the last safe point was finite, NaN otherwise. `None` when the seed
    /// did not run.
    pub(crate) finite_checks: Option<Tensor>,
    pub(crate) interface: Option<Interface>,
    pub(crate) paused_passes: u64,
    /// The seed branch of the last forward (for the isolation probe).
    pub(crate) branch: Option<SeedBranch>,
    /// Host activation and seed delta of the last forward in SHADOWING/PROBATIONARY.
    pub(crate) shadow_pair: Option<(Tensor, Tensor)>,
}

#[derive(Debug, Default)]
pub(crate) struct ForwardState {
    pub(crate) route: Route,
    /// Output the seed's stand-alone output `sg(h) + delta(sg(h))` (a shadow evaluation of this
    /// slot).
    pub(crate) shadow: bool,
    /// Forward the host activation, whatever the route (the bypassed half of a counterfactual
    /// evaluation of this slot).
    pub(crate) bypass: bool,
    pub(crate) seen: Observation,
}

/// One slot: name, layout, width, depth, its seed and its forward state.
#[derive(Debug)]
pub(crate) struct SlotCell {
    pub(crate) name: String,
    pub(crate) layout: Layout,
    pub(crate) width: usize,
    pub(crate) depth: u32,
    pub(crate) seed: Mutex<Option<Seed>>,
    pub(crate) fwd: Mutex<ForwardState>,
    /// Set while some slot's shadow evaluation runs: the other slots forward normally
    /// (bypassing a non-finite seed) but record nothing, so one seed's evaluation is never
    /// another's evidence.
    pub(crate) evaluating: Arc<AtomicBool>,
}

impl SlotCell {
    /// Free for a germination: empty, or holding a seed that was reset or terminated.
    pub(crate) fn is_free(seed: &Option<Seed>) -> bool {
        seed.as_ref().is_none_or(|s| matches!(s.stage(), Stage::SeedStageDormant | Stage::SeedStageTerminated))
    }

    pub(crate) fn set_route(&self, route: Route) {
        self.fwd.lock().route = route;
    }

    pub(crate) fn take_observation(&self) -> Observation {
        std::mem::take(&mut self.fwd.lock().seen)
    }

    /// The slot's forward, recording what it saw unless `record` is false.
    fn forward(&self, host: &Tensor, record: bool) -> Result<Tensor> {
        self.layout.check(host.dims(), self.width)?;
        let (route, shadow, bypass) = {
            let mut st = self.fwd.lock();
            if record && matches!(st.route, Route::Paused) {
                st.seen.paused_passes += 1;
            }
            (st.route.clone(), st.shadow, st.bypass)
        };
        let Route::Seed { kernel, mode } = route else { return Ok(host.clone()) };
        if bypass {
            return Ok(host.clone());
        }
        if shadow {
            // The seed's stand-alone output `sg(h) + delta(sg(h))`, with its graph: in the
            // shadow training mode the seed learns from the loss computed on it.
            let input = seed_input(host);
            let delta = kernel.forward(&input)?;
            let branch = SeedBranch { input: input.clone(), delta: delta.clone() };
            if record {
                self.record(host, &branch, mode, finite_check(&delta)?)?;
            }
            return Ok((input + delta)?);
        }
        // The non-finite guard runs on the device: a broken seed never poisons the host's forward
        // or gradients, and nothing is read here (issue 19).
        let fwd = guarded_slot_forward(mode, host, kernel.as_ref())?;
        if record && let (Some(branch), Some(check)) = (fwd.seed.as_ref(), fwd.finite_check) {
            self.record(host, branch, mode, check)?;
        }
        Ok(fwd.output)
    }

    fn record(&self, host: &Tensor, branch: &SeedBranch, mode: SlotMode, check: Tensor) -> Result<()> {
        let mut st = self.fwd.lock();
        st.seen.interface = Some(Interface {
            seed_shape: branch.delta.dims().to_vec(),
            host_shape: host.dims().to_vec(),
            seed_dtype: branch.delta.dtype(),
            host_dtype: host.dtype(),
        });
        st.seen.finite_checks = Some(match st.seen.finite_checks.take() {
            Some(acc) => (acc + check)?,
            None => check,
        });
        if mode == SlotMode::Full {
            st.seen.shadow_pair = Some((host.detach(), branch.delta.detach()));
        }
        st.seen.branch = Some(branch.clone());
        Ok(())
    }

    /// G5's question to the slot itself, as a tensor to read: the largest `|out − probe|` of a
    /// probe activation through the slot (0 when it comes out unchanged). `None` when the output's
    /// shape differs (not unchanged).
    pub(crate) fn change_of_probe(&self, device: &Device) -> Result<Option<Tensor>> {
        let probe = Tensor::randn(0f32, 1.0, self.layout.probe_shape(self.width), device)?;
        let out = self.forward(&probe, false)?;
        if out.dims() != probe.dims() {
            return Ok(None);
        }
        Ok(Some((out.to_dtype(DType::F32)? - &probe)?.abs()?.max_all()?))
    }

    /// Runs `f` with this slot in shadow mode and every other slot recording nothing.
    pub(crate) fn shadowed<R>(&self, f: impl FnOnce() -> R) -> R {
        self.evaluating.store(true, Ordering::SeqCst);
        self.fwd.lock().shadow = true;
        let out = f();
        self.fwd.lock().shadow = false;
        self.evaluating.store(false, Ordering::SeqCst);
        out
    }

    /// Runs `f` with no slot recording, and this slot bypassed when `bypass` (a counterfactual
    /// evaluation).
    pub(crate) fn evaluated<R>(&self, bypass: bool, f: impl FnOnce() -> R) -> R {
        self.evaluating.store(true, Ordering::SeqCst);
        self.fwd.lock().bypass = bypass;
        let out = f();
        self.fwd.lock().bypass = false;
        self.evaluating.store(false, Ordering::SeqCst);
        out
    }
}

/// A seed slot inside the host model (a cheap handle; clone it freely).
///
/// Call [`forward`](Self::forward) where the slot sits in the model's forward pass, with the host
/// activation in the slot's [`Layout`]: `[batch, width]` (dense), `[batch, time, width]`
/// (sequence) or `[batch, width, height, width_px]` (image, channels on axis 1); any other shape
/// is a typed error. What comes out depends on the stage of the seed in the
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

    /// The activation width the slot expects (features, or channels for an image slot).
    pub fn width(&self) -> usize {
        self.cell.width
    }

    /// The activation layout the slot expects.
    pub fn layout(&self) -> Layout {
        self.cell.layout
    }

    /// The stage of the seed in the slot (DORMANT when empty).
    pub fn stage(&self) -> Stage {
        self.cell.seed.lock().as_ref().map(|s| s.stage()).unwrap_or(Stage::SeedStageDormant)
    }

    /// The id of the seed in the slot, if any.
    pub fn seed_id(&self) -> Option<String> {
        self.cell.seed.lock().as_ref().map(|s| s.id.clone())
    }

    /// The slot's forward pass for the host activation `host` (in the slot's layout).
    pub fn forward(&self, host: &Tensor) -> Result<Tensor> {
        let record = !self.cell.evaluating.load(Ordering::SeqCst) || self.cell.fwd.lock().shadow;
        self.cell.forward(host, record)
    }
}

impl Module for SeedSlot {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        SeedSlot::forward(self, xs).map_err(candle_core::Error::wrap)
    }
}

/// The shadow metrics' sums, as four scalars on the device (nothing is read): `|b − h|²`, `|h|²`,
/// `|b|²` and `⟨b, h⟩` of the blended output `b = h + delta` and the host activation `h`;
/// [`shadow_metrics`] turns their values into the metrics.
pub(crate) fn shadow_sums(host: &Tensor, delta: &Tensor) -> Result<Tensor> {
    let h = host.to_dtype(DType::F32)?.flatten_all()?;
    let s = (&h + delta.to_dtype(DType::F32)?.flatten_all()?)?;
    Ok(Tensor::stack(
        &[(&s - &h)?.sqr()?.sum_all()?, h.sqr()?.sum_all()?, s.sqr()?.sum_all()?, (&s * &h)?.sum_all()?],
        0,
    )?)
}

/// Relative L2 distance `|b − h| / |h|` and cosine similarity of `b` to `h`, from the values of
/// [`shadow_sums`]. `None` unless there are four.
pub(crate) fn shadow_metrics(sums: &[f64]) -> Option<(f64, f64)> {
    let &[diff, hh, ss, sh] = sums else { return None };
    let rel = diff.sqrt() / hh.sqrt().max(1e-12);
    let cos = sh / (hh.sqrt() * ss.sqrt()).max(1e-12);
    Some((rel, cos))
}
