//! Device-generic isolation tests: each function runs on the device it is given.

use anyhow::{Result, ensure};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use kasmina_isolation::{
    Error, IsolationMonitor, IsolationVerdict, Measured, MonitorConfig, Probe, SkipReason, SlotMode, ViolationReason,
    blend, read_scalars, seed_output, slot_forward,
};
use leyline::SeedLifecycleStage as Stage;

const BATCH: usize = 8;
const WIDTH: usize = 16;
const OUT: usize = 8;

/// Deterministic pseudo-random values in [-scale, scale] (an LCG), so that the fixtures do not
/// depend on an rng: only the monitor's probe tensor is random.
fn det(dev: &Device, shape: (usize, usize), seed: u64, scale: f32) -> Result<Tensor> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            (unit * 2.0 - 1.0) * scale
        })
        .collect();
    Ok(Tensor::from_vec(data, shape, dev)?)
}

struct Linear {
    w: Var,
    b: Var,
}

impl Linear {
    fn new(dev: &Device, i: usize, o: usize, seed: u64, bias: f32) -> Result<Self> {
        let w = Var::from_tensor(&det(dev, (i, o), seed, 0.5)?)?;
        let b = Var::from_tensor(&(Tensor::ones((1, o), DType::F32, dev)? * f64::from(bias))?)?;
        Ok(Self { w, b })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(self.w.as_tensor())?.broadcast_add(self.b.as_tensor())
    }
}

/// Host: x → l1 → relu → [slot] → l2; seed kernel (delta): s1 → relu → s2.
struct Fixture {
    x: Tensor,
    target: Tensor,
    l1: Linear,
    l2: Linear,
    s1: Linear,
    s2: Linear,
}

impl Fixture {
    fn new(dev: &Device) -> Result<Self> {
        Ok(Self {
            x: det(dev, (BATCH, WIDTH), 1, 1.0)?,
            target: det(dev, (BATCH, OUT), 2, 1.0)?,
            // Positive biases keep the ReLUs mostly active, so gradients flow.
            l1: Linear::new(dev, WIDTH, WIDTH, 3, 0.5)?,
            l2: Linear::new(dev, WIDTH, OUT, 4, 0.0)?,
            s1: Linear::new(dev, WIDTH, 8, 5, 0.5)?,
            s2: Linear::new(dev, 8, WIDTH, 6, 0.1)?,
        })
    }

    fn host_vars(&self) -> Vec<(String, Var)> {
        vec![
            ("host.l1.w".into(), self.l1.w.clone()),
            ("host.l1.b".into(), self.l1.b.clone()),
            ("host.l2.w".into(), self.l2.w.clone()),
            ("host.l2.b".into(), self.l2.b.clone()),
        ]
    }

    fn seed_vars(&self) -> Vec<(String, Var)> {
        vec![
            ("seed.s1.w".into(), self.s1.w.clone()),
            ("seed.s1.b".into(), self.s1.b.clone()),
            ("seed.s2.w".into(), self.s2.w.clone()),
            ("seed.s2.b".into(), self.s2.b.clone()),
        ]
    }

    /// The host activation at the slot.
    fn host_activation(&self) -> Result<Tensor> {
        Ok(self.l1.forward(&self.x)?.relu()?)
    }

    /// The seed's kernel (its delta).
    fn kernel(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        self.s2.forward(&self.s1.forward(t)?.relu()?)
    }

    fn loss(&self, slot_out: &Tensor) -> Result<Tensor> {
        Ok(self.l2.forward(slot_out)?.sub(&self.target)?.sqr()?.mean_all()?)
    }

    fn monitor(&self) -> Result<IsolationMonitor> {
        Ok(IsolationMonitor::new(self.host_vars(), self.seed_vars(), MonitorConfig::default())?)
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok(a.sub(b)?.abs()?.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

fn to_bits(t: &Tensor) -> Result<Vec<u32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f32::to_bits).collect())
}

