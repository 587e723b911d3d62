//! A structured fuzzer of command sequences against the runtime: valid and invalid signed
//! commands in any order (at most [`MAX_OPS`] operations, read with `arbitrary`), with
//! training steps, epochs and clock jumps between them, on a tiny candle host (8 → 16 → 2, the
//! slot in the middle) with fixed data and weights. The libFuzzer counterpart of
//! `crates/kasmina-runtime/tests/it/sequences.rs`, with the same oracle:
//!
//! - no panic, and every runtime call succeeds;
//! - every verified command is queued at once, and gets exactly one final (not `queued`)
//!   receipt by the next step; the receipt book holds it while its TTL runs, unless an
//!   emergency cleanup released the book;
//! - a forged command is refused `invalid_signature`; a replay is refused `nonce_replayed`
//!   (`stale_command` once its `issued_at` has left the freshness window);
//! - every seed's stage history starts DORMANT, ends at its current stage and moves only along
//!   the lifecycle transition table (`kasmina_lifecycle::is_legal`);
//! - the host's validation loss stays finite.
//!
//! The wall clock follows the mock monotonic clock (commands are issued "now"), so a clock jump
//! ages commands the way it would in production.
//!
//! Run: `cargo xtask fuzz --target sequences`.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::loss::cross_entropy;
use candle_nn::{Linear, Optimizer, SGD};
use kasmina_runtime::blueprint::{BlueprintLibrary, builtin};
use kasmina_runtime::reexports::security::{KeyRing, sign_command};
use kasmina_runtime::{EpochReport, Kasmina, KasminaConfig, SeedSlot, StepReport, Ticket};
use leyline::adaptation_command::Payload;
use leyline::wkt::Timestamp;
use leyline::{
    AdaptationCommand, CommandCircuitBreaker, CommandSeedOperation, CommandType, ReceiptStatus,
    SeedLifecycleStage as Stage, SeedOperation, SignedCommand,
};
use libfuzzer_sys::fuzz_target;

/// Operations per input, at most (keeps an input's run time around a few milliseconds).
const MAX_OPS: usize = 64;
const SECRET: &str = "kasmina-fuzz-secret";
const WIDTH: usize = 16;
const NOW_UNIX: u64 = 1_790_000_000;
/// Training and validation rows.
const ROWS: usize = 64;

#[derive(Debug, Clone, Copy)]
enum SeedId {
    S0,
    S1,
    S2,
}

#[derive(Debug, Clone, Copy)]
enum Blueprint {
    ResidualMlp,
    Broken,
    Noisy,
    Missing,
    LowRank,
}

#[derive(Debug, Clone, Copy)]
enum SeedOp {
    Germinate,
    StartTraining,
    StartGrafting,
    Stabilize,
    Evaluate,
    Fossilize,
    FineTune,
    Cull,
    /// `terminate = "true"` when the flag is set.
    Cancel(bool),
    Unknown,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Seed(SeedId, SeedOp, Blueprint),
    Pause {
        seed: SeedId,
        resume: bool,
    },
    /// A breaker command with this desired state (unknown values included).
    Breaker(i8),
    Emergency,
    Rollback(SeedId),
    Forged(SeedId),
    Replay,
    /// 1 to 8 training steps.
    Steps(u8),
    Epoch,
    /// The clocks jump 31 s (past the 30 s embargo).
    Wait,
}

const SEEDS: [SeedId; 3] = [SeedId::S0, SeedId::S1, SeedId::S2];
const BLUEPRINTS: [Blueprint; 5] =
    [Blueprint::ResidualMlp, Blueprint::Broken, Blueprint::Noisy, Blueprint::Missing, Blueprint::LowRank];
const SEED_OPS: [SeedOp; 11] = [
    SeedOp::Germinate,
    SeedOp::StartTraining,
    SeedOp::StartGrafting,
    SeedOp::Stabilize,
    SeedOp::Evaluate,
    SeedOp::Fossilize,
    SeedOp::FineTune,
    SeedOp::Cull,
    SeedOp::Cancel(false),
    SeedOp::Cancel(true),
    SeedOp::Unknown,
];

