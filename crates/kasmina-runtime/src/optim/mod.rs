//! A resumable AdamW: the optimiser of every seed, and one a trainer may use for its host.
//!
//! It computes exactly what `candle_nn::optim::AdamW` computes (the same tensor operations in
//! the same order, so the same bits), and it also hands out and takes back its state — the
//! step count, the hyper-parameters and both moments of every variable ([`AdamWState`]) —
//! which candle-nn's keeps private. A checkpoint needs that state: without it a resumed run
//! restarts its moments from zero and is no longer the run it continues (decisions D13).
//!
//! On the CPU, for f32 and f64, the update runs in place in three passes and allocates nothing
//! ([`fused`], decisions D24); the bits are the same.

mod fused;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use candle_nn::optim::{Optimizer, ParamsAdamW};

/// One variable and its first and second moments.
#[derive(Debug)]
struct Slot {
    var: Var,
    m: Var,
    v: Var,
}

/// AdamW with decoupled weight decay, resumable (see the module documentation).
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    step_t: u64,
    params: ParamsAdamW,
}

/// What an [`AdamW`] carries from one step to the next: its step count, its hyper-parameters
/// and, per variable in the optimiser's order, the first and second moments (deep copies:
/// later steps do not change a state taken earlier).
#[derive(Debug, Clone)]
pub struct AdamWState {
    /// Steps taken.
    pub step: u64,
    /// Learning rate, betas, epsilon, weight decay.
    pub params: ParamsAdamW,
    /// `(first moment, second moment)` of each variable, in the order of [`AdamW::vars`].
    pub moments: Vec<(Tensor, Tensor)>,
}

impl Optimizer for AdamW {
    type Config = ParamsAdamW;

