//! The alpha controller (decisions D4, revised): the ramp of the blend factor from 0 to its
//! target over BLENDING, with a choice of curve, hold, retargeting and the blend-out after a cull.
//!
//! Unlike [`crate::AlphaSchedule`] (the prototype's plain sigmoid, which never reaches 1), every
//! [`AlphaCurve`] is exactly 0.0 at the start and exactly 1.0 at the end, so that a seed enters
//! SHADOWING (`h + d`, alpha 1) without a jump.

use std::f64::consts::PI;

use crate::error::{Error, Result};

/// The shape of an alpha ramp: `value(t)` for the ramp's progress `t` in `[0, 1]`.
///
/// Every curve is monotone (non-decreasing), stays in `[0, 1]`, and is **exactly** `0.0` at
/// `t <= 0` and exactly `1.0` at `t >= 1` (a NaN `t` counts as 0).
///
/// ```
/// use kasmina_isolation::AlphaCurve;
///
/// for curve in [AlphaCurve::Linear, AlphaCurve::Cosine, AlphaCurve::Sigmoid { temperature: 8.0 }] {
///     assert_eq!(curve.value(0.0), 0.0);
///     assert_eq!(curve.value(1.0), 1.0);
///     assert!((curve.value(0.5) - 0.5).abs() < 1e-12);
/// }
/// assert_eq!(AlphaCurve::from_code(1, 0.0), Some(AlphaCurve::Cosine));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlphaCurve {
    /// `t`.
    Linear,
    /// `(1 - cos(pi t)) / 2`: slow at both ends.
    Cosine,
    /// The logistic function rescaled to `[0, 1]`:
    /// `(σ(T(t - ½)) - σ(-T/2)) / (σ(T/2) - σ(-T/2))` with `T` the temperature (computed in the
    /// equivalent form `(tanh(T(t - ½)/2) + tanh(T/4)) / (2 tanh(T/4))`). The larger `T`, the
    /// steeper the middle; as `T` goes to 0 the curve becomes linear.
    Sigmoid {
        /// `T`: finite and above 0 ([`AlphaController::new`] rejects anything else; [`value`]
        /// falls back to the linear curve for it).
        ///
        /// [`value`]: AlphaCurve::value
        temperature: f64,
    },
}

impl AlphaCurve {
    /// Wire code of [`AlphaCurve::Linear`].
    pub const LINEAR: u32 = 0;
    /// Wire code of [`AlphaCurve::Cosine`].
    pub const COSINE: u32 = 1;
    /// Wire code of [`AlphaCurve::Sigmoid`].
    pub const SIGMOID: u32 = 2;

    /// The curve at progress `t` (see the type's docs): exactly 0.0 for `t <= 0` (and NaN),
    /// exactly 1.0 for `t >= 1`, monotone and in `[0, 1]` in between.
    pub fn value(self, t: f64) -> f64 {
        if t.is_nan() || t <= 0.0 {
            return 0.0;
        }
        if t >= 1.0 {
            return 1.0;
        }
        let v = match self {
            Self::Linear => t,
            Self::Cosine => (1.0 - (PI * t).cos()) / 2.0,
            Self::Sigmoid { temperature } => rescaled_sigmoid(t, temperature),
        };
        v.clamp(0.0, 1.0)
    }

    /// The curve for a wire code: 0 = linear, 1 = cosine, 2 = sigmoid (with `temperature`, which
    /// the other curves ignore); `None` for any other code. The temperature is not validated
    /// here ([`AlphaController::new`] does).
    pub fn from_code(code: u32, temperature: f64) -> Option<Self> {
        match code {
            Self::LINEAR => Some(Self::Linear),
            Self::COSINE => Some(Self::Cosine),
            Self::SIGMOID => Some(Self::Sigmoid { temperature }),
            _ => None,
        }
    }

    /// The curve's wire code (see [`from_code`](Self::from_code)).
    pub fn code(self) -> u32 {
        match self {
            Self::Linear => Self::LINEAR,
            Self::Cosine => Self::COSINE,
            Self::Sigmoid { .. } => Self::SIGMOID,
        }
    }

