//! The revised D4 slot forward, mode by mode: values and gradients against reference graphs.
//!
//! The model: an upstream host variable `W` produces `h = x·W`; the slot sits on `h`; a
//! downstream host variable `V` reads the slot's output; the loss is either the mean squared error
//! of `out·V` against a target (nonlinear in `out`) or `Σ (out·V) ⊙ u` for a fixed `u` (linear:
//! the upstream gradient of `out` is `u·Vᵀ` whatever the mode and the value of `out`). The seed's kernel is one linear map,
//! `d = input·K`, with `K` a candle `Var`.

use anyhow::{Result, ensure};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use kasmina_isolation::{IsolationMonitor, IsolationVerdict, MonitorConfig, Probe, SlotMode, slot_forward};
use leyline::SeedLifecycleStage as Stage;

const BATCH: usize = 5;
const IN: usize = 6;
const WIDTH: usize = 4;
const OUT: usize = 3;

struct Tiny {
    x: Tensor,
    target: Tensor,
    /// The fixed weights of the linear loss.
    u: Tensor,
    w: Var,
    v: Var,
    k: Var,
}

impl Tiny {
    fn new(dev: &Device) -> Result<Self> {
        Ok(Self {
            x: Tensor::randn(0f32, 1.0, (BATCH, IN), dev)?,
            target: Tensor::randn(0f32, 1.0, (BATCH, OUT), dev)?,
            u: Tensor::randn(0f32, 1.0, (BATCH, OUT), dev)?,
            w: Var::randn(0f32, 0.5, (IN, WIDTH), dev)?,
            v: Var::randn(0f32, 0.5, (WIDTH, OUT), dev)?,
            k: Var::randn(0f32, 0.5, (WIDTH, WIDTH), dev)?,
        })
    }

    /// A fresh graph for the host activation at the slot.
    fn h(&self) -> Result<Tensor> {
        Ok(self.x.matmul(self.w.as_tensor())?)
    }

    fn kernel(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        t.matmul(self.k.as_tensor())
    }

    /// The nonlinear loss, backpropagated.
    fn mse(&self, out: &Tensor) -> Result<GradStore> {
        Ok(out.matmul(self.v.as_tensor())?.sub(&self.target)?.sqr()?.mean_all()?.backward()?)
    }

    /// The linear loss `Σ (out·V) ⊙ u`, backpropagated.
    fn linear(&self, out: &Tensor) -> Result<GradStore> {
        Ok(out.matmul(self.v.as_tensor())?.mul(&self.u)?.sum_all()?.backward()?)
    }

    /// The linear loss's gradient at the slot's output, `u·Vᵀ`.
    fn upstream(&self) -> Result<Tensor> {
        Ok(self.u.matmul(&self.v.as_tensor().t()?)?)
    }

    fn host_vars(&self) -> Vec<(String, Var)> {
        vec![("host.w".into(), self.w.clone()), ("host.v".into(), self.v.clone())]
    }

    fn monitor(&self) -> Result<IsolationMonitor> {
        Ok(IsolationMonitor::new(self.host_vars(), vec![("seed.k".into(), self.k.clone())], MonitorConfig::default())?)
    }
}

/// A constant (graph-free, fresh storage) copy of `t`.
fn constant(t: &Tensor) -> Result<Tensor> {
    let data = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(Tensor::from_vec(data, t.dims(), t.device())?)
}

