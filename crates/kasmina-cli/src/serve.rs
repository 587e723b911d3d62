//! `kasmina serve`: trains the demo's host network (or `--data`) on a dedicated thread and serves
//! the `KasminaControl` gRPC service (`kasmina-server`) so a remote Tamiyo can drive the seeds.
//!
//! - `SubmitCommand` verifies the `SignedCommand` (envelope or legacy form, D8) with the key ring,
//!   queues it for the next safe point and waits up to `--receipt-wait-ms` (2 s) for the receipt
//!   of that safe point; if training has not reached one by then, it answers `accepted = true`,
//!   reason `queued` (decisions D14), and the final receipt comes from `GetReceipt`.
//! - `GetReceipt`: the latest receipt of a command by id (NOT_FOUND when unknown or expired).
//! - `GetSystemState`, `Health`: the runtime's `SystemStatePacket` / `SystemHealth`.
//! - `StreamTelemetry`: a telemetry subscription bridged into the response stream; ERROR and
//!   CRITICAL packets are never dropped (normal ones are, when a client reads too slowly).
//! - Ctrl-C / SIGTERM: stop accepting, let the training thread finish its current step, flush
//!   telemetry, write the rollback payloads as JSON (an earlier file is moved aside to `.1`,
//!   `.2`, ...), save a checkpoint with `--checkpoint-dir`, exit 0. The telemetry file is
//!   appended to, never truncated; `--resume` restores the newest checkpoint before serving.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kasmina_oona::{Consumer, OonaConfig, OonaSink};
use kasmina_runtime::reexports::security::{KeyRing, printable};
use kasmina_runtime::reexports::telemetry::{FanoutSink, JsonLinesSink, NullSink, Telemetry, TelemetryConfig};
use kasmina_runtime::{Kasmina, KasminaConfig};
use kasmina_server::{ControlPlane, ReadToken, ServerConfig, TlsSettings};

use crate::checkpoint::{self, CheckpointArgs, Halted};
use crate::session::{Session, SessionOptions, Stopped, device};

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Train on this CSV (numeric features, last column the class index) instead of the built-in task.
    #[arg(long, value_name = "FILE.csv")]
    data: Option<PathBuf>,
    /// Device to train on: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Key file (`id=secret` lines); without it the keys come from ESPER_LEYLINE_SECRET (key id
    /// `default`), ESPER_LEYLINE_KEYS or ESPER_LEYLINE_KEY_FILE.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Length of each lifecycle window (training, blending, shadowing, probation), in steps.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..))]
    steps_per_stage: u64,
    /// How long a culled seed stays EMBARGOED, in seconds.
    #[arg(long, default_value_t = 30)]
    embargo_secs: u64,
    /// RNG seed of the data, the host's initialisation and the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Also write every telemetry packet to this file (JSON lines, canonical protobuf JSON).
    #[arg(long, value_name = "FILE.jsonl")]
    telemetry: Option<PathBuf>,
    /// Where the rollback payloads go at shutdown (default: `kasmina-rollback.json` beside the
    /// telemetry file, else in the current directory).
    #[arg(long, value_name = "FILE.json")]
    rollback_file: Option<PathBuf>,
    /// Fossilize automatically when probation ends (G4 decides). Off by default: the remote
    /// Tamiyo sends FOSSILIZE.
    #[arg(long)]
    auto_fossilize: bool,
    /// Do not advance stages when a window completes: every step waits for Tamiyo's request
    /// (START_TRAINING, START_GRAFTING, STABILIZE, EVALUATE, FOSSILIZE).
    #[arg(long)]
    manual_advance: bool,
    /// How long `SubmitCommand` waits for the command's safe point before answering `queued`
    /// (its final receipt then comes from `GetReceipt`); 0 answers `queued` at once.
    #[arg(long, default_value_t = 2000)]
    receipt_wait_ms: u64,
    /// Bearer token every read (GetSystemState, StreamTelemetry, GetReceipt, Health) must carry
    /// (`authorization: Bearer TOKEN`); at least 16 characters. Required to listen on a
    /// non-loopback address; without it, reads are open to local clients only.
    #[arg(long, env = "KASMINA_READ_TOKEN", hide_env_values = true)]
    read_token: Option<String>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "CERT.pem", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM; must not be readable by group or others).
    #[arg(long, value_name = "KEY.pem", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Verify client certificates issued by this CA (PEM): a client presenting one may read
    /// without the token. Needs --tls-cert.
    #[arg(long, value_name = "CA.pem", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Refuse the TLS handshake of clients without a certificate from --tls-client-ca (mTLS).
    #[arg(long, requires = "tls_client_ca")]
    require_client_cert: bool,
    /// Serve plaintext off loopback (only behind a TLS-terminating proxy).
    #[arg(long)]
    allow_plaintext: bool,
    /// Also join Esper's Oona bus on this Redis (commands from `oona.emergency`/`oona.normal`,
    /// telemetry to `oona.telemetry`, a SystemStatePacket per epoch to `oona.normal`); the
    /// `OONA_*` variables override the stream names and limits (docs/oona.md).
    #[arg(long, value_name = "redis://HOST:PORT", env = "OONA_URL")]
    oona: Option<String>,
    /// Checkpoints: every `--checkpoint-every` steps and at shutdown; `--resume` restores the
    /// newest one before serving.
    #[command(flatten)]
    checkpoint: CheckpointArgs,
}

pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let keys = load_keys(args.key_file.as_deref())?;
    let device = device(&args.device)?;
    let mut config = KasminaConfig::default();
    config.training_steps = args.steps_per_stage;
    config.blending_steps = args.steps_per_stage;
    config.shadowing_steps = args.steps_per_stage;
    config.probation_steps = args.steps_per_stage;
    config.embargo = Duration::from_secs(args.embargo_secs);
    config.auto_fossilize = args.auto_fossilize;
    config.auto_advance = !args.manual_advance;
    config.validate().context("invalid settings")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kasmina-grpc")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (stop_bus, bus_stopped) = tokio::sync::watch::channel(false);
    let bus = start_bus(&args, &keys, &runtime, &bus_stopped)?;
    let telemetry = telemetry(&args, bus.as_ref())?;
    let rollback_path = args.rollback_file.clone().unwrap_or_else(|| {
        let dir = args.telemetry.as_deref().and_then(Path::parent).unwrap_or(Path::new(""));
        dir.join("kasmina-rollback.json")
    });
    let blueprint_dir = std::env::temp_dir().join(format!("kasmina-serve-{}", std::process::id()));
    let options = SessionOptions {
        device,
        task: kasmina_hosts::Task::Mlp,
        data: args.data.clone(),
        data_dir: None,
        limit: None,
        seed: args.seed,
        batch: usize::try_from(args.batch).unwrap_or(usize::MAX),
        host_lr: 1e-2,
        config,
        keys,
        telemetry,
        blueprint_dir: blueprint_dir.clone(),
        host_only: false,
        width: crate::session::SERVE_WIDTH,
        static_seed: None,
        standardize: true,
        verifier: None,
    };

    let plane = server_config(&args)?;
    plane.check(args.listen).context(
        "unsafe control-plane settings (see --read-token, --tls-cert/--tls-key, --tls-client-ca, --allow-plaintext)",
    )?;
    let result = serve(Serving {
        options,
        listen: args.listen,
        plane,
        rollback_path: &rollback_path,
        ckpt: &args.checkpoint,
        runtime,
        bus,
        stop_bus,
    });
    // Best effort: the library is regenerated at every start.
    let _ = std::fs::remove_dir_all(&blueprint_dir);
    result
}