/// Written by hand rather than derived: a derived enum spends four input bytes on its variant,
/// this one byte per choice, so libFuzzer's short early inputs already hold several operations.
/// The weights are the proptest version's (seed operations and steps four times as likely).
impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let seed = |u: &mut Unstructured<'a>| u.choose(&SEEDS).copied();
        Ok(match u.int_in_range(0u8..=15)? {
            0..=3 => Op::Seed(seed(u)?, *u.choose(&SEED_OPS)?, *u.choose(&BLUEPRINTS)?),
            4 => Op::Pause { seed: seed(u)?, resume: u.arbitrary()? },
            5 => Op::Breaker(u.arbitrary()?),
            6 => Op::Emergency,
            7 => Op::Rollback(seed(u)?),
            8 => Op::Forged(seed(u)?),
            9 => Op::Replay,
            10..=13 => Op::Steps(u.arbitrary()?),
            14 => Op::Epoch,
            _ => Op::Wait,
        })
    }
}

/// The built-in blueprints, written once per process (the directory outlives the process).
static LIBRARY: LazyLock<BlueprintLibrary> = LazyLock::new(|| {
    let dir = tempfile::Builder::new().prefix("kasmina-fuzz-blueprints-").tempdir().expect("temp dir").keep();
    builtin::write_library(&dir, &[WIDTH, WIDTH / 2], 7).expect("library")
});

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        ops.push(op);
    }
    run(&ops);
});

/// A verified command's ticket and when (mock time, ns) it was submitted.
struct Submitted {
    ticket: Ticket,
    at: u64,
}

fn run(ops: &[Op]) {
    let mut rig = Rig::new();
    let mut submitted: Vec<Submitted> = Vec::new();
    let mut last_signed: Option<(SignedCommand, i128)> = None;
    // An emergency cleanup releases the receipt book too (its receipts were delivered already).
    let mut kept_from = 0;
    for op in ops {
        let Some(cmd) = rig.apply(op, &mut kept_from, submitted.len(), last_signed.as_ref()) else { continue };
        let signed = rig.sign(&cmd);
        let ticket = rig.kasmina.submit(&signed).unwrap_or_else(|r| panic!("verified commands queue: {r:?}"));
        assert_eq!(ticket.queued().status(), ReceiptStatus::Queued);
        submitted.push(Submitted { ticket, at: rig.mock.value() });
        last_signed = Some((signed, rig.wall_nanos()));
    }
    rig.step();
    let ttl = u64::try_from(rig.config.receipt_ttl.as_nanos()).unwrap_or(u64::MAX);
    for (i, Submitted { ticket, at }) in submitted.iter().enumerate() {
        let first = ticket.try_receipt().unwrap_or_else(|| panic!("{} has a final receipt", ticket.command_id()));
        assert_ne!(first.status(), ReceiptStatus::Queued);
        assert!(ticket.try_receipt().is_none(), "exactly one final receipt");
        if i >= kept_from && rig.mock.value() - at < ttl {
            assert_eq!(rig.kasmina.receipt(ticket.command_id()).as_ref(), Some(&first), "the book keeps it");
        }
    }
    for summary in rig.kasmina.seed_summaries() {
        for pair in summary.stages.windows(2) {
            assert!(
                kasmina_lifecycle::is_legal(pair[0], pair[1]),
                "{}: {:?} -> {:?} in {:?}",
                summary.seed_id,
                pair[0],
                pair[1],
                summary.stages
            );
        }
        assert_eq!(summary.stages.first(), Some(&Stage::SeedStageDormant));
        assert_eq!(summary.stages.last(), Some(&summary.stage));
    }
    let loss = rig.validation_loss();
    assert!(loss.is_finite(), "the host is never poisoned");
}

/// A tiny host and a runtime around it (the test suite's `Rig`, compact).
struct Rig {
    config: KasminaConfig,
    kasmina: Kasmina,
    slot: SeedSlot,
    mock: Arc<quanta::Mock>,
    keys: KeyRing,
    l1: Linear,
    l2: Linear,
    opt: SGD,
    train: (Tensor, Tensor),
    val: (Tensor, Tensor),
    next_id: u64,
    epoch: u32,
}

