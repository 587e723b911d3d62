//! `kasmina soak` (hidden; `cargo xtask soak` runs it in release): the control plane under a
//! long mixed load while training runs, in one process.
//!
//! A training thread runs the demo's host with the runtime for `--steps` steps. A real
//! `kasmina-server` control plane listens on loopback, and `--connections` gRPC channels, each
//! with `--tasks` concurrent senders, submit `--commands` signed commands: valid ones (germinate,
//! cull, and now and then EMERGENCY), replays of valid ones, stale ones and forged ones.
//!
//! Checked (`--check` fails the run when one breaks):
//! - every command gets exactly one final receipt, and the right one: replays, stale and forged
//!   commands are rejected for that reason; valid ones are applied or refused at a safe point;
//! - every EMERGENCY's CRITICAL `emergency_cleanup` event reaches a CRITICAL subscriber;
//! - memory is flat after warm-up: RSS, the nonce ledger, the command queue, the receipt book
//!   and the telemetry queues stay within bounds set by the load, not by the run's length.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use kasmina_runtime::reexports::security::{KeyRing, VerifierConfig, sign_command};
use kasmina_runtime::reexports::telemetry::{NullSink, Telemetry, TelemetryConfig};
use kasmina_runtime::{Gauges, Kasmina, KasminaConfig};
use kasmina_server::{ControlPlane, ServerConfig};
use leyline::adaptation_command::Payload;
use leyline::kasmina_control_client::KasminaControlClient;
use leyline::wkt::Timestamp;
use leyline::{
    AdaptationCommand, CommandSeedOperation, CommandType, ReceiptStatus, SeedOperation, SignedCommand, TelemetryLevel,
};
use parking_lot::Mutex;
use tonic::transport::Channel;

use crate::session::{Session, SessionOptions, Stopped};

const SECRET: &str = "kasmina-soak-secret-0123";
/// Refusals of the envelope: a valid command must never get one of these.
const ENVELOPE_REFUSALS: [&str; 5] =
    ["invalid_signature", "stale_command", "nonce_replayed", "malformed_command", "unknown_key"];
/// One command in this many is an EMERGENCY.
const EMERGENCY_EVERY: u64 = 5_000;

/// Arguments of `soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// Commands to submit in all.
    #[arg(long, default_value_t = 1_000_000)]
    commands: u64,
    /// Training steps to run (at least; training goes on until the last command is answered).
    #[arg(long, default_value_t = 100_000)]
    steps: u64,
    /// gRPC connections.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    connections: u16,
    /// Concurrent senders per connection.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    tasks: u16,
    /// Write the figures here as JSON.
    #[arg(long, value_name = "FILE.json")]
    json: Option<PathBuf>,
    /// Exit non-zero when a promise breaks (wrong or missing receipt, lost CRITICAL event,
    /// memory growing after warm-up).
    #[arg(long)]
    check: bool,
}

/// What kind of command a sender submits, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    Emergency,
    Replay,
    Stale,
    Forged,
}

impl Kind {
    fn of(i: u64) -> Self {
        if i % EMERGENCY_EVERY == EMERGENCY_EVERY - 1 {
            return Self::Emergency;
        }
        match i % 10 {
            0 | 1 => Self::Valid,
            2 | 3 => Self::Replay,
            4..=6 => Self::Stale,
            _ => Self::Forged,
        }
    }
}

/// Counters shared by the senders.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    finals: AtomicU64,
    /// Final receipts by reason (`ok` for applied).
    reasons: Mutex<std::collections::BTreeMap<String, u64>>,
    late_finals: AtomicU64,
    wrong: AtomicU64,
    emergencies: AtomicU64,
    first_wrong: Mutex<Option<String>>,
    /// Submit-to-final-receipt latency of every valid command, in µs.
    valid_latency_us: Mutex<Vec<u32>>,
}

impl Tally {
    fn wrong(&self, what: String) {
        self.wrong.fetch_add(1, Ordering::Relaxed);
        self.first_wrong.lock().get_or_insert(what);
    }
}

