//! The isolation monitor (decisions D6): projection probe, shared-parameter check, dot product.

use std::collections::{HashMap, HashSet};
use std::fmt;

use candle_core::backprop::GradStore;
use candle_core::{DType, Module, Tensor, TensorId, Var};
use leyline::SeedLifecycleStage;
use quanta::Clock;

use crate::error::{CandleContext, Error, Result};
use crate::forward::{finite_check, seed_output};

/// Settings of an [`IsolationMonitor`].
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Check every `sample_every`-th step (steps where `step % sample_every == 0`); 1 = every
    /// step (the default, D6). Must be at least 1.
    pub sample_every: u64,
    /// A host variable whose probe gradient has an element with `|g|` above this (or a
    /// non-finite element) is a leak. Default `1e-10` (design 02.1).
    pub leak_threshold: f64,
    /// `|isolation.dot_product|` above this is a violation. Default `1e-6` (prototype `verify()`).
    pub dot_threshold: f64,
    /// Compute the host and seed gradient norms when the step's gradients are given
    /// ([`Probe::with_step_grads`]). They cost one pass over every host gradient; switch off to
    /// keep only the dot product. Default `true`.
    pub grad_norms: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self { sample_every: 1, leak_threshold: 1e-10, dot_threshold: 1e-6, grad_norms: true }
    }
}

impl MonitorConfig {
    fn validate(&self) -> Result<()> {
        if self.sample_every == 0 {
            return Err(Error::InvalidConfig { field: "sample_every", reason: "must be at least 1" });
        }
        if !(self.leak_threshold.is_finite() && self.leak_threshold >= 0.0) {
            return Err(Error::InvalidConfig { field: "leak_threshold", reason: "must be finite and non-negative" });
        }
        if !(self.dot_threshold.is_finite() && self.dot_threshold >= 0.0) {
            return Err(Error::InvalidConfig { field: "dot_threshold", reason: "must be finite and non-negative" });
        }
        Ok(())
    }
}

/// Where the probe's one row comes from.
#[derive(Clone, Copy)]
enum ProbeSource<'a> {
    Rerun { input: &'a Tensor, kernel: &'a dyn Module },
    Output(&'a Tensor),
}

/// What one isolation check looks at: the seed branch of this step's slot forward.
///
/// Two ways to build it:
///
/// - [`Probe::rerun`] (the cheap one, recommended): the tensor the seed's kernel received and the
///   kernel. The monitor slices **one row** from that very tensor and re-runs the residual seed
///   on it (`row + kernel(row)`), so the probe's backward spans one row of the seed's subgraph
///   (about 1/batch of a seed backward). A missing detach still shows, because the row is cut
///   from the tensor the seed received and keeps its graph to the host.
/// - [`Probe::from_output`]: the seed output already computed this step. The monitor slices one
///   row of it; no re-run and no kernel needed, but candle's backward of a slice runs through the
///   seed's whole batch, so it costs a full seed backward.
///
/// Optionally add the full seed output ([`with_seed_output`](Self::with_seed_output), for the NaN
/// check over the whole batch rather than the probe row) and the step's gradient store
/// ([`with_step_grads`](Self::with_step_grads), for the dot product and the gradient norms).
#[derive(Clone, Copy)]
pub struct Probe<'a> {
    source: ProbeSource<'a>,
    seed_output: Option<&'a Tensor>,
    step_grads: Option<&'a GradStore>,
}

impl fmt::Debug for Probe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            ProbeSource::Rerun { input, .. } => format!("Rerun(input {:?})", input.dims()),
            ProbeSource::Output(out) => format!("Output({:?})", out.dims()),
        };
        f.debug_struct("Probe")
            .field("source", &source)
            .field("seed_output", &self.seed_output.map(|t| t.dims().to_vec()))
            .field("step_grads", &self.step_grads.is_some())
            .finish()
    }
}

impl<'a> Probe<'a> {
    /// Probe by re-running the residual seed (`row + kernel(row)`) on one row of `seed_input`,
    /// the very tensor the seed's kernel received this step ([`crate::SeedBranch::input`]).
    /// The first dimension is the batch.
    pub fn rerun(seed_input: &'a Tensor, kernel: &'a dyn Module) -> Self {
        Self { source: ProbeSource::Rerun { input: seed_input, kernel }, seed_output: None, step_grads: None }
    }