impl Rig {
    fn new() -> Self {
        let device = Device::Cpu;
        let mut config = KasminaConfig::default();
        config.training_steps = 4;
        config.blending_steps = 4;
        config.shadowing_steps = 4;
        config.probation_steps = 4;
        config.blend_out_steps = 3;
        config.seed_learning_rate = 0.005;
        config.embargo = Duration::from_secs(30);
        let vars: Vec<(String, Var)> = [
            ("l1.weight", vec![WIDTH, 8]),
            ("l1.bias", vec![WIDTH]),
            ("l2.weight", vec![2, WIDTH]),
            ("l2.bias", vec![2]),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| (name.to_owned(), Var::from_tensor(&uniform(&shape, 100 + i as u64, 0.3)).unwrap()))
        .collect();
        let linear =
            |w: usize, b: usize| Linear::new(vars[w].1.as_tensor().clone(), Some(vars[b].1.as_tensor().clone()));
        let (l1, l2) = (linear(0, 1), linear(2, 3));
        let opt = SGD::new(vars.iter().map(|(_, v)| v.clone()).collect(), 0.1).unwrap();
        let (clock, mock) = quanta::Clock::mock();
        let wall_mock = Arc::clone(&mock);
        let keys = KeyRing::with_key("default", SECRET).unwrap();
        let kasmina = Kasmina::builder()
            .device(device)
            .config(config.clone())
            .signing_keys(keys.clone())
            .blueprints(LIBRARY.clone())
            .host_vars(vars)
            .clock(clock)
            .wall_clock(move || wall_at(&wall_mock))
            .build()
            .expect("runtime builds");
        let slot = kasmina.slot("hidden", WIDTH).unwrap();
        Self {
            config,
            kasmina,
            slot,
            mock,
            keys,
            l1,
            l2,
            opt,
            train: dataset(1),
            val: dataset(2),
            next_id: 0,
            epoch: 0,
        }
    }

