//! `cargo xtask fuzz`: build every cargo-fuzz target of `fuzz/`, run each for a while, report.
//!
//! Installs cargo-fuzz when `cargo fuzz` is missing, builds all targets at once, seeds each
//! target's corpus (`fuzz/corpus/<target>/`, git-ignored) from the committed
//! `fuzz/seeds/<target>/`, runs each target for `--seconds` (default 60), and prints a table of
//! inputs run and inputs per second, parsed from libFuzzer's final statistics. A target that
//! crashes fails the command, with the artefact and how to reproduce it. The full libFuzzer
//! output of each target is kept in `fuzz/target/logs/<target>.log`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{Context, Result, bail};

const USAGE: &str = "cargo xtask fuzz [--seconds N] [--target NAME]... [--jobs N]";

// `--sanitizer none`: the workspace denies `unsafe_code`, so the memory errors AddressSanitizer
// finds cannot come from our code (the few unsafe dependencies are well fuzzed); without it the
// targets run about twice as fast, and panics (our oracles) are caught either way.
// `--release` alone would also turn off debug assertions and overflow checks (cargo-fuzz keeps
// them only without it): `--debug-assertions` keeps them, so an arithmetic overflow is a crash.
const BUILD_FLAGS: [&str; 4] = ["--sanitizer", "none", "--release", "--debug-assertions"];

#[derive(Debug)]
struct Options {
    seconds: u64,
    targets: Vec<String>,
    /// libFuzzer processes per target (`-fork=N` above 1).
    jobs: u32,
}

fn parse(rest: &[String]) -> Result<Options> {
    let mut o = Options { seconds: 60, targets: Vec::new(), jobs: 1 };
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value\nusage: {USAGE}"));
        match a.as_str() {
            "--seconds" => o.seconds = value("--seconds")?.parse().context("--seconds: not a number")?,
            "--target" => o.targets.push(value("--target")?.clone()),
            "--jobs" => o.jobs = value("--jobs")?.parse().context("--jobs: not a number")?,
            other => bail!("unexpected argument `{other}`\nusage: {USAGE}"),
        }
    }
    if o.seconds == 0 || o.jobs == 0 {
        bail!("--seconds and --jobs must be at least 1");
    }
    Ok(o)
}

/// One target's run.
#[derive(Debug)]
struct Outcome {
    target: String,
    inputs: Option<u64>,
    /// libFuzzer's own rate (the run may outlast `--seconds`: replaying a large corpus at start
    /// is not counted against `-max_total_time`).
    per_second: Option<u64>,
    /// The crash artefact, when the target failed.
    failure: Option<String>,
}

pub(crate) fn run(root: &Path, rest: &[String]) -> Result<()> {
    let opts = parse(rest)?;
    let fuzz_dir = root.join("fuzz");
    ensure_cargo_fuzz()?;
    let all = list_targets(&fuzz_dir)?;
    let targets = if opts.targets.is_empty() { all.clone() } else { opts.targets.clone() };
    if let Some(unknown) = targets.iter().find(|t| !all.contains(t)) {
        bail!("no fuzz target `{unknown}` (targets: {})", all.join(", "));
    }
    let started = Instant::now();
    let mut build = cargo_fuzz(&fuzz_dir);
    build.arg("build").args(BUILD_FLAGS);
    eprintln!("$ cargo +nightly fuzz build {}", BUILD_FLAGS.join(" "));
    if !build.status().context("running cargo fuzz build")?.success() {
        bail!("cargo fuzz build failed");
    }
    eprintln!("fuzz: built {} targets in {:.0} s", all.len(), started.elapsed().as_secs_f64());
    let mut outcomes = Vec::new();
    for target in &targets {
        seed_corpus(&fuzz_dir, target)?;
        eprintln!("fuzz: {target} for {} s", opts.seconds);
        outcomes.push(run_target(&fuzz_dir, target, &opts)?);
    }
    print_table(&outcomes);
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    for o in &failures {
        let artifact = o.failure.as_deref().unwrap_or("?");
        eprintln!("fuzz: {} CRASHED; input: {artifact}", o.target);
        eprintln!("  reproduce: cd fuzz && cargo +nightly fuzz run {} {} {artifact}", o.target, BUILD_FLAGS.join(" "));
        eprintln!("  log: {}", log_path(&fuzz_dir, &o.target).display());
    }
    if !failures.is_empty() {
        bail!("{} fuzz target(s) crashed", failures.len());
    }
    Ok(())
}