    /// Probe through one row of the seed output already computed this step (graph attached).
    /// The first dimension is the batch. The NaN check covers the whole output.
    pub fn from_output(seed_output: &'a Tensor) -> Self {
        Self { source: ProbeSource::Output(seed_output), seed_output: Some(seed_output), step_grads: None }
    }

    /// The seed's full output this step, checked for NaN/inf (otherwise only the probe row is).
    /// The slot forward's delta ([`crate::SeedBranch::delta`]) may be given instead: a NaN or
    /// infinity in it is one in the seed's output. Ignored by
    /// [`Probe::from_output`], which checks its own output.
    #[must_use]
    pub fn with_seed_output(mut self, seed_output: &'a Tensor) -> Self {
        if let ProbeSource::Rerun { .. } = self.source {
            self.seed_output = Some(seed_output);
        }
        self
    }

    /// The gradient store of this step's training backward: enables the dot product over host
    /// variables both it and the probe reach, and the host/seed gradient norms.
    #[must_use]
    pub fn with_step_grads(mut self, grads: &'a GradStore) -> Self {
        self.step_grads = Some(grads);
        self
    }
}

/// Why a check did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The stage is outside D6's monitored stages (TRAINING, BLENDING, SHADOWING, PROBATIONARY).
    StageNotMonitored,
    /// Sampling: the step is not a multiple of [`MonitorConfig::sample_every`].
    NotSampled,
}

/// One reason a check found a violation.
#[derive(Debug, Clone, PartialEq)]
pub enum ViolationReason {
    /// Variables registered to both the host and the seed (same candle tensor id), by host name.
    SharedParameters {
        /// The host names of the shared variables.
        names: Vec<String>,
    },
    /// The probe's backward reached host variables (gradient above the leak threshold or not
    /// finite): the seed's output is connected to the host's parameters.
    ProbeReachedHost {
        /// The host variables reached.
        names: Vec<String>,
    },
    /// The dot product of the host's step gradients and the probe's gradients exceeds the
    /// threshold.
    DotProduct {
        /// The dot product.
        value: f64,
        /// The threshold it exceeded.
        threshold: f64,
    },
}

/// The outcome of one check, as a value: the runtime escalates violations to the isolation
/// breaker.
#[derive(Debug, Clone, PartialEq)]
pub enum IsolationVerdict {
    /// The probe reached no host variable, no parameter is shared, the dot product is in bounds.
    Clean,
    /// At least one reason, in the order: shared parameters, probe reached host, dot product.
    Violation {
        /// What was found.
        reasons: Vec<ViolationReason>,
    },
    /// The check did not run.
    Skipped {
        /// Why.
        reason: SkipReason,
    },
}

/// The report of one [`IsolationMonitor::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationReport {
    /// The step passed to the check.
    pub step: u64,
    /// The stage passed to the check.
    pub stage: SeedLifecycleStage,
    /// Clean, violation (with reasons) or skipped.
    pub verdict: IsolationVerdict,
    /// `isolation.dot_product`: Σ over host variables reached by both the step's backward and the
    /// probe of ⟨host grad, probe grad⟩. `Some(0.0)` whenever the probe reaches no host variable
    /// (an empty sum, step gradients given or not); `None` when it reaches one but no step
    /// gradients were given, and when skipped.
    pub dot_product: Option<f64>,
    /// L2 norm of the step's gradients over the host variables; `None` without step gradients,
    /// with [`MonitorConfig::grad_norms`] off, or when skipped.
    pub host_grad_norm: Option<f64>,
    /// L2 norm of the step's gradients over the seed variables; `None` likewise.
    pub seed_grad_norm: Option<f64>,
    /// The names of the host variables involved in a violation (shared or reached), each once.
    pub offending: Vec<String>,
    /// Wall time of the check in milliseconds on the monitor's clock (`isolation.hook_latency_ms`);
    /// 0 when skipped.
    pub elapsed_ms: f64,
    /// The seed output (the whole output if given, else the probe row) holds a NaN or an
    /// infinity. Reported for gate G1; it does not by itself make the verdict a violation.
    pub nan_output: bool,
}

