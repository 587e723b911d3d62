//! Mixed precision: a bf16 host with a seed whose master weights stay f32 (issue 19).

use candle_core::DType;
use leyline::{SeedLifecycleStage as Stage, SeedOperation};

use crate::harness::{Rig, config};

#[test]
fn a_bf16_host_grows_a_seed_with_f32_master_weights_all_the_way_to_fossilized() {
    let mut rig = Rig::with_dtype(config(), DType::BF16);
    rig.train(60);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    assert!(rig.submit_and_step(&cmd).accepted);

    // The slot hands the host its own dtype back.
    let x = rig.train.0.narrow(0, 0, 4).unwrap().to_dtype(DType::BF16).unwrap();
    let h = candle_core::Module::forward(&rig.host.l1, &x).unwrap();
    assert_eq!(rig.slot.forward(&h).unwrap().dtype(), DType::BF16);

    let (seen, fossilized) = rig.grow_to_fossilized(400);
    let summary = &rig.kasmina.seed_summaries()[0];
    assert_eq!(rig.stage(), Stage::SeedStageFossilized, "path {seen:?}; gates {:?}", summary.gates);
    assert!(summary.isolation_checks > 0);
    assert_eq!(summary.isolation_violations, 0);
    // The seed trained in f32: its master weights stayed f32, and the ones BP001 starts at zero
    // (both biases, the up projection) moved: none is zero any more.
    assert_eq!(fossilized.len(), 1);
    let vars = &fossilized[0].vars;
    assert!(!vars.is_empty() && vars.iter().all(|v| v.dtype() == DType::F32), "{:?}", vars);
    let moved = vars.iter().all(|v| v.as_tensor().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
    assert!(moved);
    // The host stayed bf16.
    assert!(rig.host.named_vars().iter().all(|(_, v)| v.dtype() == DType::BF16));
}