    /// Performs `op`; returns the command to sign and submit, if it is one.
    fn apply(
        &mut self,
        op: &Op,
        kept_from: &mut usize,
        submitted: usize,
        last: Option<&(SignedCommand, i128)>,
    ) -> Option<AdaptationCommand> {
        match *op {
            Op::Seed(seed, seed_op, blueprint) => Some(self.seed_op(seed, seed_op, blueprint)),
            Op::Pause { seed, resume } => {
                let mut cmd = self.command(CommandType::CommandPause, seed_id(seed), None);
                if resume {
                    cmd.annotations.insert("resume".into(), "true".into());
                }
                Some(cmd)
            }
            Op::Breaker(state) => {
                let breaker = CommandCircuitBreaker { desired_state: i32::from(state), rationale: String::new() };
                Some(self.command(CommandType::CommandCircuitBreaker, "", Some(Payload::CircuitBreaker(breaker))))
            }
            Op::Emergency => {
                *kept_from = submitted + 1;
                Some(self.command(CommandType::CommandEmergency, "", None))
            }
            Op::Rollback(seed) => Some(self.command(CommandType::CommandRollback, seed_id(seed), None)),
            Op::Forged(seed) => {
                let cmd = self.seed_op(seed, SeedOp::Cull, Blueprint::ResidualMlp);
                let mut signed = self.sign(&cmd);
                signed.signature = "AAAA".into();
                let r = self.kasmina.submit(&signed).expect_err("a forged command is refused at once");
                assert_eq!(r.reason, "invalid_signature");
                None
            }
            Op::Replay => {
                if let Some((signed, issued)) = last {
                    let r = self.kasmina.submit(signed).expect_err("a replay is refused");
                    let stale = self.wall_nanos() - issued > 60_000_000_000;
                    assert_eq!(r.reason, if stale { "stale_command" } else { "nonce_replayed" });
                }
                None
            }
            Op::Steps(n) => {
                (0..=n % 8).for_each(|_| self.step());
                None
            }
            Op::Epoch => {
                self.run_epoch();
                None
            }
            Op::Wait => {
                self.mock.increment(Duration::from_secs(31));
                None
            }
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.l1.forward(x).unwrap();
        let h = self.slot.forward(&h).expect("slot forward");
        self.l2.forward(&h).unwrap()
    }

    /// One training step, Tolaria-style: forward, loss, backward, host step, shadow losses,
    /// `on_step`.
    fn step(&mut self) {
        let (x, y) = (&self.train.0, &self.train.1);
        let loss = cross_entropy(&self.forward(x), y).unwrap();
        let grads = loss.backward().unwrap();
        self.opt.step(&grads).unwrap();
        let mut report = StepReport::new(loss.to_scalar::<f32>().unwrap());
        for name in self.kasmina.shadow_slots() {
            let shadow = self.kasmina.with_shadow(&name, || self.forward(x)).expect("shadow pass");
            report = report.with_shadow_loss_tensor(name, &cross_entropy(&shadow, y).unwrap()).unwrap();
        }
        self.kasmina.on_step(&grads, report).expect("on_step");
    }

    fn validation_loss(&self) -> f32 {
        cross_entropy(&self.forward(&self.val.0), &self.val.1).unwrap().to_scalar::<f32>().unwrap()
    }

    fn run_epoch(&mut self) {
        let val_loss = self.validation_loss();
        let logits = self.forward(&self.val.0);
        let hits = logits.argmax(1).unwrap().eq(&self.val.1).unwrap().to_dtype(DType::F32).unwrap();
        let val_acc = hits.mean_all().unwrap().to_scalar::<f32>().unwrap();
        // The per-batch validation of the counterfactual evaluation: 4 batches of 16 rows.
        let batches = || {
            (0..4)
                .map(|i| {
                    let x = self.val.0.narrow(0, i * 16, 16)?;
                    let y = self.val.1.narrow(0, i * 16, 16)?;
                    cross_entropy(&self.forward(&x), &y)?.to_scalar::<f32>()
                })
                .collect()
        };
        self.kasmina.evaluate_counterfactual(batches).expect("counterfactual evaluation");
        let report = EpochReport { epoch: self.epoch, val_loss, val_acc };
        self.kasmina.on_epoch(report).expect("on_epoch");
        self.epoch += 1;
    }

    fn command(&mut self, command_type: CommandType, seed_id: &str, payload: Option<Payload>) -> AdaptationCommand {
        self.next_id += 1;
        let now = self.wall_nanos();
        AdaptationCommand {
            version: 1,
            command_id: format!("fz-{}", self.next_id),
            command_type: command_type as i32,
            target_seed_id: seed_id.to_owned(),
            issued_at: Some(Timestamp { seconds: (now / 1_000_000_000) as i64, nanos: (now % 1_000_000_000) as i32 }),
            issued_by: "tamiyo".into(),
            payload,
            ..Default::default()
        }
    }

    fn seed_op(&mut self, seed: SeedId, op: SeedOp, blueprint: Blueprint) -> AdaptationCommand {
        let operation = match op {
            SeedOp::Germinate => SeedOperation::SeedOpGerminate,
            SeedOp::StartTraining => SeedOperation::SeedOpStartTraining,
            SeedOp::StartGrafting => SeedOperation::SeedOpStartGrafting,
            SeedOp::Stabilize => SeedOperation::SeedOpStabilize,
            SeedOp::Evaluate => SeedOperation::SeedOpEvaluate,
            SeedOp::Fossilize => SeedOperation::SeedOpFossilize,
            SeedOp::FineTune => SeedOperation::SeedOpFineTune,
            SeedOp::Cull => SeedOperation::SeedOpCull,
            SeedOp::Cancel(_) => SeedOperation::SeedOpCancel,
            SeedOp::Unknown => SeedOperation::SeedOpUnknown,
        };
        let blueprint_id = match blueprint {
            Blueprint::ResidualMlp => builtin::RESIDUAL_MLP,
            Blueprint::Broken => builtin::BROKEN,
            Blueprint::Noisy => builtin::NOISY,
            Blueprint::Missing => "BP999",
            Blueprint::LowRank => builtin::LOW_RANK,
        };
        let payload = CommandSeedOperation {
            operation: operation as i32,
            blueprint_id: blueprint_id.to_owned(),
            parameters: Default::default(),
        };
        let mut cmd = self.command(CommandType::CommandSeed, seed_id(seed), Some(Payload::SeedOperation(payload)));
        if let SeedOp::Cancel(true) = op {
            cmd.annotations.insert("terminate".into(), "true".into());
        }
        cmd
    }

    fn sign(&self, cmd: &AdaptationCommand) -> SignedCommand {
        sign_command(cmd, "default", &self.keys).unwrap()
    }

    /// The runtime's wall clock now, in ns since the Unix epoch.
    fn wall_nanos(&self) -> i128 {
        wall_at(&self.mock).duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
    }
}

fn wall_at(mock: &quanta::Mock) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_UNIX) + Duration::from_nanos(mock.value())
}

fn seed_id(seed: SeedId) -> &'static str {
    match seed {
        SeedId::S0 => "seed-0",
        SeedId::S1 => "seed-1",
        SeedId::S2 => "seed-2",
    }
}

/// Deterministic values in `[-scale, scale)` (candle's CPU RNG is not seeded).
fn uniform(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// The XOR-like task of the test suite: 8 features, label `x0 · x1 > 0`.
fn dataset(seed: u64) -> (Tensor, Tensor) {
    let x = uniform(&[ROWS, 8], seed, 1.0);
    let rows = x.to_vec2::<f32>().unwrap();
    let y: Vec<u32> = rows.iter().map(|r| u32::from(r[0] * r[1] > 0.0)).collect();
    (x, Tensor::from_vec(y, ROWS, &Device::Cpu).unwrap())
}