impl IsolationReport {
    /// Whether the verdict is a violation.
    pub fn is_violation(&self) -> bool {
        matches!(self.verdict, IsolationVerdict::Violation { .. })
    }

    /// Whether the check was skipped.
    pub fn is_skipped(&self) -> bool {
        matches!(self.verdict, IsolationVerdict::Skipped { .. })
    }

    fn skipped(step: u64, stage: SeedLifecycleStage, reason: SkipReason) -> Self {
        Self {
            step,
            stage,
            verdict: IsolationVerdict::Skipped { reason },
            dot_product: None,
            host_grad_norm: None,
            seed_grad_norm: None,
            offending: Vec::new(),
            elapsed_ms: 0.0,
            nan_output: false,
        }
    }
}

/// Counters of one monitor (one seed). [`IsolationMonitor::reset_counters`] zeroes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MonitorCounters {
    /// Checks that ran.
    pub checks: u64,
    /// Checks whose verdict was a violation (one per check, whatever the number of reasons).
    pub violations: u64,
    /// Checks that reported a NaN/inf seed output.
    pub nan_outputs: u64,
    /// Calls skipped (stage not monitored or not sampled).
    pub skipped: u64,
}

/// The gradient-isolation monitor of one host and one seed (decisions D6).
///
/// Built from the host's and the seed's variables, each with a name (`Vec<(String, Var)>`). Each
/// [`check`](Self::check) runs, in the monitored stages and on sampled steps:
///
/// 1. the **shared-parameter check**: seed variables that are host variables (same tensor id),
///    computed once at construction and reported on every check;
/// 2. the **projection probe**: one row of the seed's output ([`Probe`]) dotted with a random
///    tensor and backpropagated; any host variable in the resulting gradient store with an
///    element `|g| > leak_threshold` (or non-finite) is a violation naming it;
/// 3. the **dot product** of the step's host gradients (when given) and the probe's gradients
///    over the host variables both reach, which must be `≤ dot_threshold`;
/// 4. the **NaN check** of the seed output and, with step gradients, the host and seed
///    **gradient norms**.
///
/// The probe's backward builds its own `GradStore`; it does not touch the step's gradients.
/// Pausing is the caller's business: a paused slot does not run its seed, so it has nothing to
/// check.
pub struct IsolationMonitor {
    host: Vec<(String, Var)>,
    host_index: HashMap<TensorId, usize>,
    seed: Vec<(String, Var)>,
    shared: Vec<String>,
    config: MonitorConfig,
    clock: Clock,
    counters: MonitorCounters,
}