fn abs_sum(t: &Tensor) -> Result<f64> {
    Ok(t.abs()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// The gradient of `var`, or zero if the backward did not reach it.
fn grad_or_zero(grads: &GradStore, var: &Var) -> Result<Tensor> {
    Ok(match grads.get(var) {
        Some(g) => g.clone(),
        None => var.as_tensor().zeros_like()?,
    })
}

fn reasons(verdict: &IsolationVerdict) -> Vec<ViolationReason> {
    match verdict {
        IsolationVerdict::Violation { reasons } => reasons.clone(),
        _ => Vec::new(),
    }
}

pub(crate) fn detached_input_is_clean(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    let h = f.host_activation()?;
    let slot = slot_forward(SlotMode::StraightThrough, &h, &kernel)?;
    let grads = f.loss(&slot.output)?.backward()?;
    let branch = slot.seed.as_ref().expect("seed runs in TRAINING");

    let (clock, _mock) = quanta::Clock::mock();
    let mut monitor = f.monitor()?.with_clock(clock);
    assert!(monitor.shared_parameters().is_empty());
    let probe = Probe::rerun(&branch.input, &kernel).with_seed_output(&branch.delta).with_step_grads(&grads);
    let report = monitor.check(7, Stage::SeedStageTraining, &probe)?;

    assert_eq!(report.verdict, IsolationVerdict::Clean);
    assert_eq!(report.step, 7);
    assert_eq!(report.dot_product, Some(0.0));
    assert!(report.offending.is_empty());
    assert!(!report.nan_output);
    // The host trains normally and the seed learns through the straight-through term; the norms
    // are the L2 norms of the step's gradients over each side's variables.
    let norm = |vars: Vec<(String, Var)>| -> Result<f64> {
        let mut sum = 0.0;
        for (_, v) in vars {
            sum += grads.get(&v).expect("reached").sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
        Ok(sum.sqrt())
    };
    let (host_norm, seed_norm) = (norm(f.host_vars())?, norm(f.seed_vars())?);
    assert!(host_norm > 0.0 && seed_norm > 0.0);
    let rel = |a: f64, b: f64| (a - b).abs() / b;
    assert!(rel(report.host_grad_norm.expect("step grads given"), host_norm) < 1e-5, "{report:?} vs {host_norm}");
    assert!(rel(report.seed_grad_norm.expect("step grads given"), seed_norm) < 1e-5, "{report:?} vs {seed_norm}");
    // The injected (mock, never advanced) clock timed the check.
    assert_eq!(report.elapsed_ms, 0.0);
    let counters = monitor.counters();
    assert_eq!((counters.checks, counters.violations, counters.nan_outputs, counters.skipped), (1, 0, 0, 0));

    // Without the step's gradients: still clean, the dot product over no reached variable is 0,
    // and no norms are reported.
    let report = monitor.check(8, Stage::SeedStageTraining, &Probe::rerun(&branch.input, &kernel))?;
    assert_eq!(report.verdict, IsolationVerdict::Clean);
    assert_eq!(report.dot_product, Some(0.0));
    assert_eq!((report.host_grad_norm, report.seed_grad_norm), (None, None));
    Ok(())
}

pub(crate) fn monitored_stages_are_clean_with_output_probe(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    let mut monitor = f.monitor()?;
    for (stage, mode) in [
        (Stage::SeedStageTraining, SlotMode::StraightThrough),
        (Stage::SeedStageBlending, SlotMode::Blend { alpha: 0.5 }),
        (Stage::SeedStageShadowing, SlotMode::Full),
        (Stage::SeedStageProbationary, SlotMode::Full),
    ] {
        let h = f.host_activation()?;
        let slot = slot_forward(mode, &h, &kernel)?;
        let branch = slot.seed.as_ref().expect("seed runs in monitored stages");
        // The residual seed output `input + delta`, graph attached.
        let seed_out = branch.input.add(&branch.delta)?;
        let report = monitor.check(0, stage, &Probe::from_output(&seed_out))?;
        ensure!(report.verdict == IsolationVerdict::Clean, "{stage:?}: {report:?}");
        ensure!(report.dot_product == Some(0.0), "{stage:?}: {report:?}");
    }
    assert_eq!(monitor.counters().checks, 4);
    assert_eq!(monitor.counters().violations, 0);
    Ok(())
}

pub(crate) fn shared_parameter_is_a_violation_naming_it(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    // A seed kernel that (wrongly) reuses the host's first weight matrix.
    let kernel = |t: &Tensor| t.matmul(f.l1.w.as_tensor());
    let seed_vars = vec![("seed.w".to_string(), f.l1.w.clone()), ("seed.s1.w".to_string(), f.s1.w.clone())];
    let mut monitor = IsolationMonitor::new(f.host_vars(), seed_vars, MonitorConfig::default())?;
    assert_eq!(monitor.shared_parameters(), ["host.l1.w".to_string()]);

    let h = f.host_activation()?;
    let slot = slot_forward(SlotMode::Blend { alpha: 0.5 }, &h, &kernel)?;
    let grads = f.loss(&slot.output)?.backward()?;
    let branch = slot.seed.as_ref().expect("seed runs in BLENDING");
    let probe = Probe::rerun(&branch.input, &kernel).with_step_grads(&grads);
    let report = monitor.check(0, Stage::SeedStageBlending, &probe)?;

    assert!(report.is_violation(), "{report:?}");
    let reasons = reasons(&report.verdict);
    assert!(reasons.contains(&ViolationReason::SharedParameters { names: vec!["host.l1.w".into()] }));
    assert!(reasons.contains(&ViolationReason::ProbeReachedHost { names: vec!["host.l1.w".into()] }));
    assert_eq!(report.offending, ["host.l1.w".to_string()]);
    // The host's step gradient and the probe's meet on the shared matrix.
    assert_ne!(report.dot_product.expect("step grads given"), 0.0);
    assert_eq!(monitor.counters().violations, 1);
    Ok(())
}

pub(crate) fn undetached_input_is_a_violation(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    let mut monitor = f.monitor()?;
    // Built the wrong way on purpose: the seed reads the host activation without detaching it.
    let h = f.host_activation()?;
    let leaky_output = seed_output(&h, &kernel)?;
    let expected = vec!["host.l1.w".to_string(), "host.l1.b".to_string()];

    for (what, probe) in [("rerun", Probe::rerun(&h, &kernel)), ("output", Probe::from_output(&leaky_output))] {
        let report = monitor.check(0, Stage::SeedStageTraining, &probe)?;
        ensure!(report.is_violation(), "{what}: {report:?}");
        ensure!(
            reasons(&report.verdict) == [ViolationReason::ProbeReachedHost { names: expected.clone() }],
            "{what}: {report:?}"
        );
        ensure!(report.offending == expected, "{what}: {report:?}");
        // Reached host variables but no step gradients: the dot product is unknown.
        ensure!(report.dot_product.is_none(), "{what}: {report:?}");
    }
    assert_eq!(monitor.counters().violations, 2);
    Ok(())
}

pub(crate) fn training_keeps_host_gradients_and_trains_the_seed(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);

    // Without a seed.
    let plain_out = f.l2.forward(&f.host_activation()?)?;
    let plain = f.loss(&f.host_activation()?)?.backward()?;

    // With the seed in TRAINING.
    let h = f.host_activation()?;
    let slot = slot_forward(SlotMode::StraightThrough, &h, &kernel)?;
    assert_eq!(max_abs_diff(&slot.output, &h)?, 0.0, "TRAINING forward value is the host activation");
    assert_eq!(max_abs_diff(&f.l2.forward(&slot.output)?, &plain_out)?, 0.0);
    let with_seed = f.loss(&slot.output)?.backward()?;

    for (name, var) in f.host_vars() {
        let a = plain.get(&var).expect("host var has a gradient without seed");
        let b = with_seed.get(&var).expect("host var has a gradient with seed");
        ensure!(to_bits(a)? == to_bits(b)?, "{name}: host gradient is not bit-identical to the model without seed");
        ensure!(abs_sum(a)? > 0.0, "{name}: host gradient is zero");
    }
    for (name, var) in f.seed_vars() {
        let g = with_seed.get(&var).expect("seed var receives a gradient in TRAINING");
        ensure!(abs_sum(g)? > 0.0, "{name}: seed gradient is zero");
    }
    Ok(())
}

pub(crate) fn blending_keeps_the_host_gradient_and_scales_the_seed_gradient(dev: &Device) -> Result<()> {
    let alpha = 0.3;
    // The blend itself: host branch and seed delta as variables, a non-uniform upstream gradient.
    let host = Var::from_tensor(&det(dev, (BATCH, WIDTH), 10, 1.0)?)?;
    let delta = Var::from_tensor(&det(dev, (BATCH, WIDTH), 11, 1.0)?)?;
    let upstream = det(dev, (BATCH, WIDTH), 12, 2.0)?;
    let out = blend(host.as_tensor(), delta.as_tensor(), alpha)?;
    let grads = out.mul(&upstream)?.sum_all()?.backward()?;
    let host_grad = grads.get(&host).expect("the host branch is never detached");
    assert_eq!(to_bits(host_grad)?, to_bits(&upstream)?, "host gets the upstream gradient unchanged");
    let delta_grad = grads.get(&delta).expect("seed receives a gradient");
    let diff = max_abs_diff(delta_grad, &upstream.affine(alpha, 0.0)?)?;
    assert!(diff <= 1e-6, "seed gradient is alpha x upstream (diff {diff})");

    // The slot in BLENDING: the host layers before the slot train (identity path), as do the
    // layer after it and the seed.
    let f = Fixture::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    let slot = slot_forward(SlotMode::Blend { alpha }, &f.host_activation()?, &kernel)?;
    let grads = f.loss(&slot.output)?.backward()?;
    assert!(abs_sum(&grad_or_zero(&grads, &f.l1.w)?)? > 0.0, "the layer before the slot trains");
    assert!(abs_sum(&grad_or_zero(&grads, &f.l1.b)?)? > 0.0);
    assert!(abs_sum(&grad_or_zero(&grads, &f.l2.w)?)? > 0.0, "the layer after the slot trains");
    assert!(abs_sum(&grad_or_zero(&grads, &f.s2.w)?)? > 0.0, "the seed trains");
    Ok(())
}

pub(crate) fn blend_clamps_alpha(dev: &Device) -> Result<()> {
    let host = det(dev, (BATCH, WIDTH), 20, 1.0)?;
    let delta = det(dev, (BATCH, WIDTH), 21, 1.0)?;
    assert_eq!(max_abs_diff(&blend(&host, &delta, 1.7)?, &host.add(&delta)?)?, 0.0);
    assert_eq!(max_abs_diff(&blend(&host, &delta, -0.4)?, &host)?, 0.0);
    let half = blend(&host, &delta, 0.5)?;
    assert!(max_abs_diff(&half, &host.add(&delta.affine(0.5, 0.0)?)?)? <= 1e-6);
    assert!(matches!(blend(&host, &delta, f64::NAN), Err(Error::InvalidAlpha { .. })));
    Ok(())
}

pub(crate) fn nan_seed_output_is_reported(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let mut monitor = f.monitor()?;
    let h = f.host_activation()?;

    // A kernel that produces NaN everywhere: caught on the probe row alone.
    let nan_kernel = |t: &Tensor| t.affine(1.0, f64::NAN);
    let input = h.detach();
    let report = monitor.check(0, Stage::SeedStageTraining, &Probe::rerun(&input, &nan_kernel))?;
    assert!(report.nan_output);
    assert_eq!(report.verdict, IsolationVerdict::Clean, "NaN is reported, not an isolation violation");

    // An infinity in one row other than the probe row: seen only through the full output.
    let finite_kernel = |t: &Tensor| f.kernel(t);
    let mut rows = vec![1f32; BATCH * WIDTH];
    rows[3 * WIDTH + 5] = f32::INFINITY;
    let full = Tensor::from_vec(rows, (BATCH, WIDTH), dev)?;
    let row_only = monitor.check(1, Stage::SeedStageBlending, &Probe::rerun(&input, &finite_kernel))?;
    assert!(!row_only.nan_output);
    let with_full =
        monitor.check(2, Stage::SeedStageBlending, &Probe::rerun(&input, &finite_kernel).with_seed_output(&full))?;
    assert!(with_full.nan_output);
    assert_eq!(monitor.counters().nan_outputs, 2);
    assert_eq!(monitor.counters().checks, 3);
    Ok(())
}

pub(crate) fn stages_outside_d6_are_not_checked(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    // Even a leaky probe is not checked outside the monitored stages.
    let h = f.host_activation()?;
    let mut monitor = f.monitor()?;
    let mut checked = 0;
    for &stage in Stage::ALL {
        let report = monitor.check(0, stage, &Probe::rerun(&h, &kernel))?;
        let monitored = matches!(
            stage,
            Stage::SeedStageTraining
                | Stage::SeedStageBlending
                | Stage::SeedStageShadowing
                | Stage::SeedStageProbationary
        );
        if monitored {
            checked += 1;
            ensure!(report.is_violation(), "{stage:?} must be checked: {report:?}");
        } else {
            ensure!(
                report.verdict == IsolationVerdict::Skipped { reason: SkipReason::StageNotMonitored },
                "{stage:?} must be skipped: {report:?}"
            );
            ensure!(report.dot_product.is_none() && report.offending.is_empty() && report.elapsed_ms == 0.0);
        }
    }
    let counters = monitor.counters();
    assert_eq!(checked, 4);
    assert_eq!(counters.checks, 4);
    assert_eq!(counters.violations, 4);
    assert_eq!(counters.skipped, Stage::ALL.len() as u64 - 4);
    Ok(())
}

pub(crate) fn sampling_checks_every_nth_step(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    let input = f.host_activation()?.detach();
    let config = MonitorConfig { sample_every: 3, ..MonitorConfig::default() };
    let mut monitor = IsolationMonitor::new(f.host_vars(), f.seed_vars(), config)?;
    let mut ran = Vec::new();
    for step in 0..7 {
        assert_eq!(monitor.should_check(step), step % 3 == 0);
        let report = monitor.check(step, Stage::SeedStageTraining, &Probe::rerun(&input, &kernel))?;
        if report.is_skipped() {
            assert_eq!(report.verdict, IsolationVerdict::Skipped { reason: SkipReason::NotSampled });
        } else {
            ran.push(step);
        }
    }
    assert_eq!(ran, [0, 3, 6]);
    assert_eq!((monitor.counters().checks, monitor.counters().skipped), (3, 4));
    monitor.reset_counters();
    assert_eq!(monitor.counters(), Default::default());

    let bad = MonitorConfig { sample_every: 0, ..MonitorConfig::default() };
    let err = IsolationMonitor::new(f.host_vars(), f.seed_vars(), bad).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { field: "sample_every", .. }));
    let bad = MonitorConfig { leak_threshold: f64::NAN, ..MonitorConfig::default() };
    assert!(IsolationMonitor::new(f.host_vars(), f.seed_vars(), bad).is_err());
    Ok(())
}