/// One sample of the resources watched.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    sent: u64,
    rss_kb: u64,
    nonces: usize,
    queued: usize,
    receipts: u64,
    telemetry_pending: usize,
}

impl Sample {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "sent": self.sent, "rss_kb": self.rss_kb, "nonces": self.nonces, "queued": self.queued,
            "receipts": self.receipts, "telemetry_pending": self.telemetry_pending,
        })
    }

    fn take(sent: u64, gauges: &Gauges) -> Self {
        Self {
            sent,
            rss_kb: rss_kb(),
            nonces: gauges.nonces_held,
            queued: gauges.commands_queued,
            receipts: gauges.receipts_held,
            telemetry_pending: gauges.telemetry.normal_pending + gauges.telemetry.emergency_pending,
        }
    }
}

pub(crate) fn run(args: SoakArgs) -> Result<()> {
    let keys = KeyRing::with_key("default", SECRET).context("the soak key")?;
    let stop = Arc::new(AtomicBool::new(false));
    let steps_done = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<Kasmina>>(1);
    let trainer = {
        let (stop, steps_done, keys) = (Arc::clone(&stop), Arc::clone(&steps_done), keys.clone());
        std::thread::Builder::new()
            .name("soak-train".into())
            .spawn(move || train(keys, &ready_tx, &stop, &steps_done))
            .context("starting the training thread")?
    };
    let kasmina = ready_rx.recv().context("the training thread stopped before it was ready")??;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = Instant::now();
    let outcome = runtime.block_on(drive(&kasmina, &keys, &args, &steps_done));
    stop.store(true, Ordering::SeqCst);
    let trained = trainer.join().map_err(|_| anyhow::anyhow!("the training thread panicked"))?;
    let (tally, samples, criticals) = outcome?;
    trained?;
    report(&args, &tally, &samples, criticals, steps_done.load(Ordering::SeqCst), started.elapsed(), &kasmina)
}

/// The training thread: the demo's host with short windows, a short nonce TTL (so the ledger
/// turns over during the run) and a short receipt TTL.
fn train(
    keys: KeyRing,
    ready: &std::sync::mpsc::SyncSender<Result<Kasmina>>,
    stop: &AtomicBool,
    steps_done: &AtomicU64,
) -> Result<()> {
    let mut config = KasminaConfig::default();
    for window in [&mut config.training_steps, &mut config.blending_steps, &mut config.shadowing_steps] {
        *window = 8;
    }
    config.probation_steps = 8;
    config.embargo = Duration::from_secs(1);
    config.receipt_ttl = Duration::from_secs(5);
    let mut verifier = VerifierConfig::default();
    verifier.max_age = Duration::from_secs(2);
    verifier.max_future_skew = Duration::from_secs(2);
    verifier.nonce_ttl = Duration::from_secs(4);
    let dir = std::env::temp_dir().join(format!("kasmina-soak-{}", std::process::id()));
    let options = SessionOptions {
        device: candle_core::Device::Cpu,
        task: kasmina_hosts::Task::Mlp,
        data: None,
        data_dir: None,
        limit: None,
        seed: 0,
        batch: 64,
        host_lr: 1e-2,
        config,
        keys,
        telemetry: Telemetry::spawn(NullSink, TelemetryConfig::default())?,
        blueprint_dir: dir.clone(),
        host_only: false,
        width: 16,
        static_seed: None,
        standardize: true,
        verifier: Some(verifier),
    };
    let Some(mut session) = Session::start(options, ready) else { return Ok(()) };
    while !stop.load(Ordering::SeqCst) {
        let epoch = session.epoch(|_, _| {
            steps_done.fetch_add(1, Ordering::SeqCst);
            if stop.load(Ordering::SeqCst) { Err(anyhow::Error::new(Stopped)) } else { Ok(()) }
        });
        match epoch {
            Ok(_) => {}
            Err(e) if e.is::<Stopped>() => break,
            Err(e) => return Err(e.context("soak training failed")),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

type Outcome = (Arc<Tally>, Vec<Sample>, u64);

/// Serves the control plane, runs the senders and the sampler, and waits for the steps.
async fn drive(kasmina: &Kasmina, keys: &KeyRing, args: &SoakArgs, steps_done: &AtomicU64) -> Result<Outcome> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding loopback")?;
    let addr = listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let plane = ControlPlane::new(kasmina.clone(), ServerConfig::default());
    let server = tokio::spawn(plane.serve(listener, async {
        let _ = shutdown_rx.await;
    }));
    let criticals = critical_counter(kasmina);
    let tally = Arc::new(Tally::default());
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample(kasmina.clone(), Arc::clone(&tally), Arc::clone(&samples)));

    let senders = u64::from(args.connections) * u64::from(args.tasks);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
        for t in 0..args.tasks {
            let lane = u64::from(c) * u64::from(args.tasks) + u64::from(t);
            let sender = Sender { client: KasminaControlClient::new(channel.clone()), keys: keys.clone(), lane };
            let (tally, kasmina, total) = (Arc::clone(&tally), kasmina.clone(), args.commands);
            tasks.push(tokio::spawn(sender.run(kasmina, tally, (lane..total).step_by(senders as usize))));
        }
    }
    for task in tasks {
        task.await.context("a sender failed")??;
    }
    while steps_done.load(Ordering::SeqCst) < args.steps {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The last CRITICAL packets reach the subscriber.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampler.abort();
    samples.lock().push(Sample::take(tally.sent.load(Ordering::Relaxed), &kasmina.gauges()));
    let _ = shutdown_tx.send(());
    server.await.context("the server task")?.context("the control plane")?;
    let criticals = criticals.load(Ordering::SeqCst);
    let samples = samples.lock().clone();
    Ok((tally, samples, criticals))
}

/// Counts `emergency_cleanup` events on a CRITICAL subscription, from a thread of its own.
fn critical_counter(kasmina: &Kasmina) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let subscription = kasmina.telemetry().subscribe(TelemetryLevel::Critical);
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        while let Some(packet) = subscription.recv() {
            let n = packet.events.iter().filter(|e| e.description.contains("emergency_cleanup")).count();
            seen.fetch_add(n as u64, Ordering::SeqCst);
        }
    });
    count
}

