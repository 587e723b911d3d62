//! Restoring checkpoints a fuzzer damaged (decisions D13, D19). At start-up a tiny runtime (the
//! `sequences` host's shape: a 16-wide dense slot, a seed in TRAINING) saves one valid
//! checkpoint. Each input then damages a copy of it, in one of three ways chosen by its first
//! byte:
//!
//! - `0`: the manifest's JSON leaves replaced (each 3-byte chunk picks a leaf and a new value:
//!   a number, a string, a boolean or null), the files left intact — reaches every check a
//!   restore makes on the state itself;
//! - `1`: the rest of the input as `kasmina.safetensors`, the manifest's hash and size fixed to
//!   match — reaches the tensor parser and the shape checks;
//! - `2`: the rest of the input as the manifest itself.
//!
//! Oracle: no panic; a refused checkpoint leaves the fresh runtime untouched (no seed, step 0,
//! and it still trains a step); an accepted one trains a step without error.
//!
//! Run: `cargo xtask fuzz --target restore_checkpoint`.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use candle_core::{DType, Device, Tensor, Var};
use kasmina_runtime::blueprint::{BlueprintLibrary, builtin};
use kasmina_runtime::{Checkpoint, Kasmina, KasminaConfig, StepReport, TrainerState, sha256_hex};
use leyline::adaptation_command::Payload;
use leyline::{AdaptationCommand, CommandSeedOperation, CommandType, SeedLifecycleStage as Stage, SeedOperation};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const WIDTH: usize = 16;

/// The valid checkpoint every input starts from, and the library both runtimes use.
struct Base {
    library: BlueprintLibrary,
    manifest: Value,
    files: Vec<(String, Vec<u8>)>,
    _dir: tempfile::TempDir,
}

fn config() -> KasminaConfig {
    let mut c = KasminaConfig::default();
    c.training_steps = 1_000;
    c
}

fn runtime(library: &BlueprintLibrary) -> (Kasmina, Var) {
    let host = Var::from_tensor(&Tensor::ones((WIDTH, WIDTH), DType::F32, &Device::Cpu).expect("host")).expect("var");
    let kasmina = Kasmina::builder()
        .config(config())
        .host_vars(vec![("host.w".to_owned(), host.clone())])
        .blueprints(library.clone())
        .build()
        .expect("runtime");
    kasmina.slot("hidden", WIDTH).expect("slot");
    (kasmina, host)
}

/// One training step through the slot: forward, backward, `on_step`.
fn step(kasmina: &Kasmina, host: &Var) -> kasmina_runtime::Result<()> {
    let slot = kasmina.get_slot("hidden")?;
    let x = Tensor::ones((4, WIDTH), DType::F32, &Device::Cpu)?;
    let h = x.matmul(host.as_tensor())?;
    let loss = slot.forward(&h)?.sqr()?.mean_all()?;
    let grads = loss.backward()?;
    kasmina.on_step(&grads, StepReport::new(loss.to_scalar::<f32>()?))?;
    Ok(())
}

static BASE: LazyLock<Base> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temporary directory");
    let library = builtin::write_library(&dir.path().join("lib"), &[WIDTH], 3).expect("library");
    let (kasmina, host) = runtime(&library);
    let receipt = kasmina.apply(AdaptationCommand {
        command_id: "fuzz-germinate".into(),
        command_type: CommandType::CommandSeed as i32,
        target_seed_id: "seed-1".into(),
        payload: Some(Payload::SeedOperation(CommandSeedOperation {
            operation: SeedOperation::SeedOpGerminate as i32,
            blueprint_id: builtin::RESIDUAL_MLP.into(),
            parameters: Default::default(),
        })),
        annotations: [("slot".to_owned(), "hidden".to_owned())].into(),
        ..Default::default()
    });
    assert!(receipt.accepted, "{receipt:?}");
    for _ in 0..3 {
        step(&kasmina, &host).expect("step");
    }
    assert_eq!(kasmina.get_slot("hidden").expect("slot").stage(), Stage::SeedStageTraining);
    let saved = kasmina.save_checkpoint(dir.path().join("ckpt"), TrainerState::new()).expect("save");
    let read = |name: &str| std::fs::read(saved.dir.join(name)).expect("checkpoint file");
    let manifest = serde_json::from_slice(&read("manifest.json")).expect("manifest");
    let files = vec![("kasmina.safetensors".to_owned(), read("kasmina.safetensors"))];
    Base { library, manifest, files, _dir: dir }
});

