//! Evidence is per seed: one slot's shadow evaluation runs every other slot in its normal
//! (bypassing, finite) mode, so a broken seed never fails a healthy one, in either order.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap, linear, loss::cross_entropy};
use kasmina_runtime::reexports::security::{KeyRing, sign_command};
use kasmina_runtime::{Kasmina, StepReport, blueprint::builtin};
use leyline::adaptation_command::Payload;
use leyline::{AdaptationCommand, CommandSeedOperation, CommandType, SeedLifecycleStage as Stage, SeedOperation};

use crate::harness::{NOW_UNIX, SECRET, WIDTH, dataset, wall};

fn germinate(id: &str, blueprint: &str, slot: &str) -> AdaptationCommand {
    AdaptationCommand {
        command_id: format!("g-{id}"),
        command_type: CommandType::CommandSeed as i32,
        target_seed_id: id.to_owned(),
        issued_at: Some(leyline::wkt::Timestamp { seconds: NOW_UNIX as i64, nanos: 0 }),
        payload: Some(Payload::SeedOperation(CommandSeedOperation {
            operation: SeedOperation::SeedOpGerminate as i32,
            blueprint_id: blueprint.to_owned(),
            parameters: Default::default(),
        })),
        annotations: [("slot".to_owned(), slot.to_owned())].into(),
        ..Default::default()
    }
}

/// Trains a host `l1 → a → b → l2` with `first` germinated in `a` and `second` in `b`; returns
/// the stages each seed went through.
fn run(first: &str, second: &str) -> (Vec<Stage>, Vec<Stage>) {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let l1 = linear(8, WIDTH, vb.pp("l1")).unwrap();
    let l2 = linear(WIDTH, 2, vb.pp("l2")).unwrap();
    let mut opt = candle_nn::SGD::new(varmap.all_vars(), 0.1).unwrap();
    let keys = KeyRing::with_key("default", SECRET).unwrap();
    let (clock, _mock) = quanta::Clock::mock();
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::harness::config();
    // Long enough that the healthy seed is still in TRAINING at the end: the only way it could
    // leave is a failure caused by the other slot.
    config.training_steps = 200;
    let k = Kasmina::builder()
        .config(config)
        .signing_keys(keys.clone())
        .host_varmap(&varmap)
        .blueprints(builtin::write_library(dir.path(), &[WIDTH], 3).unwrap())
        .clock(clock)
        .wall_clock(wall)
        .build()
        .unwrap();
    let (a, b) = (k.slot("a", WIDTH).unwrap(), k.slot("b", WIDTH).unwrap());
    let (x, y) = dataset(128, 1, &device);
    let forward = |x: &Tensor| l2.forward(&b.forward(&a.forward(&l1.forward(x).unwrap()).unwrap()).unwrap()).unwrap();
    for (id, bp, slot) in [("first", first, "a"), ("second", second, "b")] {
        k.submit(&sign_command(&germinate(id, bp, slot), "default", &keys).unwrap()).unwrap();
    }
    for _ in 0..40 {
        let loss = cross_entropy(&forward(&x), &y).unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads).unwrap();
        let mut report = StepReport::new(loss.to_scalar::<f32>().unwrap());
        for slot in k.shadow_slots() {
            let shadow = k.with_shadow(&slot, || forward(&x)).unwrap();
            report = report.with_shadow_loss_tensor(slot, &cross_entropy(&shadow, &y).unwrap()).unwrap();
        }
        k.on_step(&grads, report).unwrap();
    }
    let summaries = k.seed_summaries();
    let stages = |id: &str| summaries.iter().find(|s| s.seed_id == id).unwrap().stages.clone();
    (stages("first"), stages("second"))
}

#[test]
fn a_broken_seed_never_fails_a_healthy_one_in_either_order() {
    for (broken_first, (first, second)) in
        [(true, run(builtin::BROKEN, builtin::RESIDUAL_MLP)), (false, run(builtin::RESIDUAL_MLP, builtin::BROKEN))]
    {
        let (broken, healthy) = if broken_first { (first, second) } else { (second, first) };
        assert!(broken.contains(&Stage::SeedStageCulled), "the broken seed is culled: {broken:?}");
        assert!(!healthy.contains(&Stage::SeedStageCulled), "broken first: {broken_first}; healthy: {healthy:?}");
        assert_eq!(healthy.last(), Some(&Stage::SeedStageTraining), "the healthy seed trains on: {healthy:?}");
    }
}