async fn sample(kasmina: Kasmina, tally: Arc<Tally>, samples: Arc<Mutex<Vec<Sample>>>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        ticker.tick().await;
        let gauges = kasmina.gauges();
        samples.lock().push(Sample::take(tally.sent.load(Ordering::Relaxed), &gauges));
    }
}

/// One sender: a client on a shared connection, submitting its lane of command indices.
struct Sender {
    client: KasminaControlClient<Channel>,
    keys: KeyRing,
    lane: u64,
}

impl Sender {
    async fn run(mut self, kasmina: Kasmina, tally: Arc<Tally>, indices: impl Iterator<Item = u64>) -> Result<()> {
        let mut last_valid: Option<SignedCommand> = None;
        for i in indices {
            let kind = Kind::of(i);
            let signed = match (kind, &last_valid) {
                (Kind::Replay, Some(previous)) => previous.clone(),
                (Kind::Replay, None) => self.command(i, Kind::Forged)?,
                _ => self.command(i, kind)?,
            };
            let kind = if kind == Kind::Replay && last_valid.is_none() { Kind::Forged } else { kind };
            if matches!(kind, Kind::Valid) {
                last_valid = Some(signed.clone());
            }
            let sent_at = Instant::now();
            let receipt = self.client.submit_command(signed.clone()).await.context("SubmitCommand")?.into_inner();
            tally.sent.fetch_add(1, Ordering::Relaxed);
            let receipt = if receipt.status() == ReceiptStatus::Queued {
                tally.late_finals.fetch_add(1, Ordering::Relaxed);
                final_receipt(&kasmina, &receipt.command_id).await
            } else {
                Some(receipt)
            };
            let Some(receipt) = receipt else {
                tally.wrong(format!("command {i} ({kind:?}) never got a final receipt"));
                continue;
            };
            if kind == Kind::Valid {
                let us = u32::try_from(sent_at.elapsed().as_micros()).unwrap_or(u32::MAX);
                tally.valid_latency_us.lock().push(us);
            }
            check(&tally, i, kind, &receipt);
        }
        Ok(())
    }

