//! `kasmina demo`: morphogenetic training end to end, on CPU, in seconds — and the honest
//! comparison: the same host alone, grown by Kasmina, and with the grown seed's capacity present
//! from step 0 ("static"), each trained the same number of steps on the same data.
//!
//! `--task` picks the host and its data ([`kasmina_hosts`]): `mlp` (dense slots, the built-in
//! synthetic task), `cnn` (image slots, the 8×8 handwritten digits) or `transformer` (sequence
//! slots, next byte of *Pride and Prejudice*, reported in bits per byte too). Tamiyo's plan is the
//! same for all three: a helpful seed and a deliberately broken one of the slots' family.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kasmina_runtime::reexports::security::KeyRing;
use kasmina_runtime::reexports::telemetry::{FanoutSink, JsonLinesSink, NullSink, Telemetry, TelemetryConfig};
use kasmina_runtime::{KasminaConfig, TrainingMode};
use leyline::{SeedLifecycleGate, SeedLifecycleStage as Stage};
use serde_json::{Value, json};

use crate::bus::BusLink;
use crate::checkpoint::{self, CheckpointArgs, Halted};
use crate::controller::{Controller, Planned};
use crate::data::Data;
use crate::plot::{self, Band, GateMark, Series};
use crate::session::{Session, SessionOptions, device};
use kasmina_hosts::Task;

/// Arguments of `kasmina demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The host and its data: `mlp` (a 4-unit MLP on a built-in synthetic task, or `--data`),
    /// `cnn` (a narrow CNN on the 8×8 handwritten digits) or `transformer` (a small causal
    /// byte-level transformer on *Pride and Prejudice*).
    #[arg(long, default_value_t = Task::Mlp)]
    task: Task,
    /// Device to train on (`cuda` needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Epochs to train [default: mlp 60, cnn 60, transformer 30].
    #[arg(long)]
    epochs: Option<u32>,
    /// RNG seed (data, initialisation, batch order).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory.
    #[arg(long, default_value = "kasmina-demo")]
    out: PathBuf,
    /// No progress bar and no table.
    #[arg(long)]
    quiet: bool,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
    /// Run only the baseline: the same host, data, steps and RNG with no seeds.
    #[arg(long)]
    host_only: bool,
    /// Train the mlp host on your own data: CSV, numeric features, last column the class index.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where the cnn and transformer tasks' datasets are [default: the first `datasets/` found
    /// walking up from the current directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Use at most N training rows (text windows per epoch) and N validation rows (windows):
    /// quick runs and tests.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,
    /// Use the mlp host's features as they are (by default they are standardised with the
    /// training split's mean and standard deviation).
    #[arg(long)]
    raw: bool,
    /// Batch size [default: mlp 128, cnn 64, transformer 16 windows].
    #[arg(long)]
    batch: Option<usize>,
    /// Width of the host (and of its slots): hidden units (mlp), channels of the first
    /// convolution (cnn; the second has twice as many), model dimension (transformer)
    /// [default: mlp 4, cnn 4, transformer 32].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4096))]
    width: Option<u16>,
    /// The blueprint Tamiyo grows in the first slot [default: mlp BP004, cnn BP100, transformer
    /// BP200] (BP901 is deliberately harmful: it is culled and must leave no trace).
    #[arg(long)]
    adapter: Option<String>,
    /// Learning rate of each seed's own optimiser (AdamW) [default: the host's, 0.01 for mlp and
    /// cnn, 0.003 for the transformer].
    #[arg(long)]
    seed_lr: Option<f64>,
    /// Embargo of a culled seed, in training steps (the demo counts everything in steps, so a
    /// run depends only on the data, the seed and the machine's arithmetic).
    #[arg(long, default_value_t = 64)]
    embargo_steps: u64,
    /// How seeds learn in TRAINING: `shadow` (on their stand-alone loss) or `straight-through`.
    #[arg(long, default_value = "shadow", value_parser = ["shadow", "straight-through"])]
    training_mode: String,
    /// Germinate at the end of this epoch at the latest, even if validation has not plateaued
    /// (by default Tamiyo waits for a plateau).
    #[arg(long, value_name = "EPOCH")]
    germinate_by: Option<u32>,
    /// Both wall-clock budgets (isolation hook, kernel fetch), in ms: the only quantities of a
    /// demo not counted in steps. Tests that compare two runs to the bit set them high, so a
    /// preempted probe on a loaded machine cannot send one run down another path.
    #[arg(long, value_name = "MS", hide = true)]
    latency_budget_ms: Option<f64>,
    /// Join Esper's Oona bus on this Redis during the grown run: telemetry and a state packet
    /// per epoch out, commands from a remote Tamiyo in (beside the demo's own controller).
    #[arg(long, value_name = "redis://HOST:PORT", env = "OONA_URL")]
    oona: Option<String>,
    /// Checkpoints: each of the three runs saves under `DIR/<run>/`; `--resume` skips the runs
    /// that ended and resumes the one that was interrupted.
    #[command(flatten)]
    checkpoint: CheckpointArgs,
}

