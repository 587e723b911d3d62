//! `kasmina demo --checkpoint-dir … --resume` (decisions D13): a demo stopped at step k (the
//! hidden `--halt-at-step`, which saves and exits with status 3) and resumed in a fresh process
//! trains exactly as the uninterrupted demo — the same loss at every step, to the bit, the same
//! stage changes at the same steps and the same three runs — for k inside each stage.

use std::path::Path;

use serde_json::Value;

use crate::kasmina;

/// A short mlp demo: germinates at epoch 2; the helpful seed goes TRAINING (steps 157–260),
/// BLENDING (261–312), SHADOWING, PROBATIONARY (365–468), FOSSILIZED; the broken one is
/// EMBARGOED over steps 161–224.
/// The wall-clock budgets are set high: on a loaded machine a preempted probe must not send one
/// of the two runs compared down another path.
const DEMO: &[&str] = &[
    "demo",
    "--seed",
    "1",
    "--epochs",
    "20",
    "--germinate-by",
    "2",
    "--quiet",
    "--json",
    "--latency-budget-ms",
    "60000",
];

fn demo(out: &Path, extra: &[&str]) -> (std::process::ExitStatus, Value) {
    let output = kasmina().args(DEMO).arg("--out").arg(out).args(extra).output().unwrap();
    let summary = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status, summary)
}

fn losses(out: &Path) -> String {
    std::fs::read_to_string(out.join("train_loss.csv")).unwrap()
}

#[test]
fn a_demo_halted_inside_each_stage_and_resumed_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let (status, want) = demo(&reference, &[]);
    assert!(status.success());
    let transitions = want["transitions"].as_array().unwrap();
    let entered = |seed: &str, stage: &str| {
        transitions.iter().find(|t| t[1] == seed && t[2] == stage).and_then(|t| t[0].as_u64()).unwrap()
    };
    let halts = [
        ("TRAINING", entered("seed-adapter", "SEED_STAGE_TRAINING") + 20),
        ("BLENDING", entered("seed-adapter", "SEED_STAGE_BLENDING") + 10),
        ("PROBATIONARY", entered("seed-adapter", "SEED_STAGE_PROBATIONARY") + 10),
        ("EMBARGOED", entered("seed-broken", "SEED_STAGE_EMBARGOED") + 5),
    ];
    for (stage, k) in halts {
        let out = tmp.path().join(format!("out-{k}"));
        let ckpt = tmp.path().join(format!("ckpt-{k}"));
        let ckpt_flag = ["--checkpoint-dir", ckpt.to_str().unwrap()];
        let halt = k.to_string();
        let (status, _) = demo(&out, &[&ckpt_flag[..], &["--halt-at-step", &halt]].concat());
        assert_eq!(status.code(), Some(3), "{stage}: the halted demo exits with status 3");
        let (status, got) = demo(&out, &[&ckpt_flag[..], &["--resume"]].concat());
        assert!(status.success(), "{stage}: resume failed");
        assert!(losses(&out) == losses(&reference), "{stage} (k = {k}): the per-step losses differ");
        assert_eq!(got["transitions"], want["transitions"], "{stage} (k = {k})");
        assert_eq!(got["runs"], want["runs"], "{stage} (k = {k})");
        assert_eq!(got["seeds"], want["seeds"], "{stage} (k = {k})");
    }
}

#[test]
fn a_resume_with_no_checkpoint_starts_afresh_and_a_corrupt_one_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    let flags = ["--checkpoint-dir", ckpt.to_str().unwrap(), "--resume", "--epochs", "3"];
    let out = tmp.path().join("out");
    let output = kasmina().args(["demo", "--quiet", "--out"]).arg(&out).args(flags).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Every run ended and saved; corrupt the grown run's host weights.
    let latest = std::fs::read_to_string(ckpt.join("grown/LATEST")).unwrap();
    let file = ckpt.join("grown").join(latest.trim()).join("host.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let output = kasmina().args(["demo", "--quiet", "--out"]).arg(&out).args(flags).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("host.safetensors") && stderr.contains("corrupt"), "{stderr}");
}
