//! Failure paths: NaN kernels, host-sharing kernels, failing fetches, regressions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use candle_core::Device;
use kasmina_runtime::{BlueprintLibrary, BlueprintRuntime, FetchError, KernelArtifact, blueprint::builtin};
use leyline::{BlueprintDescriptor, HealthStatus, SeedLifecycleStage as Stage, SeedOperation};

use crate::harness::{Rig, WIDTH, config};

fn walk_to_dormant(rig: &mut Rig) {
    // The embargo runs on the injected clock: nothing moves before it elapses.
    for _ in 0..5 {
        rig.step();
    }
    assert_eq!(rig.stage(), Stage::SeedStageEmbargoed);
    rig.mock.increment(Duration::from_secs(31));
    rig.step();
    // The slot is cleaned at the embargo's end and observed (G5) at the next safe point.
    assert_eq!(rig.stage(), Stage::SeedStageResetting);
    rig.step();
    assert_eq!(rig.stage(), Stage::SeedStageDormant);
}

#[test]
fn nan_blueprint_fails_g1_and_walks_the_failure_path_to_dormant() {
    let mut rig = Rig::new(config());
    rig.train(20);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "broken-1", builtin::BROKEN);
    assert!(rig.submit_and_step(&cmd).accepted);
    for _ in 0..10 {
        rig.step();
        if rig.stage() == Stage::SeedStageEmbargoed {
            break;
        }
    }
    assert_eq!(rig.stage(), Stage::SeedStageEmbargoed, "events: {:?}", rig.event_names());
    let summary = rig.kasmina.seed_summaries().remove(0);
    let failed = summary.gates.iter().find(|g| !g.passed).expect("a failed gate");
    assert_eq!(failed.gate(), leyline::SeedLifecycleGate::SeedGateG1GradientHealth);
    assert_eq!(failed.reason, "seed_loss_not_finite");
    // The host's own output and training were never poisoned.
    let (loss, _) = rig.validate();
    assert!(loss.is_finite());

    let payload = rig.kasmina.rollback_payload("broken-1").expect("rollback payload recorded");
    assert!(payload.fields.contains_key("reason") && payload.fields.contains_key("step"));
    walk_to_dormant(&mut rig);
    let summary = rig.kasmina.seed_summaries().remove(0);
    assert_eq!(
        &summary.stages[summary.stages.len() - 4..],
        &[Stage::SeedStageCulled, Stage::SeedStageEmbargoed, Stage::SeedStageResetting, Stage::SeedStageDormant]
    );
    let g5 = summary.gates.last().unwrap();
    assert_eq!(g5.gate(), leyline::SeedLifecycleGate::SeedGateG5Reset);
    assert!(g5.passed);
    // The slot keeps reporting the culled seed's id, in DORMANT.
    let state = &rig.kasmina.export_seed_states()[0];
    assert_eq!((state.seed_id.as_str(), state.stage()), ("broken-1", Stage::SeedStageDormant));
    let names = rig.event_names();
    for name in ["embargo_start", "embargo_end", "rollback_ready", "gate_failure"] {
        assert!(names.iter().any(|n| n == name), "missing {name} in {names:?}");
    }
    // The slot is free again.
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-2", builtin::RESIDUAL_MLP);
    assert!(rig.submit_and_step(&cmd).accepted);
}

/// A runtime that serves kernels as live variables (no copy), as the prototype did.
#[derive(Debug)]
struct LiveRuntime {
    library: BlueprintLibrary,
    shared: Vec<(String, candle_core::Var)>,
}

impl BlueprintRuntime for LiveRuntime {
    fn descriptor(&self, id: &str) -> Option<BlueprintDescriptor> {
        self.library.descriptor(id)
    }
    fn descriptors(&self) -> Vec<BlueprintDescriptor> {
        self.library.descriptors()
    }
    fn fetch(&self, id: &str, width: usize, device: &Device) -> Result<KernelArtifact, FetchError> {
        let mut art = self.library.fetch(id, width, device)?;
        if id == builtin::ZERO_LINEAR {
            // "weight" is a host parameter of the right shape: the kernel shares it.
            art.tensors.insert("weight".into(), self.shared[0].1.as_tensor().clone());
            art.live_vars = Some(self.shared.clone());
        }
        Ok(art)
    }
}