    /// [`Error::InvalidTemperature`] for a sigmoid whose temperature is not finite and above 0.
    fn validate(self) -> Result<()> {
        match self {
            Self::Sigmoid { temperature } if !(temperature.is_finite() && temperature > 0.0) => {
                Err(Error::InvalidTemperature { temperature })
            }
            _ => Ok(()),
        }
    }
}

/// The rescaled logistic at `t` in `(0, 1)`, in its tanh form (`σ(x) = (1 + tanh(x/2)) / 2`):
/// the numerator cancels exactly at `t = 0` and equals the denominator at `t = 1`. A temperature
/// that leaves no usable denominator (not finite, not above 0, or so small that `tanh(T/4)`
/// underflows) gives the linear curve, the limit as `T` goes to 0.
fn rescaled_sigmoid(t: f64, temperature: f64) -> f64 {
    let half = (temperature / 4.0).tanh();
    if !(temperature.is_finite() && temperature > 0.0 && half > 0.0) {
        return t;
    }
    ((temperature * (t - 0.5) / 2.0).tanh() + half) / (2.0 * half)
}

/// Where the controller is going.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ramp {
    /// Ramp-in: alpha goes from `from` (at step `start`) to the target (at step `end`) along the
    /// curve. `start == end`: already at the target.
    In { from: f64, start: u64, end: u64 },
    /// Blend-out: alpha goes linearly from `from` to 0 over `steps`; `done` steps taken.
    Out { from: f64, steps: u64, done: u64 },
}

/// Where an [`AlphaController`] is on its ramp, as a checkpoint keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SavedRamp {
    /// Ramping in from `from` (at step `start`) to the target (at step `end`).
    In {
        /// Alpha where this ramp started.
        from: f64,
        /// Step where it started.
        start: u64,
        /// Step where it reaches the target.
        end: u64,
    },
    /// Blending out from `from` to 0 over `steps`, `done` of them taken.
    Out {
        /// Alpha where the blend-out started.
        from: f64,
        /// Its length.
        steps: u64,
        /// Steps taken.
        done: u64,
    },
}

/// An [`AlphaController`] as a checkpoint keeps it (every field; alpha is stored, not
/// recomputed, so a resumed blend carries on from the same bits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SavedAlpha {
    /// The ramp-in curve.
    pub curve: AlphaCurve,
    /// Ramp-in length.
    pub steps: u64,
    /// Target alpha.
    pub target: f64,
    /// Steps advanced.
    pub step: u64,
    /// Current alpha.
    pub alpha: f64,
    /// Held by a command.
    pub held: bool,
    /// The ramp it is on.
    pub ramp: SavedRamp,
}

/// The blend factor of a seed slot: ramps in from 0 to its target over BLENDING along an
/// [`AlphaCurve`], and back out to 0 after a cull (decisions D4, revised).
///
/// - **Ramp-in.** A new (or [`reset`](Self::reset)) controller is at step 0 with alpha exactly
///   0.0. Each [`advance`](Self::advance) moves one step: `alpha = target * curve(step / steps)`,
///   exactly `target` after `steps` advances (then [`reached_target`](Self::reached_target), and
///   [`is_complete`](Self::is_complete) when the target is 1.0); further advances change nothing.
/// - **Partial blend.** [`with_target`](Self::with_target) / [`set_target`](Self::set_target)
///   give a target in `(0, 1]`; the ramp holds there. Retargeting mid-ramp keeps alpha
///   continuous: the ramp goes on from the current alpha to the new target along the curve over
///   the remaining steps (at least one).
/// - **Hold.** [`hold`](Self::hold)`(true)` freezes alpha: advances change nothing until
///   `hold(false)`.
/// - **Blend-out.** [`blend_out`](Self::blend_out)`(n)` releases any hold and ramps linearly from
///   the current alpha down to exactly 0.0 over `n` advances
///   ([`is_blending_out`](Self::is_blending_out), then [`is_out`](Self::is_out)).
///
/// alpha never leaves `[0, target]` during a ramp-in nor `[0, alpha at the cull]` during a
/// blend-out, and moves monotonically towards where it is going.
///
/// ```
/// use kasmina_isolation::{AlphaController, AlphaCurve};
///
/// # fn main() -> Result<(), kasmina_isolation::Error> {
/// let mut alpha = AlphaController::new(AlphaCurve::Cosine, 4)?;
/// assert_eq!(alpha.alpha(), 0.0);
/// let quarter = 0.5 * (1.0 - std::f64::consts::FRAC_1_SQRT_2); // cosine at t = 1/4
/// assert!((alpha.advance() - quarter).abs() < 1e-12);
/// for _ in 0..3 {
///     alpha.advance();
/// }
/// assert_eq!(alpha.alpha(), 1.0);
/// assert!(alpha.is_complete()); // gate G2: the ramp reached 1.0
///
/// alpha.blend_out(2)?; // culled: back to 0 over 2 steps, the seed frozen
/// assert_eq!(alpha.advance(), 0.5);
/// assert_eq!(alpha.advance(), 0.0);
/// assert!(alpha.is_out());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AlphaController {
    curve: AlphaCurve,
    steps: u64,
    target: f64,
    step: u64,
    alpha: f64,
    held: bool,
    ramp: Ramp,
}

