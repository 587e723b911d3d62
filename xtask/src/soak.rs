//! `cargo xtask soak [--commands N] [--steps M] [--debug]`: builds `kasmina` and runs its hidden
//! `soak` command with `--check`, writing the figures to `target/soak/summary.json`.
//!
//! The full soak is `--commands 1000000 --steps 100000` (the defaults, release build); `.ci/run`
//! runs the 1 % version on the debug build the tests already made.

use std::path::Path;

use anyhow::{Context, Result, bail};

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut commands = "1000000".to_owned();
    let mut steps = "100000".to_owned();
    let mut debug = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--commands" => commands = it.next().context("--commands needs a value")?.clone(),
            "--steps" => steps = it.next().context("--steps needs a value")?.clone(),
            "--debug" => debug = true,
            other => bail!("unexpected argument `{other}` (soak takes --commands N, --steps M, --debug)"),
        }
    }
    let mut build = crate::cargo();
    build.args(["build", "--locked", "-p", "kasmina-cli", "--bin", "kasmina"]).current_dir(root);
    if !debug {
        build.arg("--release");
    }
    if !build.status().context("running cargo build")?.success() {
        bail!("building kasmina failed");
    }
    let out = root.join("target/soak");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let binary = root.join("target").join(if debug { "debug" } else { "release" }).join("kasmina");
    let summary = out.join("summary.json");
    eprintln!("$ kasmina soak --commands {commands} --steps {steps} --check");
    let status = std::process::Command::new(&binary)
        .args(["soak", "--commands", &commands, "--steps", &steps, "--check", "--json"])
        .arg(&summary)
        .current_dir(root)
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    if !status.success() {
        bail!("the soak failed (figures in {})", summary.display());
    }
    eprintln!("soak: passed; figures in {}", summary.display());
    Ok(())
}