/// The key ring: `--key-file`, else the environment; an empty ring is refused (every command
/// would be rejected with `verifier_unavailable`).
fn load_keys(key_file: Option<&Path>) -> Result<KeyRing> {
    let keys = match key_file {
        Some(path) => KeyRing::from_file(path).with_context(|| format!("loading keys from {}", path.display()))?,
        None => KeyRing::from_env().context("loading keys from the environment")?,
    };
    if keys.is_empty() {
        match key_file {
            Some(path) => bail!("the key file {} holds no key", path.display()),
            None => bail!(
                "no signing key: set ESPER_LEYLINE_SECRET (key id `default`) or pass --key-file; \
                 without a key every command would be rejected"
            ),
        }
    }
    Ok(keys)
}

/// The control plane's settings from the flags.
fn server_config(args: &ServeArgs) -> Result<ServerConfig> {
    let mut config = ServerConfig {
        receipt_wait: Duration::from_millis(args.receipt_wait_ms),
        allow_plaintext: args.allow_plaintext,
        ..ServerConfig::default()
    };
    if let Some(token) = &args.read_token {
        config.read_token = Some(ReadToken::new(token).context("--read-token")?);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let mut tls = TlsSettings::from_pem_files(cert, key).context("TLS certificate or key")?;
        if let Some(ca) = &args.tls_client_ca {
            tls = tls.client_ca_file(ca).context("--tls-client-ca")?.require_client_cert(args.require_client_cert);
        }
        config.tls = Some(tls);
    }
    Ok(config)
}

/// With `--oona`: connects the telemetry writer to the bus.
fn start_bus(
    args: &ServeArgs,
    keys: &KeyRing,
    runtime: &tokio::runtime::Runtime,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Bus>> {
    let Some(url) = &args.oona else { return Ok(None) };
    let config = OonaConfig::from_lookup(Some(url), |k| std::env::var(k).ok()).context("--oona")?;
    let (sink, task) = runtime
        .block_on(OonaSink::start(config.clone(), keys.clone(), stopped.clone()))
        .with_context(|| format!("connecting to Oona at {}", config.url))?;
    eprintln!("kasmina serve: on the Oona bus at {} as `{}`", config.url, config.consumer);
    Ok(Some(Bus { config, sink, task }))
}

/// Telemetry to `--telemetry` (appended to, never truncated: a restart keeps what the earlier
/// run wrote) and to the bus.
fn telemetry(args: &ServeArgs, bus: Option<&Bus>) -> Result<Telemetry> {
    let mut sinks = FanoutSink::new();
    if let Some(path) = &args.telemetry {
        sinks = sinks.with(JsonLinesSink::append_to(path).with_context(|| format!("opening {}", path.display()))?);
    }
    if let Some(b) = bus {
        sinks = sinks.with(b.sink.clone());
    }
    Ok(if sinks.is_empty() {
        Telemetry::spawn(NullSink, TelemetryConfig::default())?
    } else {
        Telemetry::spawn(sinks, TelemetryConfig::default())?
    })
}

/// Oona: its settings, the telemetry sink and the sink's writer task.
struct Bus {
    config: OonaConfig,
    sink: OonaSink,
    task: tokio::task::JoinHandle<()>,
}

/// Everything `serve` runs.
struct Serving<'a> {
    options: SessionOptions,
    listen: SocketAddr,
    plane: ServerConfig,
    rollback_path: &'a Path,
    ckpt: &'a CheckpointArgs,
    runtime: tokio::runtime::Runtime,
    bus: Option<Bus>,
    stop_bus: tokio::sync::watch::Sender<bool>,
}

