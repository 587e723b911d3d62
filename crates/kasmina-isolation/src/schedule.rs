//! The alpha schedule of BLENDING: the prototype's sigmoid ramp, with the design's hysteresis
//! phases.

use crate::error::{Error, Result};

/// Width of the hysteresis band on each side of a phase edge (design: `alpha_hysteresis` 0.02).
pub const HYSTERESIS_BAND: f64 = 0.02;

/// The alpha values that separate the [`BlendPhase`]s: 0.3 and 0.7.
pub const PHASE_EDGES: [f64; 2] = [0.3, 0.7];

/// `edge + band` for each edge, written as decimals so that alpha 0.32 counts as reaching it
/// (`0.3 + 0.02` rounds to 0.32000000000000001 in binary, `0.3 - 0.02` to 0.27999999999999997).
const UP_THRESHOLDS: [f64; 2] = [0.32, 0.72];
/// `edge − band` for each edge (see [`UP_THRESHOLDS`]).
const DOWN_THRESHOLDS: [f64; 2] = [0.28, 0.68];

/// Which side of the blend dominates, with hysteresis: the reported phase.
///
/// Edges at 0.3 and 0.7 ([`PHASE_EDGES`]), each with a band of ±0.02 ([`HYSTERESIS_BAND`]).
/// The phase moves **up** across an edge only once alpha reaches `edge + band` (0.32, 0.72) and
/// **down** only once alpha falls to `edge − band` (0.28, 0.68); inside a band the previous phase
/// stays. So an alpha that hovers around an edge (a rewound schedule, an externally adjusted
/// alpha, noise) does not make the reported phase, and whatever policy keys on it, flip back and
/// forth. The blend itself always uses the exact alpha; the bands affect only the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlendPhase {
    /// alpha below 0.3: the host dominates the slot's output.
    HostDominant,
    /// alpha between 0.3 and 0.7: host and seed are mixed.
    Mixed,
    /// alpha above 0.7: the seed dominates.
    SeedDominant,
}

impl BlendPhase {
    /// The phase of a fresh blend (alpha 0).
    pub const INITIAL: Self = Self::HostDominant;

    /// The phase after alpha moves to `alpha`, starting from `self` (see the type's docs).
    ///
    /// A jump across both edges at once lands directly in the far phase. A NaN alpha keeps the
    /// current phase.
    #[must_use]
    pub fn next(self, alpha: f64) -> Self {
        let up = if alpha >= UP_THRESHOLDS[1] {
            Self::SeedDominant
        } else if alpha >= UP_THRESHOLDS[0] {
            Self::Mixed
        } else {
            Self::HostDominant
        };
        let down = if alpha <= DOWN_THRESHOLDS[0] {
            Self::HostDominant
        } else if alpha <= DOWN_THRESHOLDS[1] {
            Self::Mixed
        } else {
            Self::SeedDominant
        };
        if alpha.is_nan() {
            self
        } else if up > self {
            up
        } else if down < self {
            down
        } else {
            self
        }
    }
}

/// The sigmoid alpha schedule of BLENDING, with its hysteresis phase.
///
/// `alpha(step) = sigmoid((step − total/2) / max(temperature, 1e-6))`, or 1.0 when
/// `total_steps` is 0. With the defaults (20 steps, temperature 2.0): step 1 ≈ 0.0110, step 10 =
/// 0.5, step 20 ≈ 0.9933 — the schedule never reaches 1.0 by itself; SHADOWING and later stages
/// use alpha 1 regardless ([`crate::SlotMode::Full`]); [`crate::AlphaController`] is the ramp that
/// reaches 1.0 exactly.
///
/// A fresh (or [`reset`](Self::reset)) schedule is at step 0 with alpha 0, as the prototype's
/// DORMANT: entering BLENDING calls [`advance`](Self::advance) once, which gives step 1.
///
/// ```
/// use kasmina_isolation::{AlphaSchedule, BlendPhase};
///
/// let mut schedule = AlphaSchedule::default();
/// assert_eq!(schedule.alpha(), 0.0);
/// let a1 = schedule.advance();
/// assert!((a1 - 0.0110).abs() < 1e-4);
/// schedule.advance_by(19);
/// assert!(schedule.is_complete()); // gate G2: schedule finished
/// assert_eq!(schedule.phase(), BlendPhase::SeedDominant);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AlphaSchedule {
    total_steps: u64,
    temperature: f64,
    step: u64,
    alpha: f64,
    phase: BlendPhase,
}

