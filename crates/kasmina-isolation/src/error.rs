//! The error type of `kasmina-isolation`.

use leyline::SeedLifecycleStage;

/// Everything that can go wrong in the slot forward, the alpha schedule and controller or the
/// isolation monitor.
///
/// Bad input is reported here and never panics; a failed call changes no state of the schedule or
/// the monitor (counters included).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A candle tensor operation failed (device error, dtype or shape the operation rejects, or an
    /// error returned by the seed kernel itself).
    #[error("tensor operation `{op}` failed: {source}")]
    Candle {
        /// Which step of this crate ran the operation (`"blend"`, `"seed kernel"`, `"probe backward"`, ...).
        op: &'static str,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// Two tensors that must have the same shape do not (typically the seed's output and the host
    /// activation: gate G3's interface check).
    #[error("{what}: shape {actual:?} does not match {expected:?}")]
    ShapeMismatch {
        /// What was compared.
        what: &'static str,
        /// The shape required (the host activation's).
        expected: Vec<usize>,
        /// The shape received.
        actual: Vec<usize>,
    },
    /// An activation whose shape does not fit the slot's declared layout and width.
    #[error("activation of shape {actual:?} does not fit a {layout} slot of width {width}")]
    LayoutMismatch {
        /// The slot's layout (`dense`, `sequence`, `image`).
        layout: &'static str,
        /// The slot's width (features last, or channels on axis 1 for images).
        width: usize,
        /// The shape received.
        actual: Vec<usize>,
    },
    /// A blend factor that is not a finite number.
    #[error("alpha must be a finite number, got {alpha}")]
    InvalidAlpha {
        /// The value received.
        alpha: f64,
    },
    /// An alpha temperature that is not a finite number ([`crate::AlphaSchedule`]), or not a
    /// finite number above 0 ([`crate::AlphaCurve::Sigmoid`] in an [`crate::AlphaController`]).
    #[error("alpha schedule temperature must be a finite number (above 0 for an alpha curve), got {temperature}")]
    InvalidTemperature {
        /// The value received.
        temperature: f64,
    },
    /// [`crate::IsolationMonitor::conclude`] got a number of values that is not the number of
    /// the pending check's scalars.
    #[error("a pending isolation check has {expected} scalars, got {actual} values")]
    ReadoutLength {
        /// The number of scalars ([`crate::PendingCheck::scalars`]).
        expected: usize,
        /// The number of values given.
        actual: usize,
    },
    /// A FOSSILIZED gradient scale that is not a finite number.
    #[error("grad_scale must be a finite number, got {grad_scale}")]
    InvalidGradScale {
        /// The value received.
        grad_scale: f64,
    },
    /// An alpha target outside `(0, 1]` (NaN included).
    #[error("alpha target must be in (0, 1], got {target}")]
    InvalidTarget {
        /// The value received.
        target: f64,
    },
    /// A ramp of zero steps (an alpha ramp-in or blend-out lasts at least one step).
    #[error("{what} must last at least 1 step, got 0")]
    ZeroSteps {
        /// Which ramp (`"alpha ramp"`, `"blend-out"`).
        what: &'static str,
    },
    /// A monitor configuration value out of range.
    #[error("invalid isolation monitor config: {field} {reason}")]
    InvalidConfig {
        /// The offending field of [`crate::MonitorConfig`].
        field: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The stage has no defined slot output (only the wire default `SEED_STAGE_UNKNOWN`). Not
    /// returned by this crate since the slot forward takes a [`crate::SlotMode`]; kept for callers
    /// that map a stage to a mode.
    #[error("stage {} has no slot output", stage.as_str_name())]
    UnknownStage {
        /// The stage received.
        stage: SeedLifecycleStage,
    },
    /// The probe needs a tensor whose first dimension is the batch and holds at least one row.
    #[error("probe tensor needs a batch dimension and at least one row, got shape {shape:?}")]
    ProbeShape {
        /// The shape received.
        shape: Vec<usize>,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the name of the failing step to a candle error.
pub(crate) trait CandleContext<T> {
    /// Maps a candle error to [`Error::Candle`] tagged with `op`.
    fn op(self, op: &'static str) -> Result<T>;
}

impl<T> CandleContext<T> for candle_core::Result<T> {
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|source| Error::Candle { op, source })
    }
}
