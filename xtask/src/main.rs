//! Repository automation for the Kasmina workspace (rust-analyzer's xtask pattern).
//!
//! `cargo xtask proto [--check]` regenerates (or checks) the committed Leyline code,
//! `cargo xtask layering` checks the crate dependency graph against the allowed edges,
//! `cargo xtask bench [--strict] [--save-baseline]` runs the criterion benches and writes
//! `target/bench-results/summary.json`, `cargo xtask fuzz [--seconds N]` runs every cargo-fuzz
//! target of `fuzz/` for a while, `cargo xtask cuda-build` builds the CUDA binaries and the GPU
//! machine's `dist/` (no GPU needed), and `cargo xtask ci` runs the CI sequence locally.
//!
//! Paths come from `CARGO_MANIFEST_DIR`, never from the working directory.

mod bench;
mod crash;
mod cuda;
mod fastgen;
mod fuzz;
mod layering;
mod peer;
mod proto;
mod soak;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  proto [--check]                   regenerate crates/leyline/src/generated (or fail on drift)
  layering                          check the crate graph against the allowed dependency edges
  bench [--strict] [--save-baseline] [--filter RE]
                                    run the criterion benches, write target/bench-results/summary.json
  bench --peer [--rounds N] [--core C] [--quick] [--strict]
                                    our Leyline codec against the Python peer's (upb), interleaved
                                    on one pinned core; per-round ratios and their median
  fuzz [--seconds N] [--target NAME]... [--jobs N]
                                    build the fuzz targets (nightly; installs cargo-fuzz), run each
                                    N seconds (default 60), report inputs/s, fail on a crash
  soak [--commands N] [--steps M] [--debug]
                                    the control plane under mixed signed/replayed/stale/forged
                                    commands while training runs (default 1 000 000 / 100 000)
  crash-test [--kills N] [--seed S] [--debug]
                                    SIGKILL the demo at random points (saves included), resume it
                                    each time, compare with an uninterrupted run (default 50 kills)
  cuda-build [--cap 90] [--toolkit DIR] [--skip-tests]
                                    the CUDA build on a machine without a GPU: fetches the pinned
                                    CUDA 13.0 wheels (target/cuda-toolkit), builds kasmina, the
                                    gpu_check bench and the CUDA test binaries (target/cuda), and
                                    packs them with the runner dist/gpu-check.sh (under 64 MiB)
  ci                                run the CI sequence (fmt, clippy, tests, docs, proto --check, layering)
";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        bail!("no command given");
    };
    match cmd.as_str() {
        "proto" => {
            let check = parse_flags(rest, &["--check"])?.contains(&"--check");
            proto::run(&workspace_root(), check)
        }
        "layering" => {
            parse_flags(rest, &[])?;
            layering::run(&workspace_root())
        }
        "bench" if rest.iter().any(|a| a == "--peer") => peer::run(&workspace_root(), &peer::parse(rest)?),
        "bench" => bench::run(&workspace_root(), rest),
        "fuzz" => fuzz::run(&workspace_root(), rest),
        "soak" => soak::run(&workspace_root(), rest),
        "crash-test" => crash::run(&workspace_root(), rest),
        "cuda-build" => cuda::run(&workspace_root(), rest),
        "ci" => {
            parse_flags(rest, &[])?;
            ci(&workspace_root())
        }
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown command `{other}`")
        }
    }
}

fn parse_flags<'a>(rest: &'a [String], allowed: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut out = Vec::new();
    for a in rest {
        match allowed.iter().find(|f| **f == a.as_str()) {
            Some(f) => out.push(*f),
            None => bail!("unexpected argument `{a}`\n{USAGE}"),
        }
    }
    Ok(out)
}

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

fn ci(root: &Path) -> Result<()> {
    let steps: &[&[&str]] = &[
        &["fmt", "--all", "--check"],
        &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"],
        &["test", "--workspace", "--locked"],
    ];
    for step in steps {
        eprintln!("$ cargo {}", step.join(" "));
        let status = cargo().args(*step).current_dir(root).status().context("running cargo")?;
        if !status.success() {
            bail!("`cargo {}` failed", step.join(" "));
        }
    }
    // Rustdoc warnings denied, for the workspace and for leyline alone (docs.rs's build).
    let docs: &[&[&str]] =
        &[&["doc", "--workspace", "--no-deps", "--locked"], &["doc", "-p", "leyline", "--no-deps", "--locked"]];
    for step in docs {
        eprintln!("$ RUSTDOCFLAGS=\"-D warnings\" cargo {}", step.join(" "));
        let status = cargo()
            .args(*step)
            .env("RUSTDOCFLAGS", "-D warnings")
            .current_dir(root)
            .status()
            .context("running cargo")?;
        if !status.success() {
            bail!("`cargo {}` failed with rustdoc warnings denied", step.join(" "));
        }
    }
    proto::run(root, true)?;
    layering::run(root)
}