pub(crate) fn slot_forward_follows_the_mode_table(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    let h = f.host_activation()?;
    let delta = f.kernel(&h.detach())?;
    let with = |scale: f64| -> Result<Tensor> { Ok(h.add(&delta.affine(scale, 0.0)?)?) };

    // Transparent: the host activation, the same tensor; the kernel is not run.
    let slot = slot_forward(SlotMode::Transparent, &h, &kernel)?;
    ensure!(slot.output.id() == h.id() && slot.seed.is_none(), "Transparent");

    let cases = [
        (SlotMode::StraightThrough, h.clone()),
        (SlotMode::Blend { alpha: 0.25 }, with(0.25)?),
        (SlotMode::Blend { alpha: 1.5 }, with(1.0)?),
        (SlotMode::Blend { alpha: -1.0 }, h.clone()),
        (SlotMode::Full, with(1.0)?),
        (SlotMode::Fossil { grad_scale: 0.0 }, with(1.0)?),
        (SlotMode::Fossil { grad_scale: 0.5 }, with(1.0)?),
        (SlotMode::Fossil { grad_scale: 1.0 }, with(1.0)?),
        (SlotMode::BlendOut { alpha: 0.6 }, with(0.6)?),
    ];
    for (mode, expected) in cases {
        let slot = slot_forward(mode, &h, &kernel)?;
        let branch = slot.seed.as_ref().expect("seed runs");
        let diff = max_abs_diff(&slot.output, &expected)?;
        ensure!(diff <= 1e-6, "{mode:?}: output differs by {diff}");
        ensure!(max_abs_diff(&branch.delta, &delta)? <= 1e-6, "{mode:?}: seed delta");
        ensure!(max_abs_diff(&branch.input, &h)? == 0.0, "{mode:?}: the kernel reads h's values");
        match mode {
            SlotMode::Fossil { grad_scale: 1.0 } => {
                ensure!(branch.input.id() == h.id(), "FOSSILIZED at full scale reads the host activation itself");
            }
            SlotMode::Fossil { grad_scale } if grad_scale > 0.0 => {
                ensure!(branch.input.track_op(), "FOSSILIZED mid-ramp reads a connected input");
            }
            _ => ensure!(!branch.input.track_op(), "{mode:?}: the seed input is detached"),
        }
    }
    Ok(())
}