impl AlphaController {
    /// A controller ramping from 0 to 1 over `steps` advances along `curve`, at step 0 with
    /// alpha 0, not held.
    ///
    /// [`Error::ZeroSteps`] when `steps` is 0; [`Error::InvalidTemperature`] for a
    /// [`AlphaCurve::Sigmoid`] whose temperature is not finite and above 0.
    pub fn new(curve: AlphaCurve, steps: u64) -> Result<Self> {
        if steps == 0 {
            return Err(Error::ZeroSteps { what: "alpha ramp" });
        }
        curve.validate()?;
        Ok(Self {
            curve,
            steps,
            target: 1.0,
            step: 0,
            alpha: 0.0,
            held: false,
            ramp: Ramp::In { from: 0.0, start: 0, end: steps },
        })
    }

    /// The controller as a checkpoint keeps it.
    pub fn saved(&self) -> SavedAlpha {
        let ramp = match self.ramp {
            Ramp::In { from, start, end } => SavedRamp::In { from, start, end },
            Ramp::Out { from, steps, done } => SavedRamp::Out { from, steps, done },
        };
        SavedAlpha {
            curve: self.curve,
            steps: self.steps,
            target: self.target,
            step: self.step,
            alpha: self.alpha,
            held: self.held,
            ramp,
        }
    }

    /// A controller taken back from [`saved`](Self::saved), checked as [`new`](Self::new) and
    /// [`set_target`](Self::set_target) check theirs, and alpha within `[0, 1]`.
    pub fn restored(saved: SavedAlpha) -> Result<Self> {
        let mut c = Self::new(saved.curve, saved.steps)?;
        c.set_target(saved.target)?;
        if !(0.0..=1.0).contains(&saved.alpha) {
            return Err(Error::InvalidTarget { target: saved.alpha });
        }
        c.step = saved.step;
        c.alpha = saved.alpha;
        c.held = saved.held;
        c.ramp = match saved.ramp {
            SavedRamp::In { from, start, end } => Ramp::In { from, start, end },
            SavedRamp::Out { from, steps, done } => Ramp::Out { from, steps, done },
        };
        Ok(c)
    }

    /// The same controller with target `target` in `(0, 1]` (a partial blend holds there);
    /// [`Error::InvalidTarget`] otherwise. See [`set_target`](Self::set_target).
    pub fn with_target(mut self, target: f64) -> Result<Self> {
        self.set_target(target)?;
        Ok(self)
    }