impl fmt::Debug for IsolationMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsolationMonitor")
            .field("host_vars", &self.host.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("seed_vars", &self.seed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("shared", &self.shared)
            .field("config", &self.config)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl IsolationMonitor {
    /// A monitor over `host` and `seed` variables, timing checks on a fresh `quanta::Clock`
    /// ([`with_clock`](Self::with_clock) injects another). [`Error::InvalidConfig`] on a bad
    /// config.
    pub fn new(host: Vec<(String, Var)>, seed: Vec<(String, Var)>, config: MonitorConfig) -> Result<Self> {
        config.validate()?;
        let host_index: HashMap<TensorId, usize> = host.iter().enumerate().map(|(i, (_, v))| (v.id(), i)).collect();
        let mut seen = HashSet::new();
        let shared = seed
            .iter()
            .filter_map(|(_, v)| host_index.get(&v.id()).copied())
            .filter(|&i| seen.insert(i))
            .map(|i| host[i].0.clone())
            .collect();
        Ok(Self { host, host_index, seed, shared, config, clock: Clock::new(), counters: MonitorCounters::default() })
    }

    /// Uses `clock` to time the checks (`quanta::Clock::mock()` in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The host variables, as given.
    pub fn host_vars(&self) -> &[(String, Var)] {
        &self.host
    }

    /// The seed variables, as given.
    pub fn seed_vars(&self) -> &[(String, Var)] {
        &self.seed
    }

    /// The host names of the variables registered to both host and seed (empty when isolated).
    pub fn shared_parameters(&self) -> &[String] {
        &self.shared
    }

    /// Whether `step` is sampled (`step % sample_every == 0`).
    pub fn should_check(&self, step: u64) -> bool {
        step.is_multiple_of(self.config.sample_every)
    }

    /// The counters so far.
    pub fn counters(&self) -> MonitorCounters {
        self.counters
    }

    /// Sets the counters (a monitor rebuilt from a checkpoint carries on counting).
    pub fn restore_counters(&mut self, counters: MonitorCounters) {
        self.counters = counters;
    }

    /// Zeroes the counters (the slot was reset, gate G5).
    pub fn reset_counters(&mut self) {
        self.counters = MonitorCounters::default();
    }

    /// Runs one isolation check for `step` in `stage`.
    ///
    /// Outside TRAINING/BLENDING/SHADOWING/PROBATIONARY, or on a step that is not sampled, returns
    /// a [`IsolationVerdict::Skipped`] report without touching a tensor. Otherwise runs the
    /// checks listed on the type and returns the report; a violation bumps
    /// [`MonitorCounters::violations`]. Errors ([`Error::ProbeShape`], a failing kernel or tensor
    /// operation) leave the counters unchanged.
    ///
    /// This is [`measure`](Self::measure), one device read of the pending check's scalars, and
    /// [`conclude`](Self::conclude).
    pub fn check(&mut self, step: u64, stage: SeedLifecycleStage, probe: &Probe<'_>) -> Result<IsolationReport> {
        match self.measure(step, stage, probe)? {
            Measured::Skipped(report) => Ok(report),
            Measured::Pending(pending) => {
                let values = read_scalars(pending.scalars())?;
                self.conclude(pending, &values)
            }
        }
    }

    /// The first half of [`check`](Self::check): builds every tensor the check needs (the probe's
    /// backward, the leak maxima, the dot product, the gradient norms, the NaN check) and reads
    /// none of them. The device keeps working; the caller reads
    /// [`PendingCheck::scalars`] when it reads the device anyway (once per training step in
    /// `kasmina-runtime`) and hands the values to [`conclude`](Self::conclude). A skipped check
    /// comes back as its report at once (and counts as skipped).
    pub fn measure(&mut self, step: u64, stage: SeedLifecycleStage, probe: &Probe<'_>) -> Result<Measured> {
        if !stage.is_monitored() {
            self.counters.skipped += 1;
            return Ok(Measured::Skipped(IsolationReport::skipped(step, stage, SkipReason::StageNotMonitored)));
        }
        if !self.should_check(step) {
            self.counters.skipped += 1;
            return Ok(Measured::Skipped(IsolationReport::skipped(step, stage, SkipReason::NotSampled)));
        }
        let start = self.clock.now();

        // The probe row: one row of the seed's output, with its graph.
        let row_out = match probe.source {
            ProbeSource::Rerun { input, kernel } => {
                let row = first_row(input)?;
                seed_output(&row, kernel)?
            }
            ProbeSource::Output(out) => first_row(out)?,
        };
        let mut scalars = vec![finite_check(probe.seed_output.unwrap_or(&row_out))?];

        // Projection: <row, r> with r ~ N(0, 1), backpropagated.
        let r = Tensor::randn(0f32, 1f32, row_out.shape(), row_out.device())
            .and_then(|r| r.to_dtype(row_out.dtype()))
            .op("probe tensor")?;
        let probe_grads = row_out.mul(&r).and_then(|p| p.sum_all()).and_then(|p| p.backward()).op("probe backward")?;

        // Host variables the probe reached (any entry): the largest |g| of each (NaN when one is
        // not finite).
        let mut reached: Vec<usize> = probe_grads.get_ids().filter_map(|id| self.host_index.get(id).copied()).collect();
        reached.sort_unstable();
        let mut leaks = Vec::new();
        for &i in &reached {
            if let Some(g) = probe_grads.get(&self.host[i].1)
                && g.elem_count() > 0
            {
                leaks.push(i);
                scalars.push(leak_measure(g)?);
            }
        }

        // Dot product over host variables both the step's backward and the probe reach.
        let dot = match probe.step_grads {
            Some(step_grads) if !reached.is_empty() => {
                let mut dot = Tensor::zeros((), DType::F64, row_out.device()).op("dot product")?;
                for &i in &reached {
                    let var = &self.host[i].1;
                    if let (Some(hg), Some(pg)) = (step_grads.get(var), probe_grads.get(var)) {
                        let term = hg.mul(pg).and_then(|t| t.sum_all()).and_then(|t| t.to_dtype(DType::F64));
                        dot = dot.add(&term.op("dot product")?).op("dot product")?;
                    }
                }
                scalars.push(dot);
                DotProduct::Measured
            }
            _ if reached.is_empty() => DotProduct::Zero,
            _ => DotProduct::Unknown,
        };

        let norms = match probe.step_grads {
            Some(grads) if self.config.grad_norms => {
                scalars.push(sum_of_squares_over(grads, &self.host, row_out.device())?);
                scalars.push(sum_of_squares_over(grads, &self.seed, row_out.device())?);
                true
            }
            _ => false,
        };
        Ok(Measured::Pending(PendingCheck { step, stage, start, scalars, leaks, dot, norms }))
    }

    /// The second half of [`check`](Self::check): the verdict from the values of
    /// [`PendingCheck::scalars`], read by the caller in the same order (as f64). Counts the check
    /// (and a violation, and a NaN output). [`Error::ReadoutLength`] when the number of values is
    /// not the number of scalars; the counters are then unchanged.
    pub fn conclude(&mut self, pending: PendingCheck, values: &[f64]) -> Result<IsolationReport> {
        if values.len() != pending.scalars.len() {
            return Err(Error::ReadoutLength { expected: pending.scalars.len(), actual: values.len() });
        }
        let mut next = values.iter().copied();
        let mut take = || next.next().unwrap_or(f64::NAN);
        let nan_output = take() != 0.0;
        let threshold = self.config.leak_threshold;
        let leaked: Vec<String> = pending
            .leaks
            .iter()
            .filter_map(|&i| {
                let max_abs = take();
                (max_abs.is_nan() || max_abs > threshold).then(|| self.host[i].0.clone())
            })
            .collect();
        let dot_product = match pending.dot {
            DotProduct::Measured => Some(take()),
            DotProduct::Zero => Some(0.0),
            DotProduct::Unknown => None,
        };
        let (host_grad_norm, seed_grad_norm) =
            if pending.norms { (Some(take().sqrt()), Some(take().sqrt())) } else { (None, None) };

        let mut reasons = Vec::new();
        if !self.shared.is_empty() {
            reasons.push(ViolationReason::SharedParameters { names: self.shared.clone() });
        }
        if !leaked.is_empty() {
            reasons.push(ViolationReason::ProbeReachedHost { names: leaked.clone() });
        }
        if let Some(value) = dot_product
            && (value.is_nan() || value.abs() > self.config.dot_threshold)
        {
            reasons.push(ViolationReason::DotProduct { value, threshold: self.config.dot_threshold });
        }
        let mut offending = self.shared.clone();
        for name in leaked {
            if !offending.contains(&name) {
                offending.push(name);
            }
        }
        let verdict =
            if reasons.is_empty() { IsolationVerdict::Clean } else { IsolationVerdict::Violation { reasons } };

        let elapsed_ms = self.clock.now().duration_since(pending.start).as_secs_f64() * 1e3;
        self.counters.checks += 1;
        if matches!(verdict, IsolationVerdict::Violation { .. }) {
            self.counters.violations += 1;
        }
        if nan_output {
            self.counters.nan_outputs += 1;
        }
        Ok(IsolationReport {
            step: pending.step,
            stage: pending.stage,
            verdict,
            dot_product,
            host_grad_norm,
            seed_grad_norm,
            offending,
            elapsed_ms,
            nan_output,
        })
    }
}

/// What [`IsolationMonitor::measure`] returns.
#[derive(Debug)]
pub enum Measured {
    /// The check did not run (its report, verdict [`IsolationVerdict::Skipped`]).
    Skipped(IsolationReport),
    /// The check's tensors, to be read and passed to [`IsolationMonitor::conclude`].
    Pending(PendingCheck),
}

/// How the dot product of a pending check is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DotProduct {
    /// One of the scalars.
    Measured,
    /// The probe reached no host variable: an empty sum.
    Zero,
    /// Reached host variables but no step gradients were given.
    Unknown,
}

/// An isolation check measured on the device and not yet read ([`IsolationMonitor::measure`]).
pub struct PendingCheck {
    step: u64,
    stage: SeedLifecycleStage,
    start: quanta::Instant,
    scalars: Vec<Tensor>,
    leaks: Vec<usize>,
    dot: DotProduct,
    norms: bool,
}

impl fmt::Debug for PendingCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCheck")
            .field("step", &self.step)
            .field("stage", &self.stage)
            .field("scalars", &self.scalars.len())
            .finish_non_exhaustive()
    }
}