pub(crate) fn fossilized_seed_reads_the_undetached_host(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    let slot = slot_forward(SlotMode::Fossil { grad_scale: 1.0 }, &f.host_activation()?, &kernel)?;
    let grads = f.loss(&slot.output)?.backward()?;
    assert!(abs_sum(&grad_or_zero(&grads, &f.l1.w)?)? > 0.0, "host layers before the slot train");
    assert!(abs_sum(&grad_or_zero(&grads, &f.s1.w)?)? > 0.0, "the fossilized seed trains with the host");
    // The seed's path into the host is open: the layer before the slot gets more than the
    // identity path (the same forward with the kernel reading the detached activation).
    let detached = slot_forward(SlotMode::Fossil { grad_scale: 0.0 }, &f.host_activation()?, &kernel)?;
    let identity_only = f.loss(&detached.output)?.backward()?;
    assert!(max_abs_diff(&grad_or_zero(&grads, &f.l1.w)?, &grad_or_zero(&identity_only, &f.l1.w)?)? > 0.0);
    // Monitoring has ended for the fossilized seed: even this connected probe is skipped.
    let branch = slot.seed.as_ref().expect("seed runs");
    let report = f.monitor()?.check(0, Stage::SeedStageFossilized, &Probe::rerun(&branch.input, &kernel))?;
    assert!(report.is_skipped());
    Ok(())
}

