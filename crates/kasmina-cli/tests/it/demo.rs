//! `kasmina demo --task cnn|transformer` end to end on the committed datasets (tiny subsets, a
//! forced germination), and the errors for missing data.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::kasmina;

/// The repository's `datasets/`.
fn datasets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets")
}

/// Runs `kasmina demo` with `args` in `cwd`, writing to `out`.
fn demo(cwd: &Path, out: &Path, args: &[&str]) -> Output {
    kasmina()
        .arg("demo")
        .args(args)
        .arg("--out")
        .arg(out)
        .args(["--quiet", "--json"])
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A short grown run: a tiny subset, germination forced at the end of the first epoch, a short
/// embargo; checks the outputs and that the broken seed was culled. Returns the summary.
fn grown_run(task: &str, cwd: &Path, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = [&["--task", task, "--epochs", "3", "--germinate-by", "0", "--embargo-steps", "4"], extra].concat();
    let run = demo(cwd, &out, &args);
    assert!(run.status.success(), "demo --task {task} failed: {}", String::from_utf8_lossy(&run.stderr));
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    for file in ["telemetry.jsonl", "seed_states.json", "summary.json", "train_loss.csv", "training.png"] {
        let len = std::fs::metadata(out.join(file)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{file} missing or empty");
    }
    let csv = std::fs::read_to_string(out.join("train_loss.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, summary["steps"].as_u64().unwrap() + 1, "one line per step");
    assert_eq!(summary["task"], task);
    let runs = &summary["runs"];
    for key in ["host_only", "grown"] {
        assert!(runs[key]["final_val_loss"].as_f64().unwrap().is_finite(), "{key}: {runs}");
    }
    assert!(runs.get("static").is_some(), "static is recorded (null without a fossilized seed)");
    let seeds = summary["seeds"].as_array().unwrap();
    let broken = seeds.iter().find(|s| s["seed_id"] == "seed-broken").expect("the broken seed was planted");
    let stages: Vec<&str> = broken["stages"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(stages.contains(&"SEED_STAGE_CULLED"), "broken seed not culled: {stages:?}");
    assert_eq!(broken["cull_reason"], "seed_loss_not_finite");
    assert_eq!(summary["isolation_violations"], 0);
    summary
}

#[test]
fn demo_cnn_grows_in_image_slots_and_culls_the_broken_seed() {
    let data = datasets();
    let summary = grown_run(
        "cnn",
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["--limit", "256", "--batch", "32", "--data-dir", data.to_str().unwrap()],
    );
    let seeds = summary["seeds"].as_array().unwrap();
    let broken = seeds.iter().find(|s| s["seed_id"] == "seed-broken").unwrap();
    assert_eq!((broken["slot"].as_str(), broken["blueprint"].as_str()), (Some("conv1"), Some("BP190")));
    assert!(seeds.iter().any(|s| s["slot"] == "conv2" && s["blueprint"] == "BP100"), "{seeds:?}");
    assert!(summary.get("final_val_bpb").is_none());
}

#[test]
fn demo_transformer_grows_in_sequence_slots_and_reports_bits_per_byte() {
    // No --data-dir: the datasets are found by walking up from the package directory.
    let summary = grown_run("transformer", Path::new(env!("CARGO_MANIFEST_DIR")), &["--limit", "128"]);
    let seeds = summary["seeds"].as_array().unwrap();
    let broken = seeds.iter().find(|s| s["seed_id"] == "seed-broken").unwrap();
    assert_eq!((broken["slot"].as_str(), broken["blueprint"].as_str()), (Some("embed"), Some("BP290")));
    assert!(seeds.iter().any(|s| s["slot"] == "block1" && s["blueprint"] == "BP200"), "{seeds:?}");
    let bpb = summary["final_val_bpb"].as_f64().unwrap();
    let loss = summary["final_val_loss"].as_f64().unwrap();
    assert!((bpb - loss / std::f64::consts::LN_2).abs() < 1e-6, "bits per byte {bpb} for loss {loss}");
    assert!(bpb > 0.5 && bpb < 8.5, "bits per byte {bpb}");
    assert!(summary["runs"]["host_only"]["final_val_bpb"].as_f64().is_some());
}

#[test]
fn a_missing_data_file_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let out = empty.path().join("out");
    let run = demo(empty.path(), &out, &["--task", "cnn", "--data-dir", empty.path().to_str().unwrap()]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let expected = empty.path().join("digits/digits.csv.gz");
    assert!(stderr.contains(&expected.display().to_string()), "the error names the file: {stderr}");
    assert!(stderr.contains("not found"), "{stderr}");

    // Without --data-dir, from a directory with no `datasets/` above it.
    let run = demo(empty.path(), &out, &["--task", "transformer"]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("datasets/text/pride_and_prejudice.txt not found"), "{stderr}");
    assert!(stderr.contains("--data-dir"), "{stderr}");
}

#[test]
fn flags_of_another_task_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = demo(dir.path(), &out, &["--task", "cnn", "--data", "x.csv"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--data is for --task mlp"));
    let run = demo(dir.path(), &out, &["--data-dir", dir.path().to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--data-dir is for"));
}