impl PendingCheck {
    /// The scalars to read (each a one-element f32 or f64 tensor on the probe's device), in the order
    /// [`IsolationMonitor::conclude`] takes their values.
    pub fn scalars(&self) -> &[Tensor] {
        &self.scalars
    }
}

/// Reads tensors in one transfer (every element of each, in order, concatenated on their
/// device), as f64. [`PendingCheck::scalars`] are one element each.
pub fn read_scalars(scalars: &[Tensor]) -> Result<Vec<f64>> {
    if scalars.is_empty() {
        return Ok(Vec::new());
    }
    let flat = scalars
        .iter()
        .map(|t| t.to_dtype(DType::F64).and_then(|t| t.flatten_all()))
        .collect::<candle_core::Result<Vec<_>>>();
    flat.and_then(|v| Tensor::cat(&v, 0)).and_then(|t| t.to_vec1::<f64>()).op("readout")
}

/// One row (`narrow(0, 0, 1)`) of a tensor whose first dimension is the batch.
fn first_row(t: &Tensor) -> Result<Tensor> {
    if t.rank() < 2 || t.dims()[0] == 0 {
        return Err(Error::ProbeShape { shape: t.dims().to_vec() });
    }
    t.narrow(0, 0, 1).op("probe row")
}

/// The largest `|g|` as an f64 scalar tensor, NaN when `g` holds a non-finite element.
fn leak_measure(g: &Tensor) -> Result<Tensor> {
    let max_abs = g.abs().and_then(|a| a.max_all()).and_then(|m| m.to_dtype(DType::F64)).op("leak check")?;
    let check = finite_check(g)?.to_dtype(DType::F64).op("leak check")?;
    max_abs.add(&check).op("leak check")
}