/// A task's defaults for the flags left unset.
struct Defaults {
    epochs: u32,
    batch: usize,
    host_lr: f64,
}

fn defaults(task: Task) -> Defaults {
    match task {
        Task::Mlp => Defaults { epochs: 60, batch: 128, host_lr: 0.01 },
        Task::Cnn => Defaults { epochs: 60, batch: 64, host_lr: 0.01 },
        Task::Transformer => Defaults { epochs: 30, batch: 16, host_lr: 0.003 },
    }
}

impl DemoArgs {
    fn epochs(&self) -> u32 {
        self.epochs.unwrap_or(defaults(self.task).epochs)
    }

    fn width(&self) -> usize {
        self.width.map_or(self.task.default_width(), usize::from)
    }

    /// The flags that only some tasks read.
    fn check(&self) -> Result<()> {
        if self.task != Task::Mlp {
            anyhow::ensure!(
                self.data.is_none(),
                "--data is for --task mlp (the {} task has its own data)",
                self.task.as_str()
            );
            anyhow::ensure!(!self.raw, "--raw is for --task mlp");
        } else {
            anyhow::ensure!(self.data_dir.is_none(), "--data-dir is for --task cnn and --task transformer");
        }
        Ok(())
    }
}

/// The demo's lifecycle windows (steps): short enough to see a whole lifecycle in seconds.
fn config(args: &DemoArgs) -> Result<KasminaConfig> {
    let seed_lr = args.seed_lr.unwrap_or(defaults(args.task).host_lr);
    let (embargo_steps, training_mode) = (args.embargo_steps, args.training_mode.as_str());
    let mut c = KasminaConfig::default();
    c.training_mode =
        if training_mode == "straight-through" { TrainingMode::StraightThrough } else { TrainingMode::Shadow };
    c.training_steps = 104;
    c.blending_steps = 52;
    c.shadowing_steps = 52;
    c.probation_steps = 52;
    c.auto_fossilize = false; // the controller (Tamiyo) sends FOSSILIZE
    anyhow::ensure!(seed_lr.is_finite() && seed_lr > 0.0, "--seed-lr must be positive");
    c.seed_learning_rate = seed_lr;
    c.embargo = Duration::ZERO;
    c.embargo_steps = embargo_steps.max(1);
    if args.task != Task::Mlp {
        // The isolation probe of an image or sequence seed takes about 1 ms here, but on a
        // shared 2-core machine one preempted probe in a 104-step window measured 9 ms and
        // failed the design's 8 ms budget (a wall-clock gate in a run otherwise counted in
        // steps). The demo keeps a budget that still catches a pathological kernel.
        c.hook_latency_budget_ms = HOOK_BUDGET_MS;
    }
    if let Some(ms) = args.latency_budget_ms {
        anyhow::ensure!(ms.is_finite() && ms > 0.0, "--latency-budget-ms must be positive");
        c.hook_latency_budget_ms = ms;
        c.fetch_latency_budget_ms = ms;
    }
    Ok(c)
}

/// The cnn and transformer demos' isolation-hook budget (ms); see [`config`].
const HOOK_BUDGET_MS: f64 = 50.0;

/// Which of the three runs.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    HostOnly,
    Grown,
    /// The host with `blueprint`'s architecture in `slot` from step 0.
    Static {
        slot: String,
        blueprint: String,
    },
}