fn serve(s: Serving<'_>) -> Result<()> {
    let Serving { options, listen, plane, rollback_path, ckpt, runtime, bus, stop_bus } = s;
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<Kasmina>>(1);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let trainer = {
        let stop = Arc::clone(&stop);
        let ckpt = ckpt.clone();
        let state_sink = bus.as_ref().map(|b| b.sink.clone());
        std::thread::Builder::new()
            .name("kasmina-train".to_owned())
            .spawn(move || {
                let result = train(options, &ready_tx, &stop, &ckpt, state_sink.as_ref());
                let _ = done_tx.send(());
                result
            })
            .context("starting the training thread")?
    };
    let kasmina = match ready_rx.recv() {
        Ok(Ok(k)) => k,
        Ok(Err(e)) => {
            let _ = trainer.join();
            return Err(e.context("building the training session"));
        }
        Err(_) => {
            return match trainer.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow::anyhow!("the training thread stopped before it was ready")),
            };
        }
    };

    let consumer = match &bus {
        Some(b) => {
            let consumer = runtime
                .block_on(Consumer::connect(b.config.clone(), kasmina.clone()))
                .context("joining the Oona consumer group")?;
            Some(runtime.spawn(consumer.run(stop_bus.subscribe())))
        }
        None => None,
    };
    let served = runtime.block_on(serve_grpc(kasmina.clone(), plane, listen, Arc::clone(&stop), done_rx));
    stop.store(true, Ordering::SeqCst);
    let trained = match trainer.join() {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("the training thread panicked")),
    };
    let flushed = kasmina.flush_telemetry().context("flushing telemetry");
    // The bus last: the consumer stops reading, the writer sends what is queued (CRITICAL
    // packets included) once more, then both end.
    let _ = stop_bus.send(true);
    if let Some(c) = consumer {
        let _ = runtime.block_on(c);
    }
    if let Some(b) = bus {
        let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), b.task).await });
    }
    runtime.shutdown_timeout(Duration::from_secs(1));

    let written = write_rollbacks(&kasmina, rollback_path);
    let _ = kasmina.telemetry().shutdown();
    served?;
    trained?;
    flushed?;
    let count = written?;
    eprintln!("kasmina serve: stopped; {count} rollback payload(s) written to {}", rollback_path.display());
    Ok(())
}

/// Builds the session and, with `--resume`, restores the newest checkpoint: before the server
/// gets the runtime, so no command is applied to a state about to be replaced.
fn start(options: SessionOptions, ckpt: &CheckpointArgs) -> Result<Session> {
    let seed = options.seed;
    let mut session = Session::new(options)?;
    if let (true, Some(dir)) = (ckpt.resume, &ckpt.checkpoint_dir) {
        match checkpoint::resume(dir, &mut session, seed)? {
            Some(r) => eprintln!("kasmina serve: resumed at step {} from {}", r.step, dir.display()),
            None => eprintln!("kasmina serve: no checkpoint under {} yet; starting afresh", dir.display()),
        }
    }
    Ok(session)
}

