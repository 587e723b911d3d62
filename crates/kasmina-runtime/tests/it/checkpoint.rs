//! Checkpoints (decisions D13): a run saved at step k and resumed in a fresh runtime continues
//! exactly as the uninterrupted run did — the same loss at every step, to the bit, and the same
//! stages — for k inside every stage; a bad checkpoint is a typed error that changes nothing;
//! a command accepted before a restart is a replay after it.

use std::path::Path;
use std::time::Duration;

use kasmina_runtime::{Checkpoint, CheckpointError, Kasmina, TrainerState, blueprint::builtin};
use leyline::{SeedLifecycleStage as Stage, SeedOperation};

use crate::harness::{HAPPY_PATH, Rig, WIDTH, config};

const GERMINATE_AT: u64 = 30;
const HOST_FILE: &str = "host.safetensors";

/// What one step left: its loss (as bits) and the seed's stage after it.
type Trace = Vec<(u64, u32, Stage)>;

/// The scripted run: GERMINATE at step 30, CULL at `cull_at`, one second of clock per step,
/// an epoch (validation, counterfactual) every 10 steps; up to step `until`.
fn drive(rig: &mut Rig, until: u64, cull_at: Option<u64>) -> Trace {
    let mut trace = Vec::new();
    while rig.step < until {
        if rig.step == GERMINATE_AT {
            let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
            rig.kasmina.submit(&rig.sign(&cmd)).unwrap();
        }
        if Some(rig.step) == cull_at {
            let cmd = rig.seed_op(SeedOperation::SeedOpCull, "seed-1", "");
            rig.kasmina.submit(&rig.sign(&cmd)).unwrap();
        }
        rig.mock.increment(Duration::from_secs(1));
        rig.step();
        if rig.step.is_multiple_of(10) {
            rig.epoch();
        }
        let loss = rig.losses.last().copied().unwrap_or(f32::NAN);
        trace.push((rig.step, loss.to_bits(), rig.stage()));
    }
    trace
}

fn host_bytes(rig: &Rig, dir: &Path) -> Vec<u8> {
    let path = dir.join("host-save.safetensors");
    rig.host.varmap.save(&path).unwrap();
    std::fs::read(&path).unwrap()
}

fn save(rig: &Rig, root: &Path) -> kasmina_runtime::SavedCheckpoint {
    let scratch = tempfile::tempdir().unwrap();
    let trainer = TrainerState::new()
        .file(HOST_FILE, host_bytes(rig, scratch.path()))
        .meta("step", rig.step)
        .meta("epoch", rig.epoch)
        .meta("next_id", rig.next_id);
    rig.kasmina.save_checkpoint(root, trainer).unwrap()
}

/// A fresh rig (a new process: new runtime, new clock at zero, new host) resumed from `root`.
fn resume(root: &Path) -> Rig {
    let mut rig = Rig::new(config());
    let checkpoint = Checkpoint::load_latest(root).unwrap();
    rig.kasmina.restore_checkpoint(&checkpoint).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join(HOST_FILE);
    std::fs::write(&path, checkpoint.file(HOST_FILE).unwrap()).unwrap();
    rig.host.varmap.load(&path).unwrap();
    let meta = |k: &str| checkpoint.meta(k).unwrap().parse::<u64>().unwrap();
    rig.step = meta("step");
    rig.epoch = u32::try_from(meta("epoch")).unwrap();
    rig.next_id = meta("next_id");
    rig
}

/// The first step (after `after`) at which the reference run was in `stage`, plus 3.
fn inside(reference: &Trace, stage: Stage) -> u64 {
    let first = reference.iter().find(|(_, _, s)| *s == stage).unwrap_or_else(|| panic!("never in {stage:?}"));
    first.0 + 3
}

fn check_resume(reference: &Trace, until: u64, cull_at: Option<u64>, k: u64, what: &str) {
    let root = tempfile::tempdir().unwrap();
    let mut first = Rig::new(config());
    let head = drive(&mut first, k, cull_at);
    assert_eq!(head, reference[..head.len()], "{what}: the first {k} steps differ from the reference");
    let saved = save(&first, root.path());
    assert_eq!(saved.step, first.kasmina.stats().steps);
    drop(first);
    let mut resumed = resume(root.path());
    let tail = drive(&mut resumed, until, cull_at);
    let expected = &reference[head.len()..];
    assert_eq!(tail.len(), expected.len(), "{what}");
    for (got, want) in tail.iter().zip(expected) {
        assert_eq!(got, want, "{what}: resumed at step {k}, the run diverged (step, loss bits, stage)");
    }
}