impl Mode {
    fn key(&self) -> &'static str {
        match self {
            Self::HostOnly => "host_only",
            Self::Grown => "grown",
            Self::Static { .. } => "static",
        }
    }
}

/// What one run recorded (and a checkpoint keeps, in `run.json`).
#[derive(Debug, Default)]
struct Record {
    train_loss: Vec<(f64, f64)>,
    val_loss: Vec<(f64, f64)>,
    stage_track: BTreeMap<String, Vec<(u64, Stage)>>,
    gate_marks: Vec<GateMark>,
    /// Gate events already turned into marks, per seed.
    seen: BTreeMap<String, usize>,
    /// Validation loss and accuracy of the last epoch.
    last: Option<(f32, f32)>,
}

impl Record {
    fn to_json(&self, tamiyo: &Controller) -> Value {
        json!({
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "stage_track": self.stage_track.iter().map(|(k, t)| {
                (k.clone(), t.iter().map(|(step, st)| json!([step, *st as i32])).collect::<Value>())
            }).collect::<serde_json::Map<_, _>>(),
            "gate_marks": self.gate_marks.iter().map(|g| json!([g.step, g.passed, g.label])).collect::<Vec<_>>(),
            "seen": self.seen,
            "last": self.last,
            "controller": tamiyo.state_json(),
        })
    }

    fn from_json(v: &Value, tamiyo: &mut Controller) -> Result<Self> {
        let get = |k: &str| v.get(k).cloned().with_context(|| format!("run.json: no `{k}`"));
        let mut stage_track = BTreeMap::new();
        for (seed, track) in get("stage_track")?.as_object().context("run.json: stage_track")? {
            let points: Vec<(u64, i32)> = serde_json::from_value(track.clone())?;
            let points = points
                .into_iter()
                .map(|(step, st)| Stage::try_from(st).map(|st| (step, st)).map_err(|_| anyhow::anyhow!("stage {st}")))
                .collect::<Result<_>>()?;
            stage_track.insert(seed.clone(), points);
        }
        let marks: Vec<(u64, bool, String)> = serde_json::from_value(get("gate_marks")?)?;
        tamiyo.restore_state(&get("controller")?)?;
        Ok(Self {
            train_loss: serde_json::from_value(get("train_loss")?)?,
            val_loss: serde_json::from_value(get("val_loss")?)?,
            stage_track,
            gate_marks: marks.into_iter().map(|(step, passed, label)| GateMark { step, passed, label }).collect(),
            seen: serde_json::from_value(get("seen")?)?,
            last: serde_json::from_value(get("last")?)?,
        })
    }
}

/// One of the three runs: its session, its controller and what it recorded.
struct Run {
    mode: Mode,
    session: Session,
    tamiyo: Controller,
    record: Record,
    /// The grown run's link to the Oona bus (`--oona`).
    bus: Option<BusLink>,
    /// What checkpointing cost this process.
    ckpt: CheckpointStats,
}

/// Saves and restores of one run in this process.
#[derive(Debug, Default)]
struct CheckpointStats {
    saves: u32,
    save_ms: Vec<f64>,
    bytes: u64,
    restore_ms: Option<f64>,
}

impl CheckpointStats {
    fn saved(&mut self, s: &kasmina_runtime::SavedCheckpoint) {
        self.saves += 1;
        self.save_ms.push(s.took.as_secs_f64() * 1e3);
        self.bytes = s.bytes;
    }

    fn json(&self) -> Value {
        let mut ms = self.save_ms.clone();
        ms.sort_by(f64::total_cmp);
        let median = ms.get(ms.len() / 2).copied();
        json!({
            "saves": self.saves,
            "save_ms_median": median,
            "save_ms_max": ms.last(),
            "bytes": self.bytes,
            "restore_ms": self.restore_ms,
        })
    }
}

impl Run {
    /// Validation loss and accuracy of the last epoch (NaN before the first).
    fn last(&self) -> (f32, f32) {
        self.record.last.unwrap_or((f32::NAN, f32::NAN))
    }

    fn json(&self) -> Value {
        let last = self.last();
        let mut run = json!({
            "final_val_acc": last.1,
            "final_val_loss": last.0,
            "params": self.params(),
        });
        if let Some(bpb) = bits_per_byte(&self.session.data, last.0) {
            run["final_val_bpb"] = bpb.into();
        }
        run
    }