/// How many leaves (numbers, strings, booleans, nulls) `v` has.
fn count_leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(count_leaves).sum(),
        Value::Array(a) => a.iter().map(count_leaves).sum(),
        _ => 1,
    }
}

/// Each 3-byte chunk: a leaf (the first two bytes) and its new value (the third).
fn mutate(manifest: &mut Value, data: &[u8]) {
    let leaves = count_leaves(manifest).max(1);
    for chunk in data.chunks_exact(3) {
        let index = usize::from(u16::from_le_bytes([chunk[0], chunk[1]])) % leaves;
        let value = match chunk[2] % 8 {
            0 => Value::Null,
            1 => Value::Bool(chunk[2] > 127),
            2 => Value::from(i64::from(chunk[2]) - 128),
            3 => Value::from(u64::MAX),
            4 => Value::from("SEED_STAGE_EMBARGOED"),
            5 => Value::from(f64::from(chunk[2]) / 7.0),
            6 => Value::from(""),
            _ => Value::from("18446744073709551615"),
        };
        set_leaf(manifest, index, value);
    }
}

/// Replaces the `index`-th leaf (document order) of `v`.
fn set_leaf(v: &mut Value, index: usize, value: Value) {
    fn walk(v: &mut Value, index: usize, seen: &mut usize, value: &mut Option<Value>) {
        match v {
            Value::Object(m) => m.values_mut().for_each(|x| walk(x, index, seen, value)),
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, index, seen, value)),
            leaf => {
                if *seen == index {
                    if let Some(new) = value.take() {
                        *leaf = new;
                    }
                }
                *seen += 1;
            }
        }
    }
    walk(v, index, &mut 0, &mut Some(value));
}

/// Writes a checkpoint directory (manifest, files) and points `LATEST` at it.
fn write(root: &Path, manifest: &Value, manifest_bytes: Option<&[u8]>, files: &[(String, Vec<u8>)]) -> PathBuf {
    let dir = root.join("ckpt-00000000000000000003-0");
    std::fs::create_dir_all(&dir).expect("directory");
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("file");
    }
    let json = serde_json::to_vec(manifest).expect("json");
    std::fs::write(dir.join("manifest.json"), manifest_bytes.unwrap_or(&json)).expect("manifest");
    std::fs::write(root.join("LATEST"), "ckpt-00000000000000000003-0\n").expect("LATEST");
    dir
}

fuzz_target!(|data: &[u8]| {
    let base = &*BASE;
    let Some((&mode, rest)) = data.split_first() else { return };
    let root = tempfile::tempdir().expect("temporary directory");
    let mut manifest = base.manifest.clone();
    let mut files = base.files.clone();
    match mode % 3 {
        0 => mutate(&mut manifest, rest),
        1 => {
            files[0].1 = rest.to_vec();
            for f in manifest["files"].as_array_mut().into_iter().flatten() {
                if f["name"] == "kasmina.safetensors" {
                    f["sha256"] = Value::from(sha256_hex(rest));
                    f["sizeBytes"] = Value::from(rest.len().to_string());
                }
            }
        }
        _ => {}
    }
    let raw = (mode % 3 == 2).then_some(rest);
    write(root.path(), &manifest, raw, &files);
    let (kasmina, host) = runtime(&base.library);
    match Checkpoint::load_latest(root.path()).map_err(|e| e.to_string()).and_then(|c| {
        kasmina.restore_checkpoint(&c).map_err(|e| e.to_string())
    }) {
        Ok(()) => {
            // A restored state trains (a step may still refuse, never panic).
            let _ = step(&kasmina, &host);
        }
        Err(message) => {
            assert!(!message.is_empty());
            assert_eq!(kasmina.stats().steps, 0, "a refused restore changed the counters");
            assert!(kasmina.seed_summaries().is_empty(), "a refused restore left a seed");
            step(&kasmina, &host).expect("an untouched runtime trains");
        }
    }
});