#[test]
fn kernel_sharing_a_host_parameter_is_refused_at_registration() {
    let host_var = candle_core::Var::zeros((WIDTH, WIDTH), candle_core::DType::F32, &Device::Cpu).unwrap();
    let bias = candle_core::Var::zeros(WIDTH, candle_core::DType::F32, &Device::Cpu).unwrap();
    let shared = vec![("weight".to_owned(), host_var.clone()), ("bias".to_owned(), bias)];
    let shared2 = shared.clone();
    let mut rig = Rig::with_blueprints(
        config(),
        Some(Box::new(move |dir, _mock| {
            let library = BlueprintLibrary::open(dir).unwrap();
            Arc::new(LiveRuntime { library, shared: shared2 }) as Arc<dyn BlueprintRuntime>
        })),
    );
    rig.kasmina.register_host_vars(&[host_var]).unwrap();
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "sharer", builtin::ZERO_LINEAR);
    rig.submit_and_step(&cmd);
    assert_eq!(rig.stage(), Stage::SeedStageEmbargoed);
    let summary = rig.kasmina.seed_summaries().remove(0);
    let g1 = summary.gates.iter().find(|g| !g.passed).unwrap();
    assert_eq!(g1.reason, "registration_conflict", "{:?}", summary.gates);
    let reg = rig.events("parameter.registration");
    assert!(reg.iter().any(|e| e.attributes.get("error").map(String::as_str) == Some("registry_conflict")));
    // The host keeps its parameter: no seed owns it.
    assert_eq!(summary.kernel_blueprint_id, builtin::ZERO_LINEAR);
}

/// A runtime whose blueprint `BPX` fails to fetch until `healthy` is set.
#[derive(Debug)]
struct FlakyRuntime {
    library: BlueprintLibrary,
    healthy: Arc<AtomicBool>,
}

impl BlueprintRuntime for FlakyRuntime {
    fn descriptor(&self, id: &str) -> Option<BlueprintDescriptor> {
        if id == "BPX" {
            let mut d = self.library.descriptor(builtin::RESIDUAL_MLP)?;
            d.blueprint_id = "BPX".into();
            return Some(d);
        }
        self.library.descriptor(id)
    }
    fn descriptors(&self) -> Vec<BlueprintDescriptor> {
        self.library.descriptors()
    }
    fn fetch(&self, id: &str, width: usize, device: &Device) -> Result<KernelArtifact, FetchError> {
        if id == "BPX" {
            if !self.healthy.load(Ordering::SeqCst) {
                return Err(FetchError::Other("urza unreachable".into()));
            }
            let mut art = self.library.fetch(builtin::RESIDUAL_MLP, width, device)?;
            art.blueprint_id = "BPX".into();
            return Ok(art);
        }
        self.library.fetch(id, width, device)
    }
}

#[test]
fn failing_fetch_falls_back_and_the_breaker_opens_then_recovers_through_half_open() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let mut rig = Rig::with_blueprints(
        config(),
        Some(Box::new(move |dir, _mock| {
            Arc::new(FlakyRuntime { library: BlueprintLibrary::open(dir).unwrap(), healthy: flag })
                as Arc<dyn BlueprintRuntime>
        })),
    );
    for (name, width) in [("a", WIDTH), ("b", WIDTH), ("c", WIDTH / 2), ("d", WIDTH), ("f", WIDTH)] {
        rig.kasmina.slot(name, width).unwrap();
    }
    let germinate = |rig: &mut Rig, seed: &str, slot: &str| {
        let mut cmd = rig.seed_op(SeedOperation::SeedOpGerminate, seed, "BPX");
        cmd.annotations.insert("slot".into(), slot.into());
        let r = rig.submit_and_step(&cmd);
        assert!(r.accepted, "{r:?}");
        rig.kasmina.seed_summaries().into_iter().find(|s| s.seed_id == seed).unwrap()
    };
    // Three failing fetches: each falls back to BP001; the third opens the breaker.
    for (seed, slot) in [("s0", "hidden"), ("s1", "a"), ("s2", "b")] {
        assert_eq!(germinate(&mut rig, seed, slot).kernel_blueprint_id, builtin::RESIDUAL_MLP);
    }
    assert_eq!(rig.events("fallback_applied").len(), 3, "{:?}", rig.event_names());
    assert_eq!(rig.events("breaker_open").len(), 1);
    assert_eq!(rig.kasmina.health().status(), HealthStatus::Unhealthy);

    // While OPEN the runtime is not even asked: denied, fallback again.
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(germinate(&mut rig, "s3", "d").kernel_blueprint_id, builtin::RESIDUAL_MLP);
    assert!(
        rig.events("breaker_event")
            .iter()
            .any(|e| e.attributes.get("action").map(String::as_str) == Some("breaker_denied"))
    );

    // After the open timeout (fake clock): one probe in HALF_OPEN, then a second success closes it.
    rig.mock.increment(Duration::from_secs(61));
    assert_eq!(germinate(&mut rig, "s4", "c").kernel_blueprint_id, "BPX");
    assert_eq!(rig.events("breaker_half_open").len(), 1);
    assert_eq!(germinate(&mut rig, "s5", "f").kernel_blueprint_id, "BPX");
    assert_eq!(rig.events("breaker_closed").len(), 1);
    // The fallback was never cached under the requested key: BPX serves its own kernel now.
    assert_ne!(rig.kasmina.health().summary, "breaker_open");
}

