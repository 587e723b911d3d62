//! A small host model on a synthetic task it can only partly solve, and a training loop that
//! embeds Kasmina the way Esper's trainer does.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{Linear, Optimizer, VarBuilder, VarMap, linear, loss::cross_entropy};
use kasmina_runtime::reexports::security::{KeyRing, sign_command};
use kasmina_runtime::reexports::telemetry::{MemorySink, Telemetry, TelemetryConfig};
use kasmina_runtime::{
    BlueprintRuntime, EpochReport, Kasmina, KasminaConfig, SeedSlot, StepReport, blueprint::builtin,
};
use leyline::adaptation_command::Payload;
use leyline::{AdaptationCommand, CommandSeedOperation, CommandType, SeedOperation, SignedCommand, wkt::Timestamp};

pub const SECRET: &str = "kasmina-it-secret";
pub const WIDTH: usize = 16;
pub const NOW_UNIX: u64 = 1_790_000_000;

/// XOR-like binary task in 8 dimensions: label = (x0·x1 > 0). A linear host cannot beat chance
/// by much; a residual MLP seed in its hidden layer can.
pub fn dataset(n: usize, seed: u64, device: &Device) -> (Tensor, Tensor) {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) as f32 * 2.0 - 1.0
    };
    let mut xs = Vec::with_capacity(n * 8);
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f32> = (0..8).map(|_| next()).collect();
        ys.push(u32::from(row[0] * row[1] > 0.0));
        xs.extend(row);
    }
    (Tensor::from_vec(xs, (n, 8), device).unwrap(), Tensor::from_vec(ys, n, device).unwrap())
}

/// The host: linear 8→16, the slot, linear 16→2 (no non-linearity: it can only partly solve
/// the task).
pub struct Host {
    pub varmap: VarMap,
    pub l1: Linear,
    pub l2: Linear,
    /// The host's dtype (its weights and activations; inputs are cast to it).
    pub dtype: DType,
}

impl Host {
    pub fn new(device: &Device) -> Self {
        Self::with_dtype(device, DType::F32)
    }

    pub fn with_dtype(device: &Device, dtype: DType) -> Self {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, dtype, device);
        let l1 = linear(8, WIDTH, vb.pp("l1")).unwrap();
        let l2 = linear(WIDTH, 2, vb.pp("l2")).unwrap();
        // Deterministic initialisation (candle's CPU RNG is not seeded).
        let mut varmap = varmap;
        for (i, (name, shape)) in
            [("l1.weight", (WIDTH, 8)), ("l1.bias", (WIDTH, 1)), ("l2.weight", (2, WIDTH)), ("l2.bias", (2, 1))]
                .into_iter()
                .enumerate()
        {
            let (x, _) = dataset(shape.0, 100 + i as u64, device);
            let t = x.narrow(1, 0, shape.1.min(8)).unwrap();
            let t = if shape.1 > 8 { Tensor::cat(&[&t, &t], 1).unwrap() } else { t };
            let t = (t * 0.3).unwrap();
            let t = if shape.1 == 1 { t.squeeze(1).unwrap() } else { t };
            varmap.set_one(name, t.to_dtype(dtype).unwrap()).unwrap();
        }
        Self { varmap, l1, l2, dtype }
    }

    pub fn forward(&self, x: &Tensor, slot: Option<&SeedSlot>) -> Tensor {
        let h = self.l1.forward(&x.to_dtype(self.dtype).unwrap()).unwrap();
        let h = match slot {
            Some(s) => s.forward(&h).unwrap(),
            None => h,
        };
        self.l2.forward(&h).unwrap()
    }

    pub fn named_vars(&self) -> Vec<(String, Var)> {
        self.varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

pub fn accuracy(logits: &Tensor, y: &Tensor) -> f32 {
    let pred = logits.argmax(1).unwrap();
    let eq = pred.eq(y).unwrap().to_dtype(DType::F32).unwrap();
    eq.mean_all().unwrap().to_scalar::<f32>().unwrap()
}

/// A test rig: host, data, Kasmina with a memory sink, a mock clock and a fixed wall clock.
/// Builds a custom blueprint runtime over the built-in library's directory.
pub type RuntimeFactory = Box<dyn FnOnce(&std::path::Path, &Arc<quanta::Mock>) -> Arc<dyn BlueprintRuntime>>;

pub struct Rig {
    pub host: Host,
    pub opt: candle_nn::SGD,
    pub kasmina: Kasmina,
    pub slot: SeedSlot,
    pub sink: MemorySink,
    pub mock: Arc<quanta::Mock>,
    pub keys: KeyRing,
    pub train: (Tensor, Tensor),
    pub val: (Tensor, Tensor),
    pub step: u64,
    pub epoch: u32,
    pub next_id: u64,
    /// The train loss of every step.
    pub losses: Vec<f32>,
}

/// The stages a helpful seed walks through after GERMINATED, in order.
pub const HAPPY_PATH: [leyline::SeedLifecycleStage; 5] = [
    leyline::SeedLifecycleStage::SeedStageTraining,
    leyline::SeedLifecycleStage::SeedStageBlending,
    leyline::SeedLifecycleStage::SeedStageShadowing,
    leyline::SeedLifecycleStage::SeedStageProbationary,
    leyline::SeedLifecycleStage::SeedStageFossilized,
];

pub fn config() -> KasminaConfig {
    let mut c = KasminaConfig::default();
    c.training_steps = 40;
    c.blending_steps = 20;
    c.shadowing_steps = 20;
    c.probation_steps = 20;
    c.seed_learning_rate = 0.005;
    c.embargo = Duration::from_secs(30);
    c
}

pub fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_UNIX)
}