impl Default for AlphaSchedule {
    /// The manager's defaults: 20 steps, temperature 2.0.
    fn default() -> Self {
        Self {
            total_steps: Self::DEFAULT_TOTAL_STEPS,
            temperature: Self::DEFAULT_TEMPERATURE,
            step: 0,
            alpha: 0.0,
            phase: BlendPhase::INITIAL,
        }
    }
}

impl AlphaSchedule {
    /// Default length of the ramp in steps (the prototype manager's default).
    pub const DEFAULT_TOTAL_STEPS: u64 = 20;
    /// Default sigmoid temperature (the prototype manager's default).
    pub const DEFAULT_TEMPERATURE: f64 = 2.0;
    /// Lower bound applied to the temperature in the formula.
    pub const MIN_TEMPERATURE: f64 = 1e-6;

    /// A schedule over `total_steps` steps at `temperature`, at step 0 with alpha 0.
    ///
    /// A temperature below [`Self::MIN_TEMPERATURE`] (zero or negative included) acts as that
    /// minimum, a near step function, as in the prototype; a non-finite one is
    /// [`Error::InvalidTemperature`].
    pub fn new(total_steps: u64, temperature: f64) -> Result<Self> {
        if !temperature.is_finite() {
            return Err(Error::InvalidTemperature { temperature });
        }
        Ok(Self { total_steps, temperature, ..Self::default() })
    }

    /// The schedule's value at `step` (pure; does not move the schedule).
    pub fn alpha_at(&self, step: u64) -> f64 {
        if self.total_steps == 0 {
            return 1.0;
        }
        let t = self.temperature.max(Self::MIN_TEMPERATURE);
        let x = (step as f64 - self.total_steps as f64 / 2.0) / t;
        1.0 / (1.0 + (-x).exp())
    }

    /// Moves one step on and returns the new alpha.
    pub fn advance(&mut self) -> f64 {
        self.advance_by(1)
    }

    /// Moves `steps` steps on (saturating) and returns the new alpha.
    pub fn advance_by(&mut self, steps: u64) -> f64 {
        self.set_step(self.step.saturating_add(steps))
    }

    /// Moves to `step` (forwards or backwards, e.g. when a window restarts) and returns the new
    /// alpha. The phase follows with hysteresis.
    pub fn set_step(&mut self, step: u64) -> f64 {
        self.step = step;
        self.alpha = self.alpha_at(step);
        self.phase = self.phase.next(self.alpha);
        self.alpha
    }

    /// Back to step 0, alpha 0 and the initial phase (the slot went DORMANT).
    pub fn reset(&mut self) {
        self.step = 0;
        self.alpha = 0.0;
        self.phase = BlendPhase::INITIAL;
    }

    /// The current alpha, the value [`crate::blend`] should use.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The current step (0 before the first [`advance`](Self::advance)).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The ramp's length in steps.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// The temperature as configured (the formula uses at least [`Self::MIN_TEMPERATURE`]).
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// The reported phase, with hysteresis (see [`BlendPhase`]).
    pub fn phase(&self) -> BlendPhase {
        self.phase
    }

    /// Whether the ramp has run its course (`step ≥ total_steps`): gate G2's "alpha schedule
    /// completed".
    pub fn is_complete(&self) -> bool {
        self.step >= self.total_steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_the_edges_plus_minus_the_band() {
        for i in 0..2 {
            assert!((UP_THRESHOLDS[i] - (PHASE_EDGES[i] + HYSTERESIS_BAND)).abs() < 1e-12);
            assert!((DOWN_THRESHOLDS[i] - (PHASE_EDGES[i] - HYSTERESIS_BAND)).abs() < 1e-12);
        }
    }

    #[test]
    fn non_finite_temperature_is_rejected() {
        assert!(matches!(AlphaSchedule::new(20, f64::NAN), Err(Error::InvalidTemperature { .. })));
        assert!(matches!(AlphaSchedule::new(20, f64::INFINITY), Err(Error::InvalidTemperature { .. })));
    }

    #[test]
    fn tiny_temperature_is_a_step_function() {
        let s = AlphaSchedule::new(20, 0.0).unwrap();
        assert!(s.alpha_at(9) < 1e-12);
        assert_eq!(s.alpha_at(10), 0.5);
        assert!(s.alpha_at(11) > 1.0 - 1e-12);
    }
}