    fn command(&self, i: u64, kind: Kind) -> Result<SignedCommand> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let issued = if kind == Kind::Stale { now.saturating_sub(Duration::from_secs(3600)) } else { now };
        let seed = format!("soak-{}-{}", self.lane, (i / 100) % 4);
        let mut cmd = AdaptationCommand {
            version: 1,
            command_id: format!("soak-{}-{i}", self.lane),
            target_seed_id: seed,
            issued_at: Some(Timestamp { seconds: issued.as_secs() as i64, nanos: issued.subsec_nanos() as i32 }),
            issued_by: "kasmina-soak".into(),
            ..Default::default()
        };
        if kind == Kind::Emergency {
            cmd.command_type = CommandType::CommandEmergency as i32;
            cmd.target_seed_id.clear();
        } else {
            let op = if i.is_multiple_of(4) { SeedOperation::SeedOpCull } else { SeedOperation::SeedOpGerminate };
            cmd.command_type = CommandType::CommandSeed as i32;
            cmd.payload = Some(Payload::SeedOperation(CommandSeedOperation {
                operation: op as i32,
                blueprint_id: "BP001".into(),
                parameters: Default::default(),
            }));
            cmd.annotations.insert("slot".into(), "hidden2".into());
        }
        let mut signed = sign_command(&cmd, "default", &self.keys)?;
        if kind == Kind::Forged {
            // A signature of the right shape over other bytes.
            signed.signature =
                kasmina_runtime::reexports::security::sign(b"not-the-soak-secret-at-all", &signed.command);
        }
        Ok(signed)
    }
}