impl Rig {
    pub fn new(config: KasminaConfig) -> Self {
        Self::with_blueprints(config, None)
    }

    pub fn with_blueprints(config: KasminaConfig, blueprints: Option<RuntimeFactory>) -> Self {
        Self::build(config, blueprints, None)
    }

    /// A rig whose telemetry goes to `telemetry` (its `sink` then stays empty).
    pub fn with_telemetry(config: KasminaConfig, telemetry: Telemetry) -> Self {
        Self::build(config, None, Some(telemetry))
    }

    /// A rig whose host runs in `dtype` (mixed precision: the seeds keep f32 master weights).
    pub fn with_dtype(config: KasminaConfig, dtype: DType) -> Self {
        Self::build_in(config, None, None, dtype)
    }

    /// A rig whose host, data and seeds live on `device` (a CUDA device in the CUDA tests).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn on_device(config: KasminaConfig, device: Device) -> Self {
        Self::build_on(config, None, None, DType::F32, device)
    }

    fn build(config: KasminaConfig, blueprints: Option<RuntimeFactory>, telemetry: Option<Telemetry>) -> Self {
        Self::build_in(config, blueprints, telemetry, DType::F32)
    }

    fn build_in(
        config: KasminaConfig,
        blueprints: Option<RuntimeFactory>,
        telemetry: Option<Telemetry>,
        dtype: DType,
    ) -> Self {
        Self::build_on(config, blueprints, telemetry, dtype, Device::Cpu)
    }

    fn build_on(
        config: KasminaConfig,
        blueprints: Option<RuntimeFactory>,
        telemetry: Option<Telemetry>,
        dtype: DType,
        device: Device,
    ) -> Self {
        let host = Host::with_dtype(&device, dtype);
        let opt = candle_nn::SGD::new(host.varmap.all_vars(), 0.1).unwrap();
        let sink = MemorySink::new();
        let telemetry = telemetry.unwrap_or_else(|| Telemetry::new(sink.clone(), TelemetryConfig::default()).unwrap());
        let (clock, mock) = quanta::Clock::mock();
        let keys = KeyRing::with_key("default", SECRET).unwrap();
        let dir = tempfile::tempdir().unwrap().keep();
        let library = builtin::write_library(&dir, &[WIDTH, WIDTH / 2], 7).unwrap();
        let builder = Kasmina::builder()
            .device(device.clone())
            .config(config)
            .signing_keys(keys.clone())
            .telemetry(telemetry)
            .host_vars(host.named_vars())
            .clock(clock)
            .wall_clock(wall);
        let builder = match blueprints {
            Some(f) => builder.blueprints(f(&dir, &mock)),
            None => builder.blueprints(library),
        };
        let kasmina = builder.build().unwrap();
        let slot = kasmina.slot("hidden", WIDTH).unwrap();
        let train = dataset(256, 1, &device);
        let val = dataset(256, 2, &device);
        Self {
            host,
            opt,
            kasmina,
            slot,
            sink,
            mock,
            keys,
            train,
            val,
            step: 0,
            epoch: 0,
            next_id: 0,
            losses: Vec::new(),
        }
    }

    /// One training step, Tolaria-style: forward, loss, backward, host step, shadow losses,
    /// `on_step`.
    pub fn step(&mut self) -> kasmina_runtime::StepOutcome {
        let (x, y) = (&self.train.0, &self.train.1);
        let logits = self.host.forward(x, Some(&self.slot));
        let loss = cross_entropy(&logits, y).unwrap();
        let grads = loss.backward().unwrap();
        self.opt.step(&grads).unwrap();
        let value = loss.to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
        self.losses.push(value);
        let mut report = StepReport::new(value);
        for name in self.kasmina.shadow_slots() {
            let shadow = self.kasmina.with_shadow(&name, || self.host.forward(x, Some(&self.slot))).unwrap();
            report = report.with_shadow_loss_tensor(name, &cross_entropy(&shadow, y).unwrap()).unwrap();
        }
        self.step += 1;
        // A fossilized seed keeps training with its own optimiser inside Kasmina: the host's
        // optimiser is left alone.
        self.kasmina.on_step(&grads, report).unwrap()
    }

    /// Validation loss and accuracy.
    pub fn validate(&self) -> (f32, f32) {
        let logits = self.host.forward(&self.val.0, Some(&self.slot));
        let loss =
            cross_entropy(&logits, &self.val.1).unwrap().to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
        (loss, accuracy(&logits, &self.val.1))
    }

    /// The validation loss of each of 8 fixed batches (counterfactual evaluation).
    pub fn val_batches(&self) -> candle_core::Result<Vec<f32>> {
        (0..8)
            .map(|i| {
                let x = self.val.0.narrow(0, i * 32, 32)?;
                let y = self.val.1.narrow(0, i * 32, 32)?;
                cross_entropy(&self.host.forward(&x, Some(&self.slot)), &y)?.to_dtype(DType::F32)?.to_scalar::<f32>()
            })
            .collect()
    }

    pub fn epoch(&mut self) -> kasmina_runtime::EpochOutcome {
        let (val_loss, val_acc) = self.validate();
        self.kasmina.evaluate_counterfactual(|| self.val_batches()).unwrap();
        let out = self.kasmina.on_epoch(EpochReport { epoch: self.epoch, val_loss, val_acc }).unwrap();
        self.epoch += 1;
        out
    }

    /// `n` steps with an epoch boundary every 10 steps.
    pub fn train(&mut self, n: u64) {
        for _ in 0..n {
            self.step();
            if self.step.is_multiple_of(10) {
                self.epoch();
            }
        }
    }

    pub fn command(&mut self, command_type: CommandType, seed_id: &str, payload: Option<Payload>) -> AdaptationCommand {
        self.next_id += 1;
        AdaptationCommand {
            version: 1,
            command_id: format!("it-{}", self.next_id),
            command_type: command_type as i32,
            target_seed_id: seed_id.to_owned(),
            issued_at: Some(Timestamp { seconds: NOW_UNIX as i64, nanos: 0 }),
            issued_by: "tamiyo".into(),
            payload,
            ..Default::default()
        }
    }

    pub fn seed_op(&mut self, op: SeedOperation, seed_id: &str, blueprint: &str) -> AdaptationCommand {
        self.command(
            CommandType::CommandSeed,
            seed_id,
            Some(Payload::SeedOperation(CommandSeedOperation {
                operation: op as i32,
                blueprint_id: blueprint.to_owned(),
                parameters: Default::default(),
            })),
        )
    }

    pub fn sign(&self, cmd: &AdaptationCommand) -> SignedCommand {
        sign_command(cmd, "default", &self.keys).unwrap()
    }

    /// Submits a signed command and applies it at the next safe point (a training step).
    pub fn submit_and_step(&mut self, cmd: &AdaptationCommand) -> leyline::CommandReceipt {
        let ticket = self.kasmina.submit(&self.sign(cmd)).unwrap_or_else(|r| panic!("rejected: {r:?}"));
        self.step();
        ticket.try_receipt().expect("applied at the safe point")
    }

    /// Trains (an epoch every 10 steps) until the seed is FOSSILIZED or `max` steps passed;
    /// returns the stages it went through and the seeds handed to the host.
    pub fn grow_to_fossilized(
        &mut self,
        max: usize,
    ) -> (Vec<leyline::SeedLifecycleStage>, Vec<kasmina_runtime::FossilizedSeed>) {
        let (mut seen, mut fossilized) = (vec![self.stage()], Vec::new());
        for _ in 0..max {
            fossilized.extend(self.step().fossilized);
            if self.step.is_multiple_of(10) {
                fossilized.extend(self.epoch().fossilized);
            }
            if seen.last() != Some(&self.stage()) {
                seen.push(self.stage());
            }
            if self.stage() == leyline::SeedLifecycleStage::SeedStageFossilized {
                break;
            }
        }
        (seen, fossilized)
    }

    pub fn stage(&self) -> leyline::SeedLifecycleStage {
        self.slot.stage()
    }

    /// Steps (with an epoch every 10 steps) until the slot's seed is in `stage`, at most `max`
    /// steps; whether it got there.
    pub fn step_until(&mut self, stage: leyline::SeedLifecycleStage, max: usize) -> bool {
        for _ in 0..max {
            if self.stage() == stage {
                return true;
            }
            self.step();
            if self.step.is_multiple_of(10) {
                self.epoch();
            }
        }
        self.stage() == stage
    }

    /// The host's weights, by variable name, as plain numbers (for bit-for-bit comparisons).
    pub fn host_weights(&self) -> Vec<Vec<f32>> {
        let mut vars = self.host.named_vars();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars.iter()
            .map(|(_, v)| v.as_tensor().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect()
    }

    pub fn event_names(&self) -> Vec<String> {
        self.kasmina.flush_telemetry().unwrap();
        self.sink.packets().iter().flat_map(|p| p.events.iter().map(|e| e.description.clone())).collect()
    }

    pub fn events(&self, name: &str) -> Vec<leyline::TelemetryEvent> {
        self.kasmina.flush_telemetry().unwrap();
        self.sink.packets().iter().flat_map(|p| p.events.clone()).filter(|e| e.description == name).collect()
    }
}

/// Trains the host alone (no Kasmina) for `steps` with the same data and initialisation rule.
pub fn host_alone(steps: u64) -> (f32, f32) {
    let device = Device::Cpu;
    let host = Host::new(&device);
    let mut opt = candle_nn::SGD::new(host.varmap.all_vars(), 0.1).unwrap();
    let (x, y) = dataset(256, 1, &device);
    for _ in 0..steps {
        let loss = cross_entropy(&host.forward(&x, None), &y).unwrap();
        opt.backward_step(&loss).unwrap();
    }
    let (vx, vy) = dataset(256, 2, &device);
    let logits = host.forward(&vx, None);
    (cross_entropy(&logits, &vy).unwrap().to_scalar::<f32>().unwrap(), accuracy(&logits, &vy))
}
