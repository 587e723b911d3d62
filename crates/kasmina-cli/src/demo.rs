//! `kasmina demo`: morphogenetic training end to end, on CPU, in about a minute.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kasmina_runtime::KasminaConfig;
use kasmina_runtime::blueprint::builtin;
use kasmina_runtime::reexports::security::KeyRing;
use kasmina_runtime::reexports::telemetry::{JsonLinesSink, Telemetry, TelemetryConfig};
use leyline::{SeedLifecycleGate, SeedLifecycleStage as Stage};
use serde_json::{Value, json};

use crate::controller::{Controller, Planned};
use crate::plot::{self, Band, GateMark, Series};
use crate::session::{SLOT_A, SLOT_B, Session, SessionOptions, device};

/// Arguments of `kasmina demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Device to train on (`cuda` needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Epochs to train.
    #[arg(long, default_value_t = 36)]
    epochs: u32,
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
    /// The same host, data, steps and RNG with no seeds: the honest baseline.
    #[arg(long)]
    host_only: bool,
    /// Train on your own data: CSV, numeric features, last column the class index.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Embargo of a culled seed, in seconds (both this and `--embargo-steps` must elapse).
    #[arg(long, default_value_t = 0.2)]
    embargo_secs: f64,
    /// Learning rate of each seed's own optimiser (AdamW).
    #[arg(long, default_value_t = 0.001)]
    seed_lr: f64,
    /// Embargo of a culled seed, in training steps.
    #[arg(long, default_value_t = 64)]
    embargo_steps: u64,
}

/// The demo's lifecycle windows (steps): short enough to see a whole lifecycle in a minute.
fn config(embargo_secs: f64, embargo_steps: u64, seed_lr: f64) -> Result<KasminaConfig> {
    let mut c = KasminaConfig::default();
    c.training_steps = 104;
    c.blending_steps = 52;
    c.shadowing_steps = 52;
    c.probation_steps = 52;
    c.auto_fossilize = false; // the controller (Tamiyo) sends FOSSILIZE
    anyhow::ensure!(seed_lr.is_finite() && seed_lr > 0.0, "--seed-lr must be positive");
    c.seed_learning_rate = seed_lr;
    anyhow::ensure!(embargo_secs.is_finite() && embargo_secs >= 0.0, "--embargo-secs must be a non-negative number");
    c.embargo = Duration::from_secs_f64(embargo_secs);
    c.embargo_steps = embargo_steps;
    Ok(c)
}

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let device = device(&args.device)?;
    let secret = std::env::var("ESPER_LEYLINE_SECRET").unwrap_or_else(|_| format!("kasmina-demo-{}", args.seed));
    let keys = KeyRing::with_key("default", secret.as_bytes())?;
    let telemetry_path = args.out.join("telemetry.jsonl");
    let telemetry = Telemetry::spawn(JsonLinesSink::create(&telemetry_path)?, TelemetryConfig::default())?;
    let cfg = config(args.embargo_secs, args.embargo_steps, args.seed_lr)?;
    let probation_steps = cfg.probation_steps;
    let mut session = Session::new(SessionOptions {
        device,
        data: args.data.clone(),
        seed: args.seed,
        batch: args.batch,
        host_lr: 0.01,
        config: cfg,
        keys: keys.clone(),
        telemetry,
        blueprint_dir: args.out.join("blueprints"),
        host_only: args.host_only,
    })?;
    let plan = vec![
        Planned {
            seed_id: "seed-adapter".into(),
            slot: SLOT_A.into(),
            blueprint: builtin::RESIDUAL_MLP.into(),
            retries: 1,
        },
        Planned { seed_id: "seed-broken".into(), slot: SLOT_B.into(), blueprint: builtin::BROKEN.into(), retries: 0 },
    ];
    let mut tamiyo = Controller::new(keys, if args.host_only { Vec::new() } else { plan }, probation_steps);

    let steps_per_epoch = session.steps_per_epoch() as u64;
    let bar = if args.quiet || args.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(u64::from(args.epochs) * steps_per_epoch);
        b.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos:>4}/{len} steps {elapsed:>4} | {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };

    // What the plot and the summary need, recorded as training goes.
    let mut train_loss: Vec<(f64, f64)> = Vec::new();
    let mut val_loss: Vec<(f64, f64)> = Vec::new();
    let mut stage_track: BTreeMap<String, Vec<(u64, Stage)>> = BTreeMap::new();
    let mut gate_marks: Vec<GateMark> = Vec::new();
    let mut gates_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut last = (f32::NAN, f32::NAN);

    for _ in 0..args.epochs {
        let epoch = session.epoch(|s, info| {
            train_loss.push((info.step as f64, f64::from(info.loss)));
            track(s, info.step, &mut stage_track, &mut gate_marks, &mut gates_seen);
            bar.inc(1);
            Ok(())
        })?;
        val_loss.push((session.step as f64, f64::from(epoch.val_loss)));
        track(&session, session.step, &mut stage_track, &mut gate_marks, &mut gates_seen);
        tamiyo.on_epoch(&session.kasmina, epoch.epoch, session.step, epoch.val_loss, epoch.val_acc)?;
        last = (epoch.val_loss, epoch.val_acc);
        bar.set_message(format!(
            "epoch {:>2} loss {:.3} val {:.3} acc {:>5.1}% | {}",
            epoch.epoch,
            epoch.train_loss,
            epoch.val_loss,
            epoch.val_acc * 100.0,
            stages_line(&session)
        ));
    }
    // Let the culled seed finish its embargo so the failure path completes (real clock).
    let wait_until = Instant::now() + Duration::from_secs_f64(args.embargo_secs + 2.0);
    while !args.host_only && Instant::now() < wait_until && failure_path_pending(&session) {
        session.kasmina.poll();
        std::thread::sleep(Duration::from_millis(25));
    }
    track(&session, session.step, &mut stage_track, &mut gate_marks, &mut gates_seen);
    tamiyo.collect();
    bar.finish_and_clear();
    session.kasmina.flush_telemetry()?;

    // Outputs: seed states, summary, plot.
    let states: Vec<Value> =
        session.kasmina.export_seed_states().iter().map(serde_json::to_value).collect::<Result<_, _>>()?;
    std::fs::write(args.out.join("seed_states.json"), serde_json::to_string_pretty(&states)? + "\n")?;
    let summary = summary(&session, &tamiyo, last, started.elapsed(), &args)?;
    std::fs::write(args.out.join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n")?;
    let bands: Vec<Band> = stage_track
        .iter()
        .map(|(seed, track)| Band { label: seed.clone(), segments: segments(track, session.step) })
        .collect();
    let plot_path = args.out.join("training.png");
    let plot_result = plot::render(
        &plot_path,
        &format!("Kasmina demo: {}", session.data.name),
        &[Series { label: "train loss", points: &train_loss }, Series { label: "validation loss", points: &val_loss }],
        &bands,
        &gate_marks,
        session.step,
    );

    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !args.quiet {
        print_table(&summary);
        match &plot_result {
            Ok(()) => println!(
                "\nwrote {}/ (telemetry.jsonl, seed_states.json, summary.json, training.png)",
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

fn failure_path_pending(session: &Session) -> bool {
    session.kasmina.export_seed_states().iter().any(|s| s.stage().is_failure_path())
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
    Ok(json!({
        "data": session.data.name,
        "host_only": args.host_only,
        "seed": args.seed,
        "epochs": args.epochs,
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
    }))
}

pub(crate) fn stage_name(stage: i32) -> &'static str {
    Stage::try_from(stage).map(|s| s.as_str_name()).unwrap_or("SEED_STAGE_UNKNOWN")
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
