//! Checkpoints of a training session (decisions D13): Kasmina's state, the host's weights and
//! AdamW moments (`host.safetensors`), the session's position (step, epoch, batches done in the
//! epoch) and what the caller records (`run.json`: the demo's curves and its controller), in one
//! atomic checkpoint through `Kasmina::save_checkpoint`.

use std::path::Path;

use anyhow::{Context, Result};
use kasmina_runtime::{Checkpoint, CheckpointError, SavedCheckpoint, TrainerState};
use serde_json::Value;

use crate::session::{EpochProgress, Session};

/// The host's tensors in a checkpoint.
pub(crate) const HOST_FILE: &str = "host.safetensors";
/// The caller's record in a checkpoint.
pub(crate) const RUN_FILE: &str = "run.json";

/// `--checkpoint-dir`, `--checkpoint-every`, `--resume`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct CheckpointArgs {
    /// Save checkpoints under DIR (atomically; the newest two are kept).
    #[arg(long, value_name = "DIR")]
    pub(crate) checkpoint_dir: Option<std::path::PathBuf>,
    /// Save every N training steps (with --checkpoint-dir; 0: only when a run ends).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "checkpoint_dir")]
    pub(crate) checkpoint_every: u64,
    /// Resume from the newest checkpoint under --checkpoint-dir (start afresh when there is none).
    #[arg(long, requires = "checkpoint_dir")]
    pub(crate) resume: bool,
    /// Save a checkpoint at this step and stop (exit status 3): a planned interruption, for tests.
    #[arg(long, value_name = "STEP", hide = true, requires = "checkpoint_dir")]
    pub(crate) halt_at_step: Option<u64>,
}

/// The planned interruption of `--halt-at-step`.
#[derive(Debug)]
pub(crate) struct Halted(pub(crate) u64);

impl std::fmt::Display for Halted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "halted at step {} after saving a checkpoint (resume with --resume)", self.0)
    }
}

impl std::error::Error for Halted {}

/// Saves `session` and `record` under `dir`.
pub(crate) fn save(dir: &Path, session: &Session, record: Value, done: bool) -> Result<SavedCheckpoint> {
    let (host, opt_steps) = session.host_state()?;
    let trainer = TrainerState::new()
        .file(HOST_FILE, host)
        .file(RUN_FILE, serde_json::to_vec(&record)?)
        .meta("step", session.step)
        .meta("epoch", session.epoch)
        .meta("epoch_batches", session.progress.batches)
        .meta("epoch_loss_bits", session.progress.total.to_bits())
        .meta("host_opt_steps", opt_steps)
        .meta("step_ms", session.step_ms)
        .meta("kasmina_ms", session.kasmina_ms)
        .meta("done", done);
    session
        .kasmina
        .save_checkpoint(dir, trainer)
        .with_context(|| format!("saving a checkpoint under {}", dir.display()))
}

/// What a resumed session's caller gets back: its record and whether the run had ended.
#[derive(Debug)]
pub(crate) struct Resumed {
    pub(crate) record: Value,
    pub(crate) done: bool,
    pub(crate) step: u64,
}

/// Restores `session` from the newest checkpoint under `dir`; `None` when there is none yet.
pub(crate) fn resume(dir: &Path, session: &mut Session, seed: u64) -> Result<Option<Resumed>> {
    let checkpoint = match Checkpoint::load_latest(dir) {
        Ok(c) => c,
        Err(CheckpointError::NoCheckpoint { .. }) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the checkpoint under {}", dir.display())),
    };
    let meta = |k: &str| -> Result<&str> {
        checkpoint.meta(k).with_context(|| format!("checkpoint {}: no `{k}`", checkpoint.dir().display()))
    };
    let num = |k: &str| -> Result<u64> { meta(k)?.parse::<u64>().with_context(|| format!("checkpoint: `{k}`")) };
    let progress = EpochProgress {
        batches: usize::try_from(num("epoch_batches")?)?,
        total: f32::from_bits(u32::try_from(num("epoch_loss_bits")?)?),
    };
    let position = (num("step")?, u32::try_from(num("epoch")?)?, progress, num("host_opt_steps")?);
    session
        .restore(&checkpoint, HOST_FILE, seed, position)
        .with_context(|| format!("restoring {}", checkpoint.dir().display()))?;
    session.step_ms = meta("step_ms")?.parse().unwrap_or(0.0);
    session.kasmina_ms = meta("kasmina_ms")?.parse().unwrap_or(0.0);
    let record = serde_json::from_slice(checkpoint.file(RUN_FILE)?).context("checkpoint: run.json")?;
    Ok(Some(Resumed { record, done: meta("done")? == "true", step: session.step }))
}