    /// Non-float variables are left out, as candle-nn's AdamW does.
    fn new(vars: Vec<Var>, params: ParamsAdamW) -> Result<Self> {
        let slots = vars
            .into_iter()
            .filter(|var| var.dtype().is_float())
            .map(|var| {
                let m = Var::zeros(var.shape(), var.dtype(), var.device())?;
                let v = Var::zeros(var.shape(), var.dtype(), var.device())?;
                Ok(Slot { var, m, v })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { slots, step_t: 0, params })
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_t += 1;
        let p = &self.params;
        let t = i32::try_from(self.step_t).unwrap_or(i32::MAX);
        let scale_m = 1f64 / (1f64 - p.beta1.powi(t));
        let scale_v = 1f64 / (1f64 - p.beta2.powi(t));
        let consts = fused::StepConsts {
            beta1: p.beta1,
            beta2: p.beta2,
            scale_m,
            scale_v,
            decay: 1f64 - p.lr * p.weight_decay,
            eps: p.eps,
            lr: p.lr,
        };
        for slot in &self.slots {
            let Some(g) = grads.get(&slot.var) else { continue };
            if fused::applies(slot.var.as_tensor(), slot.m.as_tensor(), slot.v.as_tensor(), g) {
                fused::step(slot.var.as_tensor(), slot.m.as_tensor(), slot.v.as_tensor(), g, consts)?;
                continue;
            }
            let next_m = ((slot.m.as_tensor() * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let next_v = ((slot.v.as_tensor() * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let next_theta = (slot.var.as_tensor() * (1f64 - p.lr * p.weight_decay))?;
            let adjusted = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            let next_theta = (next_theta - (adjusted * p.lr)?)?;
            slot.m.set(&next_m)?;
            slot.v.set(&next_v)?;
            slot.var.set(&next_theta)?;
        }
        Ok(())
    }
}

impl AdamW {
    /// The hyper-parameters.
    pub fn params(&self) -> &ParamsAdamW {
        &self.params
    }

    /// Replaces the hyper-parameters (the moments and the step count stay).
    pub fn set_params(&mut self, params: ParamsAdamW) {
        self.params = params;
    }

    /// The variables it trains, in its order.
    pub fn vars(&self) -> Vec<Var> {
        self.slots.iter().map(|s| s.var.clone()).collect()
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step_t
    }

    /// A deep copy of its state.
    pub fn state(&self) -> Result<AdamWState> {
        let moments =
            self.slots.iter().map(|s| Ok((s.m.as_tensor().copy()?, s.v.as_tensor().copy()?))).collect::<Result<_>>()?;
        Ok(AdamWState { step: self.step_t, params: self.params.clone(), moments })
    }

    /// Takes `state` back (from [`state`](Self::state), possibly of another process). Checked
    /// first: one pair of moments per variable, each of its variable's shape and dtype;
    /// on an error nothing changed. The moments are moved to the variables' device.
    pub fn load_state(&mut self, state: &AdamWState) -> Result<()> {
        if state.moments.len() != self.slots.len() {
            return Err(candle_core::Error::Msg(format!(
                "optimiser state for {} variables, the optimiser has {}",
                state.moments.len(),
                self.slots.len()
            )));
        }
        let mut staged = Vec::with_capacity(self.slots.len());
        for (i, (slot, (m, v))) in self.slots.iter().zip(&state.moments).enumerate() {
            for (name, t) in [("first", m), ("second", v)] {
                if t.dims() != slot.var.dims() || t.dtype() != slot.var.dtype() {
                    return Err(candle_core::Error::Msg(format!(
                        "{name} moment of variable {i} is {:?} {:?}, the variable is {:?} {:?}",
                        t.dims(),
                        t.dtype(),
                        slot.var.dims(),
                        slot.var.dtype()
                    )));
                }
            }
            staged.push((m.to_device(slot.var.device())?, v.to_device(slot.var.device())?));
        }
        for (slot, (m, v)) in self.slots.iter().zip(staged) {
            slot.m.set(&m)?;
            slot.v.set(&v)?;
        }
        self.step_t = state.step;
        self.params = state.params.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    fn problem(seed: u64) -> (Var, Var, Tensor, Tensor) {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[[0.3f32, -0.2], [0.1, 0.4]], &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[0.05f32, -0.1], &dev).unwrap()).unwrap();
        let x = Tensor::new(&[[1.0f32, 2.0], [-1.0, 0.5], [0.25, -2.0]], &dev).unwrap();
        let y = (x.affine(0.7, seed as f64 * 0.01).unwrap()).tanh().unwrap();
        (w, b, x, y)
    }

    fn loss(w: &Var, b: &Var, x: &Tensor, y: &Tensor) -> Tensor {
        let out = x.matmul(&w.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
        (out - y).unwrap().sqr().unwrap().mean_all().unwrap()
    }

    fn bits(v: &Var) -> Vec<u32> {
        v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|f| f.to_bits()).collect()
    }

    #[test]
    fn it_computes_what_candle_nn_computes_to_the_bit() {
        let params = ParamsAdamW { lr: 0.05, weight_decay: 0.01, ..ParamsAdamW::default() };
        let (w1, b1, x, y) = problem(1);
        let (w2, b2, _, _) = problem(1);
        let mut ours = AdamW::new(vec![w1.clone(), b1.clone()], params.clone()).unwrap();
        let mut theirs = candle_nn::optim::AdamW::new(vec![w2.clone(), b2.clone()], params).unwrap();
        for _ in 0..50 {
            ours.step(&loss(&w1, &b1, &x, &y).backward().unwrap()).unwrap();
            theirs.step(&loss(&w2, &b2, &x, &y).backward().unwrap()).unwrap();
        }
        assert_eq!((bits(&w1), bits(&b1)), (bits(&w2), bits(&b2)));
        assert_eq!(ours.steps(), 50);
    }

    #[test]
    fn the_in_place_step_is_candle_nn_to_the_bit_in_f64_and_without_weight_decay() {
        let to64 = |v: &Var| Var::from_tensor(&v.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
        let (w, b, x, y) = problem(4);
        let (x, y) = (x.to_dtype(DType::F64).unwrap(), y.to_dtype(DType::F64).unwrap());
        let (w1, b1, w2, b2) = (to64(&w), to64(&b), to64(&w), to64(&b));
        let params = ParamsAdamW { lr: 0.01, weight_decay: 0.0, ..ParamsAdamW::default() };
        let mut ours = AdamW::new(vec![w1.clone(), b1.clone()], params.clone()).unwrap();
        let mut theirs = candle_nn::optim::AdamW::new(vec![w2.clone(), b2.clone()], params).unwrap();
        assert!(fused::applies(w1.as_tensor(), w1.as_tensor(), w1.as_tensor(), w1.as_tensor()));
        for _ in 0..30 {
            ours.step(&loss(&w1, &b1, &x, &y).backward().unwrap()).unwrap();
            theirs.step(&loss(&w2, &b2, &x, &y).backward().unwrap()).unwrap();
        }
        let bits64 = |v: &Var| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
                .iter()
                .map(|f| f.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!((bits64(&w1), bits64(&b1)), (bits64(&w2), bits64(&b2)));
    }

    #[test]
    fn other_dtypes_take_the_tensor_path() {
        let w = Var::zeros((2, 2), DType::BF16, &Device::Cpu).unwrap();
        assert!(!fused::applies(w.as_tensor(), w.as_tensor(), w.as_tensor(), w.as_tensor()));
        let t = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(!fused::applies(&t, &t, &t, &t.t().unwrap()), "a transposed gradient is not contiguous");
    }

    #[test]
    fn a_state_taken_and_loaded_into_a_fresh_optimiser_continues_the_same_run() {
        let params = ParamsAdamW { lr: 0.05, ..ParamsAdamW::default() };
        let (w, b, x, y) = problem(2);
        let mut opt = AdamW::new(vec![w.clone(), b.clone()], params.clone()).unwrap();
        for _ in 0..10 {
            opt.step(&loss(&w, &b, &x, &y).backward().unwrap()).unwrap();
        }
        let state = opt.state().unwrap();
        let saved = (w.as_tensor().copy().unwrap(), b.as_tensor().copy().unwrap());
        for _ in 0..10 {
            opt.step(&loss(&w, &b, &x, &y).backward().unwrap()).unwrap();
        }
        // "Another process": new variables holding the saved weights, a new optimiser.
        let (w2, b2) = (Var::from_tensor(&saved.0).unwrap(), Var::from_tensor(&saved.1).unwrap());
        let mut resumed = AdamW::new(vec![w2.clone(), b2.clone()], ParamsAdamW::default()).unwrap();
        resumed.load_state(&state).unwrap();
        assert_eq!(resumed.params().lr, 0.05);
        for _ in 0..10 {
            resumed.step(&loss(&w2, &b2, &x, &y).backward().unwrap()).unwrap();
        }
        assert_eq!((bits(&w), bits(&b)), (bits(&w2), bits(&b2)));
        assert_eq!(resumed.steps(), 20);
    }

    #[test]
    fn a_state_of_another_shape_is_refused_and_changes_nothing() {
        let (w, b, x, y) = problem(3);
        let mut opt = AdamW::new(vec![w.clone(), b.clone()], ParamsAdamW::default()).unwrap();
        opt.step(&loss(&w, &b, &x, &y).backward().unwrap()).unwrap();
        let before = opt.state().unwrap();
        let mut bad = before.clone();
        bad.moments[1].0 = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        bad.step = 99;
        let err = opt.load_state(&bad).unwrap_err().to_string();
        assert!(err.contains("first moment of variable 1"), "{err}");
        bad.moments.pop();
        assert!(opt.load_state(&bad).unwrap_err().to_string().contains("for 1 variables"));
        assert_eq!(opt.steps(), 1);
        let after = opt.state().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&after.moments[0].0), flat(&before.moments[0].0));
    }
}