/// `cargo +nightly fuzz` in `fuzz/`. The rustup proxy picks the toolchain, so the variables
/// the outer (stable) cargo set for this process must not leak into the nightly one.
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz"]).current_dir(fuzz_dir);
    for var in ["CARGO", "RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    cmd
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = cargo_fuzz(Path::new(".")).arg("--version").output().is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("$ cargo install cargo-fuzz --locked");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()
        .context("running cargo install")?;
    if !status.success() {
        bail!("`cargo install cargo-fuzz --locked` failed");
    }
    Ok(())
}

fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let out = cargo_fuzz(fuzz_dir).arg("list").output().context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!("cargo fuzz list failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

/// Copies the committed seeds of `target` (if any) into its corpus directory.
fn seed_corpus(fuzz_dir: &Path, target: &str) -> Result<()> {
    let corpus = fuzz_dir.join("corpus").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let Ok(seeds) = fs::read_dir(fuzz_dir.join("seeds").join(target)) else { return Ok(()) };
    for seed in seeds {
        let path = seed?.path();
        if let Some(name) = path.file_name().filter(|_| path.is_file()) {
            fs::copy(&path, corpus.join(name)).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

fn run_target(fuzz_dir: &Path, target: &str, opts: &Options) -> Result<Outcome> {
    let mut cmd = cargo_fuzz(fuzz_dir);
    cmd.args(["run", target]).args(BUILD_FLAGS).arg("--");
    cmd.args([format!("-max_total_time={}", opts.seconds), "-print_final_stats=1".to_owned()]);
    if opts.jobs > 1 {
        cmd.arg(format!("-fork={}", opts.jobs));
    }
    let Output { status, stdout, stderr } = cmd.output().with_context(|| format!("running cargo fuzz run {target}"))?;
    let log = [stdout, stderr].concat();
    let log = String::from_utf8_lossy(&log);
    let log_file = log_path(fuzz_dir, target);
    fs::create_dir_all(log_file.parent().context("log directory")?)?;
    fs::write(&log_file, log.as_bytes()).with_context(|| format!("writing {}", log_file.display()))?;
    let failure = (!status.success()).then(|| {
        let artifact = log.lines().rev().find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()));
        artifact.map_or_else(|| format!("(no artefact; see {})", log_file.display()), str::to_owned)
    });
    let (inputs, per_second) = (final_stat(&log, "number_of_executed_units"), final_stat(&log, "average_exec_per_sec"));
    let inputs = inputs.or_else(|| fork_status_count(&log));
    let per_second = per_second.or_else(|| inputs.map(|n| n / opts.seconds));
    Ok(Outcome { target: target.to_owned(), inputs, per_second, failure })
}

fn log_path(fuzz_dir: &Path, target: &str) -> PathBuf {
    fuzz_dir.join("target").join("logs").join(format!("{target}.log"))
}

/// One of libFuzzer's final statistics (`-print_final_stats=1`): `stat::NAME: VALUE`.
fn final_stat(log: &str, name: &str) -> Option<u64> {
    let prefix = format!("stat::{name}:");
    log.lines().rev().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

/// Inputs run in fork mode, which prints no final statistics: its last status line `#N: cov: ...`.
fn fork_status_count(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| l.strip_prefix('#')?.split_once(": cov:")?.0.parse().ok())
}

fn print_table(outcomes: &[Outcome]) {
    println!("{:<20} {:>12} {:>10}  result", "target", "inputs", "inputs/s");
    for o in outcomes {
        let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let (inputs, rate) = (show(o.inputs), show(o.per_second));
        let result = if o.failure.is_some() { "CRASH" } else { "ok" };
        println!("{:<20} {inputs:>12} {rate:>10}  {result}", o.target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_final_stats_and_fork_status_lines() {
        let stats =
            "#1000\tDONE cov: 10\nstat::number_of_executed_units: 123456\nstat::average_exec_per_sec:     2057\n";
        assert_eq!(final_stat(stats, "number_of_executed_units"), Some(123_456));
        assert_eq!(final_stat(stats, "average_exec_per_sec"), Some(2057));
        assert_eq!(final_stat(stats, "peak_rss_mb"), None);
        let fork = "#5000: cov: 100 ft: 200 corp: 10 exec/s 80 oom/timeout/crash: 0/0/0 time: 60s job: 3\n";
        assert_eq!(fork_status_count(fork), Some(5000));
        assert_eq!(fork_status_count("nothing"), None);
    }

    #[test]
    fn options_parse() {
        let args: Vec<String> =
            ["--seconds", "5", "--target", "a", "--target", "b"].iter().map(|s| (*s).to_owned()).collect();
        let o = parse(&args).unwrap();
        assert_eq!((o.seconds, o.targets, o.jobs), (5, vec!["a".to_owned(), "b".to_owned()], 1));
        assert!(parse(&["--seconds".to_owned()]).is_err());
        assert!(parse(&["--bogus".to_owned()]).is_err());
    }
}