    /// The current alpha.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Moves one step and returns the new alpha: along the ramp-in
    /// (`alpha = target * curve(step / steps)` on a ramp that was not retargeted), or down the
    /// blend-out. Changes nothing while held, once the target is reached, or once out.
    pub fn advance(&mut self) -> f64 {
        if self.held {
            return self.alpha;
        }
        match &mut self.ramp {
            Ramp::In { from, start, end } => {
                if self.step >= *end {
                    return self.alpha;
                }
                self.step += 1;
                self.alpha = if self.step >= *end {
                    self.target
                } else {
                    let t = (self.step - *start) as f64 / (*end - *start) as f64;
                    let v = *from + (self.target - *from) * self.curve.value(t);
                    v.clamp(from.min(self.target), from.max(self.target))
                };
            }
            Ramp::Out { from, steps, done } => {
                if *done >= *steps {
                    return self.alpha;
                }
                *done += 1;
                self.alpha = if *done >= *steps {
                    0.0
                } else {
                    (*from * ((*steps - *done) as f64 / *steps as f64)).clamp(0.0, *from)
                };
            }
        }
        self.alpha
    }

    /// Freezes (`true`) or releases (`false`) alpha: while held, [`advance`](Self::advance)
    /// changes nothing.
    pub fn hold(&mut self, on: bool) {
        self.held = on;
    }

    /// Whether alpha is held.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Sets the ramp-in's target to `target` in `(0, 1]` ([`Error::InvalidTarget`] otherwise,
    /// NaN included; nothing changes then).
    ///
    /// alpha stays where it is (no jump): the ramp goes on from the current alpha to the new
    /// target along the curve over the remaining steps (`steps - step`, at least 1). The same
    /// target again changes nothing; a target equal to the current alpha is reached at once.
    /// During a blend-out the target is only recorded (it applies after [`reset`](Self::reset)).
    pub fn set_target(&mut self, target: f64) -> Result<()> {
        if target.is_nan() || target <= 0.0 || target > 1.0 {
            return Err(Error::InvalidTarget { target });
        }
        if matches!(self.ramp, Ramp::Out { .. }) || target == self.target {
            self.target = target;
            return Ok(());
        }
        self.target = target;
        let span = if self.alpha == target { 0 } else { self.steps.saturating_sub(self.step).max(1) };
        self.ramp = Ramp::In { from: self.alpha, start: self.step, end: self.step.saturating_add(span) };
        Ok(())
    }

    /// Whether the ramp-in has finished: alpha is exactly the target (never during a blend-out).
    pub fn reached_target(&self) -> bool {
        matches!(self.ramp, Ramp::In { end, .. } if self.step >= end)
    }

    /// Whether the ramp-in has finished at target 1.0 (gate G2: BLENDING may end).
    pub fn is_complete(&self) -> bool {
        self.reached_target() && self.target == 1.0
    }

    /// Starts the blend-out after a cull: from the current alpha down to exactly 0.0, linearly,
    /// over `steps` advances ([`Error::ZeroSteps`] when 0; nothing changes then). Releases any
    /// hold. Called again during a blend-out, it restarts from the current alpha.
    pub fn blend_out(&mut self, steps: u64) -> Result<()> {
        if steps == 0 {
            return Err(Error::ZeroSteps { what: "blend-out" });
        }
        self.held = false;
        self.ramp = Ramp::Out { from: self.alpha, steps, done: 0 };
        Ok(())
    }

    /// Whether a blend-out is under way (started and not finished).
    pub fn is_blending_out(&self) -> bool {
        matches!(self.ramp, Ramp::Out { steps, done, .. } if done < steps)
    }

    /// Whether a blend-out has finished: alpha is exactly 0.0 and the seed may leave the forward.
    pub fn is_out(&self) -> bool {
        matches!(self.ramp, Ramp::Out { steps, done, .. } if done >= steps)
    }

    /// The ramp-in's curve.
    pub fn curve(&self) -> AlphaCurve {
        self.curve
    }

    /// The ramp-in's length in steps, as configured.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The ramp-in steps taken (0 before the first [`advance`](Self::advance); does not move
    /// during a blend-out). Can exceed [`steps`](Self::steps) by one after a retarget at the end
    /// of the ramp.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The ramp-in's target (1.0 unless set).
    pub fn target(&self) -> f64 {
        self.target
    }