/// The training thread: builds (or resumes) the session, hands its `Kasmina` to the server,
/// then runs epochs until `stop` (checked after every step, so the current step always
/// completes), saving a checkpoint every `--checkpoint-every` steps and when it stops.
fn train(
    options: SessionOptions,
    ready: &std::sync::mpsc::SyncSender<Result<Kasmina>>,
    stop: &AtomicBool,
    ckpt: &CheckpointArgs,
    bus: Option<&OonaSink>,
) -> Result<()> {
    let mut session = match start(options, ckpt) {
        Ok(session) => {
            let _ = ready.send(Ok(session.kasmina.clone()));
            session
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let mut last_log = Instant::now();
    let mut last_stages = String::new();
    let dir = ckpt.checkpoint_dir.as_deref();
    while !stop.load(Ordering::SeqCst) {
        let epoch = session.epoch(|s, info| {
            let halt = ckpt.halt_at_step == Some(info.step);
            if let Some(dir) = dir
                && (halt || (ckpt.checkpoint_every > 0 && info.step.is_multiple_of(ckpt.checkpoint_every)))
            {
                // A periodic save that fails (a full disk) is reported (`checkpoint_failed`) and
                // training goes on; the planned halt needs its checkpoint.
                match checkpoint::save(dir, s, serde_json::json!({}), false) {
                    Ok(_) => {}
                    Err(e) if halt => return Err(e),
                    Err(e) => eprintln!("kasmina serve: checkpoint not saved: {e:#}"),
                }
            }
            if halt {
                return Err(Halted(info.step).into());
            }
            if stop.load(Ordering::SeqCst) { Err(anyhow::Error::new(Stopped)) } else { Ok(()) }
        });
        match epoch {
            Ok(info) => {
                if let Some(bus) = bus {
                    // Each epoch's state on `oona.normal`, as Tolaria publishes it.
                    bus.publish_state(&session.kasmina.system_state_packet())?;
                }
                let stages = stage_line(&session.kasmina);
                if stages != last_stages || last_log.elapsed() >= Duration::from_secs(10) {
                    eprintln!(
                        "epoch {:>4}  train loss {:.4}  val loss {:.4}  val acc {:.3}  {stages}",
                        info.epoch, info.train_loss, info.val_loss, info.val_acc
                    );
                    last_stages = stages;
                    last_log = Instant::now();
                }
            }
            Err(e) if e.is::<Stopped>() => break,
            Err(e) if e.is::<Halted>() => {
                stop.store(true, Ordering::SeqCst);
                return Err(e);
            }
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                return Err(e.context("training failed"));
            }
        }
    }
    if let Some(dir) = dir {
        let saved = checkpoint::save(dir, &session, serde_json::json!({}), false)?;
        eprintln!("kasmina serve: checkpoint at step {} in {}", saved.step, saved.dir.display());
    }
    Ok(())
}

/// `slot=seed:STAGE` for every slot, for the progress log.
fn stage_line(kasmina: &Kasmina) -> String {
    kasmina
        .export_seed_states()
        .iter()
        .map(|s| {
            // Seed ids come from remote clients: control and bidi characters are escaped.
            let id = if s.seed_id.is_empty() { "-".into() } else { printable(&s.seed_id) };
            format!("{id}:{}", s.stage().short_name())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn serve_grpc(
    kasmina: Kasmina,
    plane: ServerConfig,
    listen: SocketAddr,
    stop: Arc<AtomicBool>,
    training_done: tokio::sync::oneshot::Receiver<()>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    match &plane.tls {
        Some(tls) if tls.verifies_clients() => eprintln!("kasmina serve: TLS, client certificates verified"),
        Some(_) => eprintln!("kasmina serve: TLS"),
        None => eprintln!("kasmina serve: plaintext (loopback or behind a TLS proxy)"),
    }
    let shutdown = async move {
        let why = tokio::select! {
            signal = shutdown_signal() => signal.map(|()| "signal received"),
            _ = training_done => Ok("the training thread stopped"),
        };
        match why {
            Ok(why) => eprintln!("kasmina serve: {why}; shutting down"),
            Err(e) => eprintln!("kasmina serve: {e:#}; shutting down"),
        }
        // The training loop stops at its next step boundary.
        stop.store(true, Ordering::SeqCst);
    };
    let served = tokio::spawn(ControlPlane::new(kasmina, plane).serve(listener, shutdown));
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    served.await.context("the gRPC server task failed")?.context("the gRPC server failed")
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}

/// Writes every recorded rollback payload as JSON (each payload in protobuf's canonical JSON
/// mapping of `google.protobuf.Struct`); returns how many were written.
fn write_rollbacks(kasmina: &Kasmina, path: &Path) -> Result<usize> {
    let payloads = kasmina.rollback_payloads();
    let entries = payloads
        .iter()
        .map(|(seed_id, payload, elapsed_ms)| {
            Ok(serde_json::json!({
                "seedId": seed_id,
                "elapsedMs": elapsed_ms,
                "payload": serde_json::to_value(payload)?,
            }))
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()
        .context("encoding the rollback payloads")?;
    let doc = serde_json::json!({ "rollbacks": entries });
    let mut text = serde_json::to_string_pretty(&doc).context("encoding the rollback payloads")?;
    text.push('\n');
    rotate(path)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(payloads.len())
}

/// Moves an existing `path` aside to `path.N` (the first free N from 1), so a restart never
/// overwrites what an earlier run wrote.
fn rotate(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut n = 1u32;
    let aside = loop {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        let candidate = PathBuf::from(name);
        if !candidate.exists() {
            break candidate;
        }
        n += 1;
    };
    std::fs::rename(path, &aside).with_context(|| format!("moving {} aside to {}", path.display(), aside.display()))
}
