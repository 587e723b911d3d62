//! `cargo xtask crash-test [--kills N] [--debug] [--seed S]`: kills `kasmina demo` with SIGKILL
//! at random points — during training and during checkpoint saves — and resumes it each time
//! with `--resume`, until it finishes (decisions D13).
//!
//! After every kill each run's checkpoint directory must hold a valid checkpoint (`LATEST`
//! names a directory whose manifest lists files of the right size and SHA-256) or none yet; no
//! process may panic; the finished demo must report the same seed stages at the same steps, the
//! same three runs and the same per-step losses as an uninterrupted run. Figures go to
//! `target/crash-test/summary.json`. `.ci/run` runs 10 kills on the debug build; the nightly
//! workflow runs 50 on the release build.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The demo every process runs: short, germinating early, a checkpoint every 7 steps (so a
/// random kill often lands inside a save). The wall-clock budgets are set high: a run killed and resumed
/// many times on a loaded machine must not take another path than the reference for a preempted probe.
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
    "--checkpoint-every",
    "7",
    "--latency-budget-ms",
    "60000",
];
const RUNS: [&str; 3] = ["grown", "host_only", "static"];

struct Options {
    kills: u32,
    debug: bool,
    seed: u64,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options { kills: 50, debug: false, seed: 1 };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--kills" => o.kills = it.next().context("--kills needs a value")?.parse().context("--kills")?,
            "--seed" => o.seed = it.next().context("--seed needs a value")?.parse().context("--seed")?,
            "--debug" => o.debug = true,
            other => bail!("unexpected argument `{other}` (crash-test takes --kills N, --seed S, --debug)"),
        }
    }
    Ok(o)
}

/// xorshift64*: the kill times, repeatable from `--seed`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// What one run of the binary did.
struct Outcome {
    killed: bool,
    exit: Option<i32>,
    stderr: String,
    stdout: Vec<u8>,
}

fn spawn_and_maybe_kill(binary: &Path, out: &Path, ckpt: &Path, kill_after: Option<Duration>) -> Result<Outcome> {
    let stderr_path = out.with_extension("stderr");
    let mut child = Command::new(binary)
        .args(DEMO)
        .arg("--out")
        .arg(out)
        .arg("--checkpoint-dir")
        .arg(ckpt)
        .arg("--resume")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()
        .with_context(|| format!("running {}", binary.display()))?;
    let mut stdout = child.stdout.take().context("the demo's stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let started = Instant::now();
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if kill_after.is_some_and(|d| started.elapsed() >= d) {
            child.kill().context("SIGKILL")?;
            killed = true;
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    Ok(Outcome { killed, exit: status.code(), stderr, stdout })
}

/// Checks every run's checkpoint: none yet, or `LATEST` naming a complete one. Returns how
/// many staging directories (saves a kill interrupted) were found.
fn check_checkpoints(ckpt: &Path) -> Result<usize> {
    let mut staging = 0;
    for run in RUNS {
        let dir = ckpt.join(run);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        staging += entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".staging-")).count();
        let latest = dir.join("LATEST");
        if !latest.exists() {
            continue;
        }
        let name = std::fs::read_to_string(&latest)?;
        let cdir = dir.join(name.trim());
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(cdir.join("manifest.json")).with_context(|| format!("{}: no manifest", cdir.display()))?,
        )
        .with_context(|| format!("{}: manifest", cdir.display()))?;
        for f in manifest["files"].as_array().context("manifest: files")? {
            let name = f["name"].as_str().context("manifest: file name")?;
            let bytes =
                std::fs::read(cdir.join(name)).with_context(|| format!("{}: {name} missing", cdir.display()))?;
            let size: u64 =
                f["sizeBytes"].as_str().and_then(|s| s.parse().ok()).or(f["sizeBytes"].as_u64()).unwrap_or(0);
            ensure!(bytes.len() as u64 == size, "{}: {name} is {} bytes, manifest {size}", cdir.display(), bytes.len());
            let hash: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            ensure!(f["sha256"] == hash.as_str(), "{}: {name} hash mismatch", cdir.display());
        }
    }
    Ok(staging)
}

fn build(root: &Path, debug: bool) -> Result<PathBuf> {
    let mut build = crate::cargo();
    build.args(["build", "--locked", "-p", "kasmina-cli", "--bin", "kasmina"]).current_dir(root);
    if !debug {
        build.arg("--release");
    }
    ensure!(build.status().context("running cargo build")?.success(), "building kasmina failed");
    Ok(root.join("target").join(if debug { "debug" } else { "release" }).join("kasmina"))
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let binary = build(root, o.debug)?;
    let base = root.join("target/crash-test");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;

    // The uninterrupted reference (its own checkpoint directory, never killed).
    let started = Instant::now();
    let reference = spawn_and_maybe_kill(&binary, &base.join("reference"), &base.join("reference-ckpt"), None)?;
    ensure!(reference.exit == Some(0), "the reference demo failed:\n{}", reference.stderr);
    let run_length = started.elapsed();
    let want: Value = serde_json::from_slice(&reference.stdout).context("the reference summary")?;

    let (out, ckpt) = (base.join("crashed"), base.join("crashed-ckpt"));
    let mut rng = Rng(o.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (mut kills, mut processes, mut interrupted_saves, mut episodes) = (0u32, 0u32, 0usize, 0u32);
    let window = u64::try_from(run_length.as_millis()).unwrap_or(2_000).max(50);
    // Episodes: a fresh demo killed and resumed until it finishes by itself, then checked
    // against the reference; as many as it takes to reach the kills asked for.
    while kills < o.kills || episodes == 0 {
        episodes += 1;
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(&ckpt);
        let last = loop {
            processes += 1;
            ensure!(processes <= o.kills * 4 + 20, "the demo never finished after {processes} starts");
            let kill_after = Duration::from_millis(20 + rng.below(window));
            let outcome = spawn_and_maybe_kill(&binary, &out, &ckpt, Some(kill_after))?;
            ensure!(!outcome.stderr.contains("panicked"), "a demo panicked:\n{}", outcome.stderr);
            interrupted_saves += check_checkpoints(&ckpt).context("after a kill, a checkpoint is not valid")?;
            if !outcome.killed {
                ensure!(
                    outcome.exit == Some(0),
                    "a resumed demo failed (exit {:?}):\n{}",
                    outcome.exit,
                    outcome.stderr
                );
                break outcome;
            }
            kills += 1;
        };
        let got: Value = serde_json::from_slice(&last.stdout).context("the final summary")?;
        for key in ["transitions", "runs", "seeds", "steps"] {
            ensure!(got[key] == want[key], "episode {episodes}: `{key}` differs:\n{}\nvs\n{}", got[key], want[key]);
        }
        let losses = |d: &Path| std::fs::read_to_string(d.join("train_loss.csv")).unwrap_or_default();
        ensure!(losses(&out) == losses(&base.join("reference")), "episode {episodes}: the per-step losses differ");
    }
    let summary = serde_json::json!({
        "kills": kills,
        "episodes": episodes,
        "processes": processes,
        "kills_that_interrupted_a_save": interrupted_saves,
        "reference_seconds": run_length.as_secs_f64(),
        "total_seconds": started.elapsed().as_secs_f64(),
        "build": if o.debug { "debug" } else { "release" },
    });
    std::fs::write(base.join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n")?;
    eprintln!(
        "crash-test: passed — {kills} SIGKILLs ({interrupted_saves} during a save), {processes} processes, \
         {episodes} demos; each finished with the stages, runs and per-step losses of an uninterrupted run ({})",
        base.join("summary.json").display()
    );
    Ok(())
}