#[test]
fn a_run_resumed_inside_each_stage_of_the_happy_path_is_bit_identical() {
    const UNTIL: u64 = 200;
    let mut reference_rig = Rig::new(config());
    let reference = drive(&mut reference_rig, UNTIL, None);
    assert_eq!(reference.last().map(|t| t.2), Some(Stage::SeedStageFossilized), "the reference run must fossilize");
    for stage in HAPPY_PATH {
        check_resume(&reference, UNTIL, None, inside(&reference, stage), stage.as_str_name());
    }
}

#[test]
fn a_run_resumed_during_blend_out_and_embargo_is_bit_identical() {
    const UNTIL: u64 = 200;
    // CULL in PROBATIONARY: the seed blends out, then sits out its 30 s embargo (30 steps of
    // this run's clock), then resets to DORMANT.
    let cull_at = {
        let mut probe = Rig::new(config());
        let trace = drive(&mut probe, UNTIL, None);
        inside(&trace, Stage::SeedStageProbationary)
    };
    let mut reference_rig = Rig::new(config());
    let reference = drive(&mut reference_rig, UNTIL, Some(cull_at));
    let stages: Vec<Stage> = reference.iter().map(|t| t.2).collect();
    assert!(stages.contains(&Stage::SeedStageEmbargoed), "{stages:?}");
    assert_eq!(stages.last(), Some(&Stage::SeedStageDormant), "the reference run must reset");
    check_resume(&reference, UNTIL, Some(cull_at), cull_at + 2, "blend-out");
    check_resume(&reference, UNTIL, Some(cull_at), inside(&reference, Stage::SeedStageEmbargoed), "EMBARGOED");
}

#[test]
fn a_command_accepted_before_a_restart_is_a_replay_after_it() {
    let root = tempfile::tempdir().unwrap();
    let mut rig = Rig::new(config());
    rig.train(5);
    let cmd = rig.seed_op(SeedOperation::SeedOpGerminate, "seed-1", "BP001");
    let signed = rig.sign(&cmd);
    assert!(rig.kasmina.submit(&signed).is_ok());
    rig.step();
    save(&rig, root.path());
    let resumed = resume(root.path());
    let refusal = resumed.kasmina.submit(&signed).unwrap_err();
    assert_eq!(refusal.reason, "nonce_replayed", "{refusal:?}");
    assert_eq!(resumed.stage(), Stage::SeedStageTraining);
}

/// Saves a run with a seed in TRAINING under `root`, returns the checkpoint's directory.
fn saved_run(root: &Path) -> std::path::PathBuf {
    let mut rig = Rig::new(config());
    drive(&mut rig, GERMINATE_AT + 5, None);
    save(&rig, root).dir
}

/// A fresh rig, its state before a restore attempt (step, stage) and the attempt's error.
fn refused(root: &Path, rig: Rig) -> (Rig, CheckpointError) {
    let err = Checkpoint::load_latest(root).and_then(|c| rig.kasmina.restore_checkpoint(&c)).unwrap_err();
    (rig, err)
}

fn assert_untouched(rig: &mut Rig) {
    assert_eq!(rig.kasmina.stats().steps, 0);
    assert_eq!(rig.stage(), Stage::SeedStageDormant);
    assert!(rig.kasmina.seed_summaries().is_empty());
    rig.train(3);
    assert_eq!(rig.kasmina.stats().steps, 3, "the runtime still trains");
}

#[test]
fn a_truncated_a_corrupt_or_a_missing_file_is_a_typed_error_naming_it() {
    for (damage, check) in [
        (
            "truncate",
            (|e: &CheckpointError| matches!(e, CheckpointError::Truncated { name, .. } if name == "kasmina.safetensors"))
                as fn(&CheckpointError) -> bool,
        ),
        ("flip", |e| matches!(e, CheckpointError::HashMismatch { name, .. } if name == HOST_FILE)),
        ("remove", |e| matches!(e, CheckpointError::MissingFile { name } if name == HOST_FILE)),
        ("manifest", |e| matches!(e, CheckpointError::MissingFile { name } if name == "manifest.json")),
    ] {
        let root = tempfile::tempdir().unwrap();
        let dir = saved_run(root.path());
        match damage {
            "truncate" => {
                let p = dir.join("kasmina.safetensors");
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
            }
            "flip" => {
                let p = dir.join(HOST_FILE);
                let mut bytes = std::fs::read(&p).unwrap();
                let i = bytes.len() - 3;
                bytes[i] ^= 0x40;
                std::fs::write(&p, bytes).unwrap();
            }
            "remove" => std::fs::remove_file(dir.join(HOST_FILE)).unwrap(),
            _ => std::fs::remove_file(dir.join("manifest.json")).unwrap(),
        }
        let (mut rig, err) = refused(root.path(), Rig::new(config()));
        assert!(check(&err), "{damage}: {err:?}");
        assert!(!err.to_string().is_empty());
        assert_untouched(&mut rig);
    }
}