/// `Σ g²` as a scalar tensor, computed as the matrix product `(1×n)·(n×1)` of the flattened
/// gradient with itself: one gemm reduction with no `n`-sized temporary. In the isolation bench
/// (`cpu/isolation/*_with_grads`) this halved the check's cost against `sqr().sum_all()`, whose
/// multi-megabyte temporaries also slowed the surrounding training step.
fn sum_of_squares(g: &Tensor) -> candle_core::Result<Tensor> {
    let n = g.elem_count();
    let g = g.contiguous()?;
    g.reshape((1, n))?.matmul(&g.reshape((n, 1))?)?.reshape(())
}

/// `Σ g²` over the gradients of `vars` in `grads` (variables without a gradient count as 0), as
/// an f64 scalar tensor on `device`; nothing is read.
fn sum_of_squares_over(grads: &GradStore, vars: &[(String, Var)], device: &candle_core::Device) -> Result<Tensor> {
    let mut acc = Tensor::zeros((), DType::F64, device).op("grad norm")?;
    for (_, var) in vars {
        let Some(g) = grads.get(var) else { continue };
        let g = match g.dtype() {
            DType::F16 | DType::BF16 => g.to_dtype(DType::F32).op("grad norm")?,
            _ => g.clone(),
        };
        let sq = sum_of_squares(&g).and_then(|s| s.to_dtype(DType::F64)).op("grad norm")?;
        acc = acc.add(&sq).op("grad norm")?;
    }
    Ok(acc)
}