    /// Parameters of the model at the end: the host's, plus every fossilized seed's (grown),
    /// plus the static seed's (static).
    fn params(&self) -> usize {
        let fossil: usize = self
            .session
            .kasmina
            .seed_summaries()
            .iter()
            .filter(|s| s.stage == Stage::SeedStageFossilized)
            .filter_map(|s| {
                let state = self.session.kasmina.export_seed_states();
                state.iter().find(|x| x.seed_id == s.seed_id).and_then(|x| x.metrics.get("param_count").copied())
            })
            .map(|p| p as usize)
            .sum();
        self.session.model.params() + fossil
    }
}

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    args.check()?;
    let started = Instant::now();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let bar = progress(&args);
    if args.host_only {
        let host = run_one(&args, Mode::HostOnly, &bar)?;
        bar.finish_and_clear();
        return finish(&args, &host, None, None, started.elapsed());
    }
    let grown = run_one(&args, Mode::Grown, &bar)?;
    let host = run_one(&args, Mode::HostOnly, &bar)?;
    let fossil = grown
        .session
        .kasmina
        .seed_summaries()
        .into_iter()
        .find(|s| s.stage == Stage::SeedStageFossilized)
        .map(|s| Mode::Static { slot: s.slot, blueprint: s.kernel_blueprint_id });
    let fixed = match fossil {
        Some(mode) => Some(run_one(&args, mode, &bar)?),
        None => None,
    };
    bar.finish_and_clear();
    finish(&args, &grown, Some(&host), fixed.as_ref(), started.elapsed())
}