/// Host weights after `steps` training steps of a rig, with `germinate` applied after 30.
fn host_after(steps: u64, germinate: Option<&str>) -> (Vec<Vec<f32>>, Rig) {
    let mut rig = Rig::new(config());
    rig.train(30);
    if let Some(bp) = germinate {
        let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "hurts", bp);
        assert!(rig.submit_and_step(&cmd).accepted);
    } else {
        rig.step();
    }
    rig.train(steps);
    (rig.host_weights(), rig)
}

#[test]
fn a_seed_that_hurts_is_culled_before_it_touches_the_forward_and_leaves_no_trace() {
    let (alone, _) = host_after(80, None);
    let (with_seed, rig) = host_after(80, Some(builtin::NOISY));
    let summary = rig.kasmina.seed_summaries().remove(0);
    assert_eq!(summary.cull_reason.map(|c| c.reason()), Some("counterfactual_harmful"), "{:?}", summary.gates);
    let g1 = summary.gates.iter().find(|g| !g.passed).unwrap();
    assert_eq!(g1.gate(), leyline::SeedLifecycleGate::SeedGateG1GradientHealth);
    assert!(!summary.stages.contains(&Stage::SeedStageBlending));
    // The seed trained on its own shadow loss and never changed the forward: the host's
    // weights are bit-identical to a run without it.
    assert_eq!(alone, with_seed);
}

#[test]
fn a_seed_culled_while_blended_in_is_blended_out() {
    let mut rig = Rig::new(config());
    rig.train(60);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "s1", builtin::RESIDUAL_MLP);
    assert!(rig.submit_and_step(&cmd).accepted);
    for _ in 0..200 {
        rig.step();
        if rig.stage() == Stage::SeedStageBlending && rig.kasmina.export_seed_states()[0].metrics["alpha"] > 0.3 {
            break;
        }
    }
    assert_eq!(rig.stage(), Stage::SeedStageBlending, "{:?}", rig.kasmina.seed_summaries()[0].gates);
    let cull = rig.seed_op(SeedOperation::SeedOpCull, "s1", "");
    assert!(rig.submit_and_step(&cull).accepted);
    // CULLED while alpha ramps to 0 (the seed frozen), then EMBARGOED.
    let mut alphas = Vec::new();
    while rig.stage() == Stage::SeedStageCulled && alphas.len() < 100 {
        alphas.push(rig.kasmina.export_seed_states()[0].metrics["alpha"]);
        rig.step();
    }
    assert_eq!(rig.stage(), Stage::SeedStageEmbargoed);
    assert!(alphas.len() >= 10, "blend-out lasted {} steps", alphas.len());
    assert!(alphas.windows(2).all(|w| w[1] <= w[0]), "alpha only falls: {alphas:?}");
    assert_eq!(rig.kasmina.export_seed_states()[0].metrics["alpha"], 0.0);
    let h = candle_core::Tensor::ones((2, WIDTH), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(rig.slot.forward(&h).unwrap().to_vec2::<f32>().unwrap(), h.to_vec2::<f32>().unwrap());
}

#[test]
fn without_a_counterfactual_the_gate_refuses_and_does_not_cull() {
    let mut rig = Rig::new(config());
    rig.train(30);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "s1", builtin::RESIDUAL_MLP);
    assert!(rig.submit_and_step(&cmd).accepted);
    // Steps only: no epoch, so no counterfactual evaluation.
    for _ in 0..200 {
        rig.step();
        if rig.kasmina.seed_summaries()[0].gates.iter().any(|g| g.reason == "counterfactual_missing") {
            break;
        }
    }
    assert_eq!(rig.stage(), Stage::SeedStageShadowing);
    for _ in 0..10 {
        rig.step();
    }
    let missing = rig.kasmina.seed_summaries()[0].gates.iter().filter(|g| g.reason == "counterfactual_missing").count();
    assert_eq!(missing, 1, "refused once, not every step");
    let evaluate = rig.seed_op(SeedOperation::SeedOpEvaluate, "s1", "");
    let r = rig.kasmina.apply(evaluate);
    assert_eq!((r.accepted, r.reason.as_str()), (false, "counterfactual_missing"));
    assert_eq!(rig.stage(), Stage::SeedStageShadowing, "not culled");
    // Once measured, the gate decides.
    rig.kasmina.evaluate_counterfactual(|| rig.val_batches()).unwrap();
    rig.step();
    assert_ne!(rig.stage(), Stage::SeedStageShadowing);
}