pub(crate) fn bad_shapes_are_typed_errors(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let h = f.host_activation()?;
    // A kernel whose delta does not match its input.
    let narrow_kernel = |t: &Tensor| t.narrow(1, 0, 4);
    let err = slot_forward(SlotMode::StraightThrough, &h, &narrow_kernel).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { ref expected, ref actual, .. }
        if expected == &[BATCH, WIDTH] && actual == &[BATCH, 4]));

    // A seed kernel error comes back typed.
    let failing = |t: &Tensor| t.matmul(&Tensor::zeros((3, 3), DType::F32, t.device())?);
    let err = slot_forward(SlotMode::Blend { alpha: 0.5 }, &h, &failing).unwrap_err();
    assert!(matches!(err, Error::Candle { op: "seed kernel", .. }), "{err}");
    // Bad scalars are typed errors.
    let kernel = |t: &Tensor| f.kernel(t);
    let err = slot_forward(SlotMode::Blend { alpha: f64::NAN }, &h, &kernel).unwrap_err();
    assert!(matches!(err, Error::InvalidAlpha { .. }), "{err}");
    let err = slot_forward(SlotMode::BlendOut { alpha: f64::INFINITY }, &h, &kernel).unwrap_err();
    assert!(matches!(err, Error::InvalidAlpha { .. }), "{err}");
    let err = slot_forward(SlotMode::Fossil { grad_scale: f64::NAN }, &h, &kernel).unwrap_err();
    assert!(matches!(err, Error::InvalidGradScale { .. }), "{err}");

    // Probes need a batch dimension with a row; a failed check changes no counter.
    let mut monitor = f.monitor()?;
    let flat = Tensor::zeros(WIDTH, DType::F32, dev)?;
    let empty = Tensor::zeros((0, WIDTH), DType::F32, dev)?;
    for t in [&flat, &empty] {
        let err = monitor.check(0, Stage::SeedStageTraining, &Probe::rerun(t, &kernel)).unwrap_err();
        ensure!(matches!(err, Error::ProbeShape { .. }), "{err}");
    }
    assert_eq!(monitor.counters(), Default::default());
    Ok(())
}