    /// Back to step 0 and alpha 0, ramping in, not held; same curve, steps and target.
    pub fn reset(&mut self) {
        self.step = 0;
        self.alpha = 0.0;
        self.held = false;
        self.ramp = Ramp::In { from: 0.0, start: 0, end: self.steps };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn logistic(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn a_restored_controller_carries_on_to_the_same_bits() {
        for curve in [AlphaCurve::Linear, AlphaCurve::Cosine, AlphaCurve::Sigmoid { temperature: 6.0 }] {
            let mut a = AlphaController::new(curve, 17).unwrap().with_target(0.8).unwrap();
            for _ in 0..5 {
                a.advance();
            }
            a.set_target(0.6).unwrap();
            a.advance();
            let mut b = AlphaController::restored(a.saved()).unwrap();
            assert_eq!(b.saved(), a.saved());
            a.blend_out(4).unwrap();
            b.blend_out(4).unwrap();
            for _ in 0..20 {
                assert_eq!(a.advance().to_bits(), b.advance().to_bits());
            }
            let c = AlphaController::restored(b.saved()).unwrap();
            assert!(c.is_out() && c.is_blending_out() == b.is_blending_out());
        }
        let good = AlphaController::new(AlphaCurve::Linear, 4).unwrap().saved();
        for bad in [
            SavedAlpha { steps: 0, ..good },
            SavedAlpha { target: 1.5, ..good },
            SavedAlpha { alpha: f64::NAN, ..good },
            SavedAlpha { curve: AlphaCurve::Sigmoid { temperature: -1.0 }, ..good },
        ] {
            assert!(AlphaController::restored(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sigmoid_is_the_rescaled_logistic() {
        for temperature in [0.5, 2.0, 6.0, 12.0, 40.0] {
            let curve = AlphaCurve::Sigmoid { temperature };
            let lo = logistic(-temperature / 2.0);
            let hi = logistic(temperature / 2.0);
            for k in 0..=20 {
                let t = f64::from(k) / 20.0;
                let reference = (logistic(temperature * (t - 0.5)) - lo) / (hi - lo);
                let v = curve.value(t);
                assert!((v - reference).abs() < 1e-12, "T {temperature}, t {t}: {v} vs {reference}");
            }
        }
    }

    #[test]
    fn degenerate_temperatures_fall_back_to_linear_in_value() {
        for temperature in [0.0, -1.0, 1e-320, f64::NAN, f64::INFINITY] {
            let curve = AlphaCurve::Sigmoid { temperature };
            assert_eq!(curve.value(0.25), 0.25, "{temperature}");
            assert_eq!((curve.value(0.0), curve.value(1.0)), (0.0, 1.0));
        }
        // A tiny (valid) temperature is nearly linear.
        assert!((AlphaCurve::Sigmoid { temperature: 1e-6 }.value(0.3) - 0.3).abs() < 1e-9);
    }

    #[test]
    fn out_of_range_progress_is_clamped() {
        for curve in [AlphaCurve::Linear, AlphaCurve::Cosine, AlphaCurve::Sigmoid { temperature: 4.0 }] {
            assert_eq!(curve.value(-3.0), 0.0);
            assert_eq!(curve.value(f64::NAN), 0.0);
            assert_eq!(curve.value(7.0), 1.0);
            assert_eq!(curve.value(f64::INFINITY), 1.0);
        }
    }

    #[test]
    fn codes_round_trip() {
        for curve in [AlphaCurve::Linear, AlphaCurve::Cosine, AlphaCurve::Sigmoid { temperature: 3.0 }] {
            assert_eq!(AlphaCurve::from_code(curve.code(), 3.0), Some(curve));
        }
        assert_eq!(AlphaCurve::from_code(0, 9.0), Some(AlphaCurve::Linear));
        assert_eq!(AlphaCurve::from_code(3, 1.0), None);
        assert_eq!(AlphaCurve::from_code(u32::MAX, 1.0), None);
    }

    #[test]
    fn retarget_at_the_end_takes_one_more_step() {
        let mut c = AlphaController::new(AlphaCurve::Linear, 2).unwrap();
        c.advance();
        c.advance();
        assert!(c.is_complete());
        c.set_target(0.5).unwrap();
        assert_eq!(c.alpha(), 1.0, "no jump");
        assert!(!c.reached_target());
        assert_eq!(c.advance(), 0.5);
        assert!(c.reached_target() && !c.is_complete());
        assert_eq!(c.step(), 3);
    }
}