fn progress(args: &DemoArgs) -> ProgressBar {
    if args.quiet || args.json {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos:>5}/{len} steps {elapsed:>4} | {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// Trains one of the three runs (resuming it from its checkpoint with `--resume`).
fn run_one(args: &DemoArgs, mode: Mode, bar: &ProgressBar) -> Result<Run> {
    let ckpt_dir = args.checkpoint.checkpoint_dir.as_ref().map(|d| d.join(mode.key()));
    let resuming = args.checkpoint.resume && ckpt_dir.as_ref().is_some_and(|d| d.join("LATEST").exists());
    let mut bus = match (&args.oona, &mode) {
        (Some(url), Mode::Grown) => Some(BusLink::connect(url, &demo_keys(args)?)?),
        _ => None,
    };
    let (session, keys, probation_steps) = start_session(args, &mode, resuming, bus.as_ref().map(|b| &b.sink))?;
    if let Some(b) = bus.as_mut() {
        b.consume(&session.kasmina)?;
    }
    let plan = if mode == Mode::Grown { plan(args) } else { Vec::new() };
    let tamiyo = Controller::new(keys, plan, probation_steps).germinate_by(args.germinate_by);
    let mut run = Run { mode, session, tamiyo, record: Record::default(), bus, ckpt: CheckpointStats::default() };
    let mut done = false;
    let restore_started = Instant::now();
    if let (true, Some(dir)) = (resuming, &ckpt_dir)
        && let Some(resumed) = checkpoint::resume(dir, &mut run.session, args.seed)?
    {
        run.ckpt.restore_ms = Some(restore_started.elapsed().as_secs_f64() * 1e3);
        run.record = Record::from_json(&resumed.record, &mut run.tamiyo)?;
        done = resumed.done;
        if !args.quiet && !args.json {
            eprintln!("{}: resumed at step {} from {}", run.mode.key(), resumed.step, dir.display());
        }
    }
    bar.inc_length(u64::from(args.epochs()) * run.session.steps_per_epoch() as u64);
    bar.inc(run.session.step);
    while !done && run.session.epoch < args.epochs() {
        train_epoch(args, &mut run, ckpt_dir.as_deref(), bar)?;
    }
    run.tamiyo.collect();
    run.session.kasmina.flush_telemetry()?;
    if let Some(b) = run.bus.take() {
        b.close();
    }
    if let (Some(dir), false) = (&ckpt_dir, done) {
        let saved = checkpoint::save(dir, &run.session, run.record.to_json(&run.tamiyo), true)?;
        run.ckpt.saved(&saved);
    }
    Ok(run)
}

/// One epoch of a run, saving a checkpoint every `--checkpoint-every` steps.
fn train_epoch(args: &DemoArgs, run: &mut Run, ckpt_dir: Option<&Path>, bar: &ProgressBar) -> Result<()> {
    let Run { session, tamiyo, record, mode, ckpt, bus } = run;
    let every = args.checkpoint.checkpoint_every;
    let epoch = session.epoch(|s, info| {
        record.train_loss.push((info.step as f64, f64::from(info.loss)));
        track(s, info.step, &mut record.stage_track, &mut record.gate_marks, &mut record.seen);
        bar.inc(1);
        let halt = args.checkpoint.halt_at_step == Some(info.step);
        if let Some(dir) = ckpt_dir
            && (halt || (every > 0 && info.step.is_multiple_of(every)))
        {
            tamiyo.collect();
            ckpt.saved(&checkpoint::save(dir, s, record.to_json(tamiyo), false)?);
        }
        if halt {
            return Err(Halted(info.step).into());
        }
        Ok(())
    })?;
    record.val_loss.push((session.step as f64, f64::from(epoch.val_loss)));
    track(session, session.step, &mut record.stage_track, &mut record.gate_marks, &mut record.seen);
    tamiyo.on_epoch(&session.kasmina, epoch.epoch, session.step, epoch.val_loss, epoch.val_acc)?;
    record.last = Some((epoch.val_loss, epoch.val_acc));
    if let Some(b) = bus {
        b.publish_state(&session.kasmina)?;
    }
    bar.set_message(format!(
        "{:<9} epoch {:>2} val {:.3} acc {:>5.1}% | {}",
        mode.key(),
        epoch.epoch,
        epoch.val_loss,
        epoch.val_acc * 100.0,
        stages_line(session)
    ));
    Ok(())
}

/// The session of one run (its own Kasmina, keys and telemetry), the keys and the probation
/// window.
/// The demo's signing key: `ESPER_LEYLINE_SECRET`, else one derived from the seed.
fn demo_keys(args: &DemoArgs) -> Result<KeyRing> {
    let secret = std::env::var("ESPER_LEYLINE_SECRET").unwrap_or_else(|_| format!("kasmina-demo-secret-{}", args.seed)); // ≥ 16 bytes
    Ok(KeyRing::with_key("default", secret.as_bytes())?)
}

fn start_session(
    args: &DemoArgs,
    mode: &Mode,
    resuming: bool,
    bus: Option<&kasmina_oona::OonaSink>,
) -> Result<(Session, KeyRing, u64)> {
    let device = device(&args.device)?;
    let keys = demo_keys(args)?;
    let telemetry = if *mode == Mode::Grown {
        // A resumed run appends: what the interrupted run wrote stays.
        let path = args.out.join("telemetry.jsonl");
        let file = if resuming { JsonLinesSink::append_to(path)? } else { JsonLinesSink::create(path)? };
        let mut sinks = FanoutSink::new().with(file);
        if let Some(b) = bus {
            sinks = sinks.with(b.clone());
        }
        Telemetry::spawn(sinks, TelemetryConfig::default())?
    } else {
        Telemetry::new(NullSink, TelemetryConfig::default())?
    };
    let cfg = config(args)?;
    let probation_steps = cfg.probation_steps;
    let static_seed = match mode {
        Mode::Static { slot, blueprint } => Some((slot.clone(), blueprint.clone())),
        _ => None,
    };
    let session = Session::new(SessionOptions {
        device,
        task: args.task,
        data: args.data.clone(),
        data_dir: args.data_dir.clone(),
        limit: args.limit.map(|n| n as usize),
        seed: args.seed,
        batch: args.batch.unwrap_or(defaults(args.task).batch),
        host_lr: defaults(args.task).host_lr,
        config: cfg,
        keys: keys.clone(),
        telemetry,
        blueprint_dir: args.out.join("blueprints"),
        host_only: *mode != Mode::Grown,
        width: args.width(),
        static_seed,
        standardize: !args.raw,
        verifier: None,
    })?;
    Ok((session, keys, probation_steps))
}

/// Tamiyo's plan for the grown run: the helpful seed and the broken one, in the task's slots,
/// with blueprints of the slots' family.
fn plan(args: &DemoArgs) -> Vec<Planned> {
    let [(helpful_slot, helpful), (broken_slot, broken)] = args.task.plan();
    let adapter = args.adapter.clone().unwrap_or_else(|| helpful.to_owned());
    vec![
        Planned { seed_id: "seed-adapter".into(), slot: helpful_slot.into(), blueprint: adapter, retries: 1 },
        Planned { seed_id: "seed-broken".into(), slot: broken_slot.into(), blueprint: broken.into(), retries: 0 },
    ]
}

/// Writes the outputs (seed states, summary with the three runs, plot) and prints the table or
/// the JSON.
fn finish(args: &DemoArgs, main: &Run, host: Option<&Run>, fixed: Option<&Run>, elapsed: Duration) -> Result<()> {
    let session = &main.session;
    let states: Vec<Value> =
        session.kasmina.export_seed_states().iter().map(serde_json::to_value).collect::<Result<_, _>>()?;
    std::fs::write(args.out.join("seed_states.json"), serde_json::to_string_pretty(&states)? + "\n")?;
    let mut summary = summary(session, &main.tamiyo, main.last(), elapsed, args)?;
    let mut runs = serde_json::Map::new();
    runs.insert(main.mode.key().to_owned(), main.json());
    if let Some(h) = host {
        runs.insert(h.mode.key().to_owned(), h.json());
    }
    if !args.host_only {
        runs.insert("static".to_owned(), fixed.map_or(Value::Null, Run::json));
    }
    summary["runs"] = Value::Object(runs);
    if args.checkpoint.checkpoint_dir.is_some() {
        summary["checkpoint"] = main.ckpt.json();
    }
    // Every stage change of every seed, at the step it happened (for the no-shock check).
    summary["transitions"] = main
        .record
        .stage_track
        .iter()
        .flat_map(|(seed, track)| track.iter().map(move |(step, stage)| json!([step, seed, stage.as_str_name()])))
        .collect::<Vec<_>>()
        .into();
    let csv: String = main.record.train_loss.iter().map(|(step, loss)| format!("{step},{loss}\n")).collect();
    std::fs::write(args.out.join("train_loss.csv"), format!("step,loss\n{csv}"))?;
    std::fs::write(args.out.join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n")?;
    let bands: Vec<Band> = main
        .record
        .stage_track
        .iter()
        .map(|(seed, track)| Band { label: seed.clone(), segments: segments(track, session.step) })
        .collect();
    let mut series = vec![Series { label: "train loss", points: &main.record.train_loss }];
    for (label, run) in
        [("validation: grown", Some(main)), ("validation: host only", host), ("validation: static", fixed)]
    {
        if let Some(r) = run {
            let label = if r.mode == Mode::HostOnly { "validation: host only" } else { label };
            series.push(Series { label, points: &r.record.val_loss });
        }
    }
    // A text model's train loss starts near ln 256 = 5.5 nats and would flatten the validation
    // curves: cap the axis a little above them.
    let y_max = matches!(session.data, Data::Text(_)).then(|| {
        series[1..].iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(0.0, f64::max)
            * 1.25
    });
    let plot_path = args.out.join("training.png");
    let plot_result = plot::render(
        &plot_path,
        &format!("Kasmina demo: {}", session.data.name()),
        &series,
        &bands,
        &main.record.gate_marks,
        session.step,
        y_max,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !args.quiet {
        print_table(&summary);
        match &plot_result {
            Ok(()) => println!(
                "\nwrote {}/ (telemetry.jsonl, seed_states.json, summary.json, train_loss.csv, training.png)",
                args.out.display()
            ),
            Err(e) => println!("\nwrote {}/ (the plot failed: {e:#})", args.out.display()),
        }
    }
    if let Err(e) = plot_result {
        eprintln!("warning: plot not written: {e:#}");
    }
    Ok(())
}

/// Records each slot's stage at `step` and every new gate event.
fn track(
    session: &Session,
    step: u64,
    stages: &mut BTreeMap<String, Vec<(u64, Stage)>>,
    marks: &mut Vec<GateMark>,
    seen: &mut BTreeMap<String, usize>,
) {
    for s in session.kasmina.seed_summaries() {
        let t = stages.entry(s.seed_id.clone()).or_default();
        if t.last().map(|(_, st)| *st) != Some(s.stage) {
            t.push((step, s.stage));
        }
        let n = seen.entry(s.seed_id.clone()).or_default();
        for g in &s.gates[*n..] {
            marks.push(GateMark {
                step,
                passed: g.passed,
                label: SeedLifecycleGate::try_from(g.gate).map(gate_short).unwrap_or("G?").to_owned(),
            });
        }
        *n = s.gates.len();
    }
}

fn gate_short(g: SeedLifecycleGate) -> &'static str {
    let name = g.short_name();
    &name[..2.min(name.len())]
}

fn segments(track: &[(u64, Stage)], end: u64) -> Vec<(u64, u64, Stage)> {
    track
        .iter()
        .enumerate()
        .map(|(i, (start, stage))| (*start, track.get(i + 1).map(|(s, _)| *s).unwrap_or(end), *stage))
        .filter(|(a, b, _)| b > a)
        .collect()
}

fn stages_line(session: &Session) -> String {
    let s: Vec<String> = session
        .kasmina
        .export_seed_states()
        .iter()
        .filter(|s| !s.seed_id.is_empty())
        .map(|s| format!("{} {}", s.seed_id, s.stage().short_name()))
        .collect();
    if s.is_empty() { "host only".to_owned() } else { s.join(", ") }
}

fn summary(
    session: &Session,
    tamiyo: &Controller,
    last: (f32, f32),
    elapsed: Duration,
    args: &DemoArgs,
) -> Result<Value> {
    let stats = session.kasmina.stats();
    let seeds: Vec<Value> = session
        .kasmina
        .seed_summaries()
        .into_iter()
        .map(|s| {
            json!({
                "seed_id": s.seed_id,
                "slot": s.slot,
                "blueprint": s.blueprint_id,
                "kernel_blueprint": s.kernel_blueprint_id,
                "final_stage": s.stage.as_str_name(),
                "stages": s.stages.iter().map(|st| st.as_str_name()).collect::<Vec<_>>(),
                "gates": s.gates.iter().map(|g| json!({
                    "gate": SeedLifecycleGate::try_from(g.gate).map(|g| g.as_str_name()).unwrap_or("SEED_GATE_UNKNOWN"),
                    "passed": g.passed,
                    "reason": g.reason,
                    "from": crate::demo::stage_name(g.from_stage),
                    "to": crate::demo::stage_name(g.to_stage),
                })).collect::<Vec<_>>(),
                "isolation_checks": s.isolation_checks,
                "isolation_violations": s.isolation_violations,
                "cull_reason": s.cull_reason.map(|c| c.reason()),
            })
        })
        .collect();
    let commands: Vec<Value> = tamiyo
        .sent
        .iter()
        .map(|c| {
            json!({
                "epoch": c.epoch,
                "step": c.step,
                "operation": c.operation.as_str_name(),
                "seed_id": c.seed_id,
                "accepted": c.receipt.as_ref().map(|r| r.accepted),
                "reason": c.receipt.as_ref().map(|r| r.reason.clone()),
            })
        })
        .collect();
    let share = if session.step_ms > 0.0 { session.kasmina_ms / session.step_ms } else { 0.0 };
    let mut summary = json!({
        "data": session.data.name(),
        "task": args.task.as_str(),
        "host_only": args.host_only,
        "seed": args.seed,
        "epochs": args.epochs(),
        "steps": session.step,
        "final_val_loss": last.0,
        "final_val_acc": last.1,
        "val_acc_at_germination": tamiyo.germinated_at.map(|(_, acc)| acc),
        "germinated_at_epoch": tamiyo.germinated_at.map(|(e, _)| e),
        "seeds": seeds,
        "commands": commands,
        "isolation_checks": stats.isolation_checks,
        "isolation_violations": stats.isolation_violations,
        "kasmina_share_of_step_time": share,
        "kasmina_ms": session.kasmina_ms,
        "step_ms": session.step_ms,
        "health": session.kasmina.health().summary,
        "wall_seconds": elapsed.as_secs_f64(),
    });
    if let Some(bpb) = bits_per_byte(&session.data, last.0) {
        summary["final_val_bpb"] = bpb.into();
    }
    Ok(summary)
}

/// A text task's validation loss (nats per byte) in bits per byte; `None` for other data.
fn bits_per_byte(data: &Data, loss: f32) -> Option<f64> {
    matches!(data, Data::Text(_)).then(|| f64::from(loss) / std::f64::consts::LN_2)
}

pub(crate) fn stage_name(stage: i32) -> &'static str {
    Stage::try_from(stage).map(|s| s.as_str_name()).unwrap_or("SEED_STAGE_UNKNOWN")
}

/// The three runs side by side (with bits per byte for a text task).
fn print_runs(runs: &serde_json::Map<String, Value>) {
    let pct = |v: &Value| v.as_f64().map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "-".into());
    let text = runs.values().any(|r| r.get("final_val_bpb").is_some());
    let bpb = |r: &Value| match r["final_val_bpb"].as_f64() {
        Some(b) if text => format!(" {b:>10.3}"),
        _ => String::new(),
    };
    println!();
    let bpb_head = if text { format!(" {:>10}", "bits/byte") } else { String::new() };
    println!("  {:<10} {:>14} {:>16}{bpb_head} {:>10}", "run", "val accuracy", "val loss", "params");
    for key in ["host_only", "grown", "static"] {
        let Some(r) = runs.get(key) else { continue };
        if r.is_null() {
            println!("  {:<10} {:>14}", key.replace('_', " "), "(no fossilized seed)");
            continue;
        }
        println!(
            "  {:<10} {:>14} {:>16.4}{} {:>10}",
            key.replace('_', " "),
            pct(&r["final_val_acc"]),
            r["final_val_loss"].as_f64().unwrap_or(f64::NAN),
            bpb(r),
            r["params"].to_string()
        );
    }
    println!();
}

fn print_table(s: &Value) {
    let pct = |v: &Value| v.as_f64().map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "-".into());
    println!(
        "Kasmina demo — {} ({} steps, {:.1} s)",
        s["data"].as_str().unwrap_or(""),
        s["steps"],
        s["wall_seconds"].as_f64().unwrap_or(0.0)
    );
    println!();
    println!(
        "  validation accuracy  before seeds {:>7}   final {:>7}   (final loss {:.3})",
        pct(&s["val_acc_at_germination"]),
        pct(&s["final_val_acc"]),
        s["final_val_loss"].as_f64().unwrap_or(f64::NAN)
    );
    if let Some(runs) = s["runs"].as_object() {
        print_runs(runs);
    }
    println!("  isolation checks     {} run, {} violations", s["isolation_checks"], s["isolation_violations"]);
    println!("  Kasmina's share of step time  {}", pct(&s["kasmina_share_of_step_time"]));
    println!("  health               {}", s["health"].as_str().unwrap_or(""));
    let empty = Vec::new();
    for seed in s["seeds"].as_array().unwrap_or(&empty) {
        println!();
        println!(
            "  {} in {} (blueprint {}, served by {})",
            seed["seed_id"].as_str().unwrap_or(""),
            seed["slot"].as_str().unwrap_or(""),
            seed["blueprint"].as_str().unwrap_or(""),
            seed["kernel_blueprint"].as_str().unwrap_or("")
        );
        let stages: Vec<&str> = seed["stages"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter_map(|v| v.as_str())
            .map(|v| v.trim_start_matches("SEED_STAGE_"))
            .collect();
        println!("    stages  {}", stages.join(" → "));
        for g in seed["gates"].as_array().unwrap_or(&empty) {
            let name = g["gate"].as_str().unwrap_or("").trim_start_matches("SEED_GATE_");
            let verdict = if g["passed"].as_bool() == Some(true) {
                "pass".to_owned()
            } else {
                format!("FAIL: {}", g["reason"].as_str().unwrap_or(""))
            };
            println!(
                "    {:<22} {:<14} → {:<14} {}",
                name,
                g["from"].as_str().unwrap_or("").trim_start_matches("SEED_STAGE_"),
                g["to"].as_str().unwrap_or("").trim_start_matches("SEED_STAGE_"),
                verdict
            );
        }
        if let Some(r) = seed["cull_reason"].as_str() {
            println!("    culled: {r}");
        }
    }
}