/// `measure` reads nothing and `conclude` gives what `check` gives; a wrong number of values is
/// a typed error that counts nothing.
pub(crate) fn measure_then_conclude_is_check(dev: &Device) -> Result<()> {
    let f = Fixture::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    let h = f.host_activation()?;
    let leaky_output = seed_output(&h, &kernel)?;
    let mut monitor = f.monitor()?;
    let probe = Probe::from_output(&leaky_output);
    let Measured::Pending(pending) = monitor.measure(0, Stage::SeedStageTraining, &probe)? else {
        anyhow::bail!("a monitored stage on a sampled step is measured");
    };
    ensure!(monitor.counters().checks == 0, "measuring counts nothing");
    let values = read_scalars(pending.scalars())?;
    let short = &values[..values.len() - 1];
    let Measured::Pending(again) = monitor.measure(0, Stage::SeedStageTraining, &probe)? else {
        anyhow::bail!("measured again");
    };
    ensure!(matches!(monitor.conclude(again, short), Err(Error::ReadoutLength { .. })));
    ensure!(monitor.counters().checks == 0, "a refused conclusion counts nothing");
    let report = monitor.conclude(pending, &values)?;
    ensure!(report.is_violation() && report.offending == ["host.l1.w", "host.l1.b"], "{report:?}");
    let checked = monitor.check(0, Stage::SeedStageTraining, &probe)?;
    ensure!(checked.verdict == report.verdict && checked.offending == report.offending, "{checked:?}");
    ensure!(monitor.counters().checks == 2 && monitor.counters().violations == 2);
    ensure!(matches!(
        monitor.measure(0, Stage::SeedStageFossilized, &probe)?,
        Measured::Skipped(r) if r.is_skipped()
    ));
    Ok(())
}