fn bits(t: &Tensor) -> Result<Vec<u32>> {
    Ok(values(t)?.into_iter().map(f32::to_bits).collect())
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn grad<'a>(grads: &'a GradStore, var: &Var, what: &str) -> Result<&'a Tensor> {
    grads.get(var).ok_or_else(|| anyhow::anyhow!("{what}: no gradient"))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok(a.sub(b)?.abs()?.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

fn abs_sum(t: &Tensor) -> Result<f64> {
    Ok(t.abs()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// `max |a - b| <= tol * max(1, max |b|)`.
fn close(a: &Tensor, b: &Tensor, tol: f64, what: &str) -> Result<()> {
    let scale = b.abs()?.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.max(1.0);
    let diff = max_abs_diff(a, b)?;
    ensure!(diff <= tol * scale, "{what}: differs by {diff} (scale {scale})");
    Ok(())
}

/// Every host variable's gradient is bit-identical in the two stores.
fn same_host_grads(f: &Tiny, a: &GradStore, b: &GradStore, what: &str) -> Result<()> {
    for (name, var) in f.host_vars() {
        let (ga, gb) = (grad(a, &var, what)?, grad(b, &var, what)?);
        ensure!(bits(ga)? == bits(gb)?, "{what}: {name}'s gradient is not bit-identical");
        ensure!(abs_sum(ga)? > 0.0, "{what}: {name}'s gradient is zero");
    }
    Ok(())
}

pub(crate) fn training_host_gradients_are_bit_identical(dev: &Device) -> Result<()> {
    let f = Tiny::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    for loss in [Tiny::mse, Tiny::linear] {
        // The same model without the seed: the loss on h directly.
        let h = f.h()?;
        let plain = loss(&f, &h)?;

        let h = f.h()?;
        let fwd = slot_forward(SlotMode::StraightThrough, &h, &kernel)?;
        ensure!(values(&fwd.output)? == values(&h)?, "TRAINING's value is h");
        let with_seed = loss(&f, &fwd.output)?;
        same_host_grads(&f, &plain, &with_seed, "TRAINING")?;

        // The seed receives the gradient h receives: dL/dK = sg(h)ᵀ · dL/dh (candle keeps no
        // gradient of an intermediate tensor: read dL/dh off a variable holding h's value).
        let h_var = Var::from_tensor(&constant(&h)?)?;
        let gh = grad(&loss(&f, h_var.as_tensor())?, &h_var, "dL/dh")?.clone();
        let expected = h.t()?.matmul(&gh)?;
        let gk = grad(&with_seed, &f.k, "TRAINING kernel")?;
        ensure!(abs_sum(gk)? > 0.0, "the kernel's gradient is zero");
        close(gk, &expected, 1e-6, "TRAINING kernel gradient")?;
    }
    Ok(())
}

pub(crate) fn blending_host_gradient_is_the_identity(dev: &Device) -> Result<()> {
    let f = Tiny::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    // The kernel's gradient at alpha 1 (Full), for the alpha scaling below (linear loss: the
    // upstream gradient is u·Vᵀ in every mode).
    let full_k = {
        let fwd = slot_forward(SlotMode::Full, &f.h()?, &kernel)?;
        grad(&f.linear(&fwd.output)?, &f.k, "Full kernel")?.clone()
    };
    for (mode, alpha) in
        [(SlotMode::Blend { alpha: 0.25 }, 0.25), (SlotMode::Blend { alpha: 0.7 }, 0.7), (SlotMode::Full, 1.0)]
    {
        let what = format!("{mode:?}");
        let h = f.h()?;
        let fwd = slot_forward(mode, &h, &kernel)?;
        let delta = &fwd.seed.as_ref().ok_or_else(|| anyhow::anyhow!("no seed branch"))?.delta;
        let grads = f.mse(&fwd.output)?;

        // The reference graph: h + alpha * c, with c a constant equal to d.
        let c = constant(delta)?;
        let h_ref = f.h()?;
        let out_ref = if alpha == 1.0 { (&h_ref + &c)? } else { (&h_ref + (&c * alpha)?)? };
        ensure!(bits(&fwd.output)? == bits(&out_ref)?, "{what}: value is h + alpha * d");
        let reference = f.mse(&out_ref)?;
        same_host_grads(&f, &reference, &grads, &what)?;
        ensure!(reference.get(&f.k).is_none(), "{what}: the reference graph has no seed");

        // The kernel's gradient is alpha times the upstream one: sg(h)ᵀ · (alpha u).
        let grads = f.linear(&slot_forward(mode, &f.h()?, &kernel)?.output)?;
        let gk = grad(&grads, &f.k, &what)?;
        close(gk, &h.detach().t()?.matmul(&(f.upstream()? * alpha)?)?, 1e-6, &what)?;
        close(gk, &(&full_k * alpha)?, 1e-6, &what)?;
    }
    Ok(())
}

pub(crate) fn fossil_scales_the_kernel_path_into_the_host(dev: &Device) -> Result<()> {
    let f = Tiny::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    let h_value = constant(&f.h()?)?;
    let expected_value = (&h_value + f.kernel(&h_value)?)?;

    // The two paths into W, each as its own graph (nonlinear loss; out has the same value in
    // each): the identity path `h + c_d` and the kernel path `c_h + delta(h)`.
    let d_value = constant(&f.kernel(&h_value)?)?;
    let identity = f.mse(&(&f.h()? + &d_value)?)?;
    let through_kernel = f.mse(&(&h_value + f.kernel(&f.h()?)?)?)?;
    let undetached = {
        let h = f.h()?;
        f.mse(&(&h + f.kernel(&h)?)?)?
    };

    for grad_scale in [0.0, 0.5, 1.0] {
        let what = format!("Fossil {{ grad_scale: {grad_scale} }}");
        let h = f.h()?;
        let fwd = slot_forward(SlotMode::Fossil { grad_scale }, &h, &kernel)?;
        close(&fwd.output, &expected_value, 1e-6, &what)?;
        let input = &fwd.seed.as_ref().ok_or_else(|| anyhow::anyhow!("no seed branch"))?.input;
        ensure!(values(input)? == values(&h)?, "{what}: the kernel input equals h in value");
        let grads = f.mse(&fwd.output)?;

        // W: identity path + grad_scale × kernel path.
        let expected_w = (grad(&identity, &f.w, "identity")? + (grad(&through_kernel, &f.w, "kernel")? * grad_scale)?)?;
        close(grad(&grads, &f.w, &what)?, &expected_w, 1e-6, &what)?;
        // The layers after the slot and the seed itself train as in the undetached model.
        close(grad(&grads, &f.v, &what)?, grad(&undetached, &f.v, "undetached")?, 1e-6, &what)?;
        close(grad(&grads, &f.k, &what)?, grad(&undetached, &f.k, "undetached")?, 1e-6, &what)?;

        // By hand, with the linear loss (g = u·Vᵀ at the output): dL/dW = xᵀ (g + grad_scale · g Kᵀ).
        let grads = f.linear(&slot_forward(SlotMode::Fossil { grad_scale }, &f.h()?, &kernel)?.output)?;
        let g = f.upstream()?;
        let gh = (&g + (g.matmul(&f.k.as_tensor().t()?)? * grad_scale)?)?;
        close(grad(&grads, &f.w, &what)?, &f.x.t()?.matmul(&gh)?, 1e-6, &what)?;
    }

    // grad_scale 1 is the undetached model `h + delta(h)`, bit for bit.
    let fwd = slot_forward(SlotMode::Fossil { grad_scale: 1.0 }, &f.h()?, &kernel)?;
    let grads = f.mse(&fwd.output)?;
    for var in [&f.w, &f.v, &f.k] {
        ensure!(bits(grad(&grads, var, "fossil")?)? == bits(grad(&undetached, var, "undetached")?)?);
    }
    Ok(())
}

pub(crate) fn blend_out_freezes_the_seed(dev: &Device) -> Result<()> {
    let f = Tiny::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    for alpha in [0.0, 0.4, 1.0] {
        let what = format!("BlendOut {{ alpha: {alpha} }}");
        let h = f.h()?;
        let fwd = slot_forward(SlotMode::BlendOut { alpha }, &h, &kernel)?;
        let delta = &fwd.seed.as_ref().ok_or_else(|| anyhow::anyhow!("no seed branch"))?.delta;
        let h_ref = f.h()?;
        let out_ref = (&h_ref + (&constant(delta)? * alpha)?)?;
        ensure!(bits(&fwd.output)? == bits(&out_ref)?, "{what}: value is h + alpha * d");
        let grads = f.mse(&fwd.output)?;
        let frozen = match grads.get(&f.k) {
            None => true,
            Some(g) => abs_sum(g)? == 0.0,
        };
        ensure!(frozen, "{what}: a gradient reached the kernel");
        // The host keeps its identity gradient.
        same_host_grads(&f, &f.mse(&out_ref)?, &grads, &what)?;
    }
    Ok(())
}

pub(crate) fn the_probe_reaches_no_host_variable_before_fossilized(dev: &Device) -> Result<()> {
    let f = Tiny::new(dev)?;
    let kernel = |t: &Tensor| f.kernel(t);
    let mut monitor = f.monitor()?;
    let modes = [
        (SlotMode::StraightThrough, Stage::SeedStageTraining),
        (SlotMode::Blend { alpha: 0.25 }, Stage::SeedStageBlending),
        (SlotMode::Blend { alpha: 0.7 }, Stage::SeedStageBlending),
        (SlotMode::Full, Stage::SeedStageShadowing),
        (SlotMode::Full, Stage::SeedStageProbationary),
    ];
    for (step, (mode, stage)) in (0u64..).zip(modes) {
        let fwd = slot_forward(mode, &f.h()?, &kernel)?;
        let grads = f.mse(&fwd.output)?;
        let branch = fwd.seed.as_ref().ok_or_else(|| anyhow::anyhow!("no seed branch"))?;
        ensure!(!branch.input.track_op(), "{mode:?}: the kernel input is detached");
        let probe = Probe::rerun(&branch.input, &kernel).with_seed_output(&branch.delta).with_step_grads(&grads);
        let report = monitor.check(step, stage, &probe)?;
        ensure!(report.verdict == IsolationVerdict::Clean, "{mode:?}: {report:?}");
        ensure!(report.dot_product == Some(0.0), "{mode:?}: {report:?}");
        ensure!(report.host_grad_norm.is_some_and(|n| n > 0.0), "{mode:?}: the host trains: {report:?}");
    }

    // The FOSSILIZED input is connected to the host (once its gradient path is open): were it
    // probed, the probe would see it.
    for (grad_scale, connected) in [(0.0, false), (0.5, true), (1.0, true)] {
        let fwd = slot_forward(SlotMode::Fossil { grad_scale }, &f.h()?, &kernel)?;
        let branch = fwd.seed.as_ref().ok_or_else(|| anyhow::anyhow!("no seed branch"))?;
        let report = monitor.check(0, Stage::SeedStageTraining, &Probe::rerun(&branch.input, &kernel))?;
        ensure!(report.is_violation() == connected, "grad_scale {grad_scale}: {report:?}");
    }
    Ok(())
}