#[test]
fn a_manifest_from_a_newer_schema_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = saved_run(root.path());
    let p = dir.join("manifest.json");
    let text = std::fs::read_to_string(&p).unwrap().replacen("\"schemaVersion\": 1", "\"schemaVersion\": 2", 1);
    std::fs::write(&p, text).unwrap();
    let (mut rig, err) = refused(root.path(), Rig::new(config()));
    assert!(matches!(err, CheckpointError::NewerSchema { found: 2, supported: 1 }), "{err:?}");
    assert_untouched(&mut rig);
}

#[test]
fn a_slot_of_another_width_or_a_changed_blueprint_is_refused_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    saved_run(root.path());
    // Another width: a runtime whose slot "hidden" is half as wide.
    let lib = tempfile::tempdir().unwrap();
    let other = Kasmina::builder()
        .config(config())
        .blueprints(builtin::write_library(lib.path(), &[WIDTH / 2], 7).unwrap())
        .build()
        .unwrap();
    let _slot = other.slot("hidden", WIDTH / 2).unwrap();
    let err = Checkpoint::load_latest(root.path()).and_then(|c| other.restore_checkpoint(&c)).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::SlotMismatch { slot, reason } if slot == "hidden" && reason.contains("width")),
        "{err:?}"
    );
    assert!(other.seed_summaries().is_empty());

    // The blueprint's artefact changed: the library written with another seed.
    let factory: crate::harness::RuntimeFactory = Box::new(|_dir, _mock| {
        let lib = tempfile::tempdir().unwrap().keep();
        std::sync::Arc::new(builtin::write_library(&lib, &[WIDTH, WIDTH / 2], 8).unwrap())
    });
    let (mut rig, err) = refused(root.path(), Rig::with_blueprints(config(), Some(factory)));
    assert!(
        matches!(&err, CheckpointError::Blueprint { seed_id, blueprint_id, reason } if seed_id == "seed-1" && blueprint_id == "BP001" && reason.contains("changed")),
        "{err:?}"
    );
    assert_untouched(&mut rig);
}

#[test]
fn a_checkpoint_restores_only_into_the_settings_it_was_taken_with() {
    let root = tempfile::tempdir().unwrap();
    saved_run(root.path());
    let mut changed = config();
    changed.blending_steps += 1;
    let (mut rig, err) = refused(root.path(), Rig::new(changed));
    assert!(matches!(&err, CheckpointError::Config { field, .. } if field == "blending_steps"), "{err:?}");
    // The refusal is an ERROR event naming the problem.
    let failed = rig.events("checkpoint_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].attributes["operation"], "restore");
    assert!(failed[0].attributes["error"].contains("blending_steps"), "{failed:?}");
    assert_untouched(&mut rig);
}

#[test]
fn saves_are_atomic_keep_two_and_an_empty_root_has_no_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let err = Checkpoint::load_latest(root.path()).unwrap_err();
    assert!(matches!(err, CheckpointError::NoCheckpoint { .. }), "{err:?}");
    let mut rig = Rig::new(config());
    let mut dirs = Vec::new();
    for _ in 0..3 {
        rig.train(2);
        dirs.push(save(&rig, root.path()).dir);
    }
    // A save a crash interrupted leaves a staging directory, never a LATEST naming it.
    std::fs::create_dir(root.path().join(".staging-1-2")).unwrap();
    let latest = Checkpoint::load_latest(root.path()).unwrap();
    assert_eq!(latest.dir(), dirs[2]);
    let saved = rig.events("checkpoint_saved");
    assert_eq!(saved.len(), 3);
    assert_eq!(saved[2].attributes["step"], "6");
    assert_eq!(latest.step(), 6);
    assert!(!dirs[0].exists(), "the oldest of three is pruned");
    assert!(dirs[1].exists() && dirs[2].exists());
    let manifest = latest.manifest();
    assert_eq!(manifest.schema_version, 1);
    assert!(manifest.files.iter().all(|f| f.sha256.len() == 64));
}

/// Found by the `restore_checkpoint` fuzz target: a checkpoint claiming step 2^64 − 1 was
/// restored and the next step overflowed the counter. Counts beyond what a run could reach are
/// refused.
#[test]
fn regression_counts_no_run_could_reach_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = saved_run(root.path());
    let p = dir.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    manifest["kasmina"]["step"] = serde_json::Value::from("18446744073709551615");
    std::fs::write(&p, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (mut rig, err) = refused(root.path(), Rig::new(config()));
    assert!(matches!(&err, CheckpointError::Invalid { what, .. } if what == "step"), "{err:?}");
    assert_untouched(&mut rig);
}