/// Polls the receipt book until the command's receipt is final (bounded).
async fn final_receipt(kasmina: &Kasmina, id: &str) -> Option<leyline::CommandReceipt> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(r) = kasmina.receipt(id).filter(|r| r.status() != ReceiptStatus::Queued) {
            return Some(r);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// The receipt is final and the one this kind of command must get.
fn check(tally: &Tally, i: u64, kind: Kind, receipt: &leyline::CommandReceipt) {
    tally.finals.fetch_add(1, Ordering::Relaxed);
    let status = receipt.status();
    *tally.reasons.lock().entry(receipt.reason.clone()).or_default() += 1;
    let ok = match kind {
        Kind::Valid | Kind::Emergency => {
            status == ReceiptStatus::Applied
                || (status == ReceiptStatus::Refused && !ENVELOPE_REFUSALS.contains(&receipt.reason.as_str()))
        }
        Kind::Replay => receipt.reason == "nonce_replayed" || receipt.reason == "stale_command",
        Kind::Stale => receipt.reason == "stale_command",
        Kind::Forged => receipt.reason == "invalid_signature",
    };
    if kind == Kind::Emergency && status == ReceiptStatus::Applied {
        tally.emergencies.fetch_add(1, Ordering::Relaxed);
    }
    if !ok {
        tally.wrong(format!("command {i} ({kind:?}) got {:?} `{}`", status, receipt.reason));
    }
}

/// A watched gauge: its name, how to read it from a sample, and the absolute slack allowed.
type Gauge = (&'static str, fn(&Sample) -> u64, u64);

/// Per gauge, the peak after warm-up (the first fifth of the commands) up to half-way, and the
/// peak of the last half; "flat" when the second is within a quarter plus a slack of the first.
fn flatness(samples: &[Sample], sent: u64) -> (Vec<serde_json::Value>, bool) {
    // Warm-up: the first fifth of the commands. "Flat": the peak of the last half of the run
    // is within the slack of the peak of the warm-up-to-half part.
    let warm = samples.iter().filter(|s| s.sent >= sent / 5).collect::<Vec<_>>();
    let (early, late) = warm.split_at(warm.len() / 2);
    let peak = |part: &[&Sample], f: fn(&Sample) -> u64| part.iter().map(|s| f(s)).max().unwrap_or(0);
    let gauges: [Gauge; 5] = [
        ("rss_kb", |s| s.rss_kb, 32 * 1024),
        ("nonces", |s| s.nonces as u64, 2_000),
        ("queued", |s| s.queued as u64, 64),
        ("receipts", |s| s.receipts, 2_000),
        ("telemetry_pending", |s| s.telemetry_pending as u64, 1_024),
    ];
    let mut growth = Vec::new();
    let mut flat = true;
    for (name, f, slack) in gauges {
        let (a, b) = (peak(early, f), peak(late, f));
        let ok = b <= a + a / 4 + slack;
        flat &= ok;
        growth.push(serde_json::json!({ "gauge": name, "warm_peak": a, "late_peak": b, "flat": ok }));
        eprintln!(
            "  {name:<18} peak after warm-up {a:>10}   peak in the last half {b:>10}   {}",
            if ok { "flat" } else { "GROWING" }
        );
    }
    (growth, flat)
}

/// Resident set size of this process, in KiB (0 where /proc is not available).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn report(
    args: &SoakArgs,
    tally: &Tally,
    samples: &[Sample],
    criticals: u64,
    steps: u64,
    elapsed: Duration,
    kasmina: &Kasmina,
) -> Result<()> {
    let sent = tally.sent.load(Ordering::Relaxed);
    let (growth, flat) = flatness(samples, sent);
    let stats = kasmina.gauges().telemetry;
    let finals = tally.finals.load(Ordering::Relaxed);
    let wrong = tally.wrong.load(Ordering::Relaxed);
    let emergencies = tally.emergencies.load(Ordering::Relaxed);
    let rate = sent as f64 / elapsed.as_secs_f64();
    eprintln!(
        "soak: {sent} commands in {:.1} s ({rate:.0}/s) over {} connections x {} senders, {steps} training steps",
        elapsed.as_secs_f64(),
        args.connections,
        args.tasks
    );
    let reasons = tally.reasons.lock().clone();
    eprintln!(
        "  final receipts {finals}/{sent} ({} answered `queued` first), wrong {wrong}; by reason: {}",
        tally.late_finals.load(Ordering::Relaxed),
        reasons.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", "),
    );
    let mut latency = tally.valid_latency_us.lock().clone();
    latency.sort_unstable();
    let pct = |p: usize| latency.get((latency.len().saturating_sub(1)) * p / 100).copied().unwrap_or(0);
    let bad = reasons.iter().filter(|(r, _)| ENVELOPE_REFUSALS.contains(&r.as_str())).map(|(_, n)| n).sum::<u64>();
    eprintln!(
        "  {bad} bad commands refused ({:.0}/s) while valid ones got their final receipt in p50 {} µs, p99 {} µs, max {} µs",
        bad as f64 / elapsed.as_secs_f64(),
        pct(50),
        pct(99),
        latency.last().copied().unwrap_or(0)
    );
    eprintln!("  emergencies applied {emergencies}, CRITICAL emergency_cleanup events received {criticals}");
    eprintln!(
        "  telemetry: dropped (INFO) {}, sink failures {}, subscriber drops {}",
        stats.dropped, stats.sink_failures, stats.subscriber_drops
    );
    let doc = serde_json::json!({
        "commands": sent, "steps": steps, "seconds": elapsed.as_secs_f64(), "commands_per_second": rate,
        "final_receipts": finals, "wrong": wrong, "reasons": reasons,
        "bad_refused": bad, "valid_latency_us": { "p50": pct(50), "p99": pct(99), "max": latency.last().copied().unwrap_or(0) }, "emergencies": emergencies, "critical_received": criticals,
        "gauges": growth, "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(first) = tally.first_wrong.lock().as_ref() {
        eprintln!("  first wrong receipt: {first}");
    }
    if args.check {
        if finals != sent || wrong > 0 {
            bail!("{wrong} wrong receipts, {} commands without a final receipt", sent - finals);
        }
        if criticals < emergencies {
            bail!("{} CRITICAL emergency_cleanup events lost", emergencies - criticals);
        }
        if !flat {
            bail!("a resource kept growing after warm-up (see the table above)");
        }
    }
    Ok(())
}
