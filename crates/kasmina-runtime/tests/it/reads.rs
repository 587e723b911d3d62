//! Host–device synchronisation (issue 19): a slot forward never reads the device, and each
//! training step's safe point reads it once, whatever the seed's stage.

use candle_core::DType;
use candle_nn::Optimizer;
use candle_nn::loss::cross_entropy;
use kasmina_runtime::StepReport;
use leyline::{SeedLifecycleStage as Stage, SeedOperation};

use crate::harness::{HAPPY_PATH, Rig, config};

/// One training step as [`Rig::step`] takes it, counting the runtime's device reads during the
/// trainer's part (forwards, shadow forwards, backward) and during `on_step`.
fn counted_step(rig: &mut Rig) -> (u64, u64) {
    let reads = |rig: &Rig| rig.kasmina.stats().device_reads;
    let before = reads(rig);
    let (x, y) = (&rig.train.0, &rig.train.1);
    let loss = cross_entropy(&rig.host.forward(x, Some(&rig.slot)), y).unwrap();
    let grads = loss.backward().unwrap();
    rig.opt.step(&grads).unwrap();
    // The trainer reads its own loss; the runtime reads nothing here.
    let mut report = StepReport::new(loss.to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap());
    for name in rig.kasmina.shadow_slots() {
        let shadow = rig.kasmina.with_shadow(&name, || rig.host.forward(x, Some(&rig.slot))).unwrap();
        report = report.with_shadow_loss_tensor(name, &cross_entropy(&shadow, y).unwrap()).unwrap();
    }
    let mid = reads(rig);
    rig.kasmina.on_step(&grads, report).unwrap();
    rig.step += 1;
    (mid - before, reads(rig) - mid)
}

#[test]
fn a_forward_reads_nothing_and_each_step_reads_the_device_once() {
    grows_reading_once_per_step(Rig::new(config()));
}

/// The same on CUDA device 0: the seed grows to FOSSILIZED with the fused kernels and one read
/// per step, and no isolation violation.
#[cfg(feature = "cuda")]
#[test]
fn on_cuda_a_seed_grows_to_fossilized_reading_the_device_once_per_step() {
    let rig = Rig::on_device(config(), candle_core::Device::new_cuda(0).unwrap());
    let kasmina = rig.kasmina.clone();
    grows_reading_once_per_step(rig);
    let summary = &kasmina.seed_summaries()[0];
    assert!(summary.isolation_checks > 0);
    assert_eq!(summary.isolation_violations, 0);
}

/// Germinates BP001 and steps it to FOSSILIZED, checking the reads of every step.
fn grows_reading_once_per_step(mut rig: Rig) {
    for _ in 0..3 {
        assert_eq!(counted_step(&mut rig), (0, 0), "no seed: nothing to read");
    }
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    assert!(rig.submit_and_step(&cmd).accepted);

    let mut per_stage: Vec<(Stage, u64)> = Vec::new();
    for _ in 0..400 {
        let stage = rig.stage();
        let (in_forward, in_step) = counted_step(&mut rig);
        assert_eq!(in_forward, 0, "{stage:?}: the forwards and the backward read nothing");
        if HAPPY_PATH.contains(&stage) {
            assert_eq!(in_step, 1, "{stage:?}: one read at the safe point");
        } else {
            assert!(in_step <= 1, "{stage:?}: {in_step} reads");
        }
        match per_stage.last_mut() {
            Some((s, n)) if *s == stage => *n += 1,
            _ => per_stage.push((stage, 1)),
        }
        if rig.step.is_multiple_of(10) {
            rig.epoch();
        }
        if per_stage.last().is_some_and(|(s, n)| *s == Stage::SeedStageFossilized && *n > 3) {
            break;
        }
    }
    let stages: Vec<Stage> = per_stage.iter().map(|(s, _)| *s).collect();
    for stage in HAPPY_PATH {
        assert!(stages.contains(&stage), "the seed went through {stage:?}: {per_stage:?}");
    }
}

/// The counter counts the reads made through `readout`; this makes sure there is no other:
/// outside `readout.rs`, no non-test code of the runtime reads a tensor, except the artefact
/// fingerprint (checkpoints only, never in a step).
#[test]
fn nothing_outside_the_readout_reads_a_tensor() {
    const READS: [&str; 5] = [".to_scalar", ".to_vec0", ".to_vec1", ".to_vec2", ".to_vec3"];
    const ALLOWED: [(&str, &str); 2] =
        [("readout.rs", "the step's one read"), ("blueprint/kernel.rs", "SeedArtifact::fingerprint, for checkpoints")];
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.clone()];
    let mut found = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let rel = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if !rel.ends_with(".rs") || ALLOWED.iter().any(|(f, _)| *f == rel) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if !line.starts_with("//") && READS.iter().any(|r| line.contains(r)) {
                found.push(format!("{rel}:{}: {line}", n + 1));
            }
        }
    }
    assert!(found.is_empty(), "device reads outside the readout:\n{}", found.join("\n"));
}
