//! `kasmina serve`: trains the demo's host network (or `--data`) on a dedicated thread and serves
//! the `KasminaControl` gRPC service (tonic) so a remote Tamiyo can drive the seeds.
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
//!   telemetry, write the rollback payloads as JSON, exit 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kasmina_runtime::reexports::security::{KeyRing, printable};
use kasmina_runtime::reexports::telemetry::{JsonLinesSink, NullSink, Subscription, Telemetry, TelemetryConfig};
use kasmina_runtime::{Kasmina, KasminaConfig};
use leyline::kasmina_control_server::{KasminaControl, KasminaControlServer};
use leyline::{
    CommandReceipt, CommandTransport, HealthRequest, ReceiptRequest, SignedCommand, SystemHealth, SystemStatePacket,
    SystemStateRequest, TelemetryLevel, TelemetryPacket, TelemetryRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::session::{Session, SessionOptions, device};

/// Largest gRPC request the server decodes (commands themselves are limited to 4 KiB, D11).
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long a shutdown waits for open calls (a `SubmitCommand` waits up to `--receipt-wait-ms`)
/// before the connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long no call may be open before a shutdown drops the connections (lets the last
/// responses and stream trailers reach the wire).
const SETTLE: Duration = Duration::from_millis(100);
/// How long a stream bridge sleeps when it has nothing to move (or the client's buffer is
/// full) before looking again.
const BRIDGE_IDLE: Duration = Duration::from_millis(20);
/// Packets buffered per telemetry stream between the subscription and the client.
const STREAM_BUFFER: usize = 256;
/// The most telemetry streams served at once (each costs a task, a subscription and buffers).
const MAX_STREAMS: usize = 64;
/// The first pause after a failed accept (doubling up to 1 s).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
}

/// Raised from the per-step callback to stop an epoch at a step boundary.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("training stopped")
    }
}

impl std::error::Error for Stopped {}

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

    let telemetry = match &args.telemetry {
        Some(path) => Telemetry::spawn(
            JsonLinesSink::create(path).with_context(|| format!("opening {}", path.display()))?,
            TelemetryConfig::default(),
        )?,
        None => Telemetry::spawn(NullSink, TelemetryConfig::default())?,
    };
    let rollback_path = args.rollback_file.clone().unwrap_or_else(|| {
        let dir = args.telemetry.as_deref().and_then(Path::parent).unwrap_or(Path::new(""));
        dir.join("kasmina-rollback.json")
    });
    let blueprint_dir = std::env::temp_dir().join(format!("kasmina-serve-{}", std::process::id()));
    let options = SessionOptions {
        device,
        data: args.data.clone(),
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
    };

    let read_token = read_token(args.read_token.as_deref(), args.listen)?;
    let plane = Plane { receipt_wait: Duration::from_millis(args.receipt_wait_ms), read_token };
    let result = serve(options, args.listen, plane, &rollback_path);
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

/// How the control plane answers: the receipt wait and the read token.
#[derive(Debug, Clone)]
struct Plane {
    receipt_wait: Duration,
    read_token: Option<Arc<str>>,
}

/// The read token, checked: at least 16 characters; required off loopback.
fn read_token(token: Option<&str>, listen: SocketAddr) -> Result<Option<Arc<str>>> {
    match token {
        Some(t) if t.len() < 16 => bail!("--read-token must be at least 16 characters"),
        Some(t) => Ok(Some(Arc::from(t))),
        None if !listen.ip().is_loopback() => bail!(
            "listening on {listen}, which is not a loopback address, needs --read-token (or KASMINA_READ_TOKEN): \
             otherwise anyone who can reach it could read every seed's state and the telemetry"
        ),
        None => Ok(None),
    }
}

fn serve(options: SessionOptions, listen: SocketAddr, plane: Plane, rollback_path: &Path) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<Kasmina>>(1);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let trainer = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("kasmina-train".to_owned())
            .spawn(move || {
                let result = train(options, &ready_tx, &stop);
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kasmina-grpc")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(serve_grpc(kasmina.clone(), plane, listen, Arc::clone(&stop), done_rx));
    stop.store(true, Ordering::SeqCst);
    runtime.shutdown_timeout(Duration::from_secs(1));

    let trained = match trainer.join() {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("the training thread panicked")),
    };
    let flushed = kasmina.flush_telemetry().context("flushing telemetry");
    let written = write_rollbacks(&kasmina, rollback_path);
    let _ = kasmina.telemetry().shutdown();
    served?;
    trained?;
    flushed?;
    let count = written?;
    eprintln!("kasmina serve: stopped; {count} rollback payload(s) written to {}", rollback_path.display());
    Ok(())
}

/// The training thread: builds the session, hands its `Kasmina` to the server, then runs epochs
/// until `stop` (checked after every step, so the current step always completes).
fn train(
    options: SessionOptions,
    ready: &std::sync::mpsc::SyncSender<Result<Kasmina>>,
    stop: &AtomicBool,
) -> Result<()> {
    let mut session = match Session::new(options) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(session.kasmina.clone()));
    let mut last_log = Instant::now();
    let mut last_stages = String::new();
    while !stop.load(Ordering::SeqCst) {
        let epoch =
            session.epoch(|_, _| if stop.load(Ordering::SeqCst) { Err(anyhow::Error::new(Stopped)) } else { Ok(()) });
        match epoch {
            Ok(info) => {
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
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                return Err(e.context("training failed"));
            }
        }
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
    plane: Plane,
    listen: SocketAddr,
    stop: Arc<AtomicBool>,
    training_done: tokio::sync::oneshot::Receiver<()>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let inflight = Arc::new(AtomicUsize::new(0));
    let service = ControlService::new(kasmina, plane, &stop, &inflight);
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let server = transport().add_service(
        KasminaControlServer::new(service)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(16 * 1024 * 1024),
    );
    let incoming = accept_loop(listener);
    let mut server = tokio::spawn(server.serve_with_incoming_shutdown(incoming, async {
        let _ = shutdown_rx.await;
    }));
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }

    let early = tokio::select! {
        signal = shutdown_signal() => { signal?; None }
        _ = training_done => { Some("the training thread stopped") }
        result = &mut server => {
            stop.store(true, Ordering::SeqCst);
            return match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("the gRPC server stopped unexpectedly")),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the gRPC server failed")),
                Err(e) => Err(anyhow::Error::new(e).context("the gRPC server task failed")),
            };
        }
    };
    eprintln!("kasmina serve: {}; shutting down", early.unwrap_or("signal received"));
    // Ends the telemetry streams (their bridges see the flag) and the training loop.
    stop.store(true, Ordering::SeqCst);
    let _ = shutdown_tx.send(());
    // Open calls finish (telemetry streams end within a bridge poll); idle connections are not
    // waited for: some clients keep them open long after the server's GOAWAY.
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            result = &mut server => {
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(anyhow::Error::new(e).context("the gRPC server failed")),
                    Err(e) => Err(anyhow::Error::new(e).context("the gRPC server task failed")),
                };
            }
            _ = ticker.tick() => {
                let open = inflight.load(Ordering::SeqCst);
                if open > 0 {
                    quiet_since = None;
                } else if quiet_since.get_or_insert_with(Instant::now).elapsed() >= SETTLE {
                    // No call open for a while: the last responses have been written.
                    break;
                }
                if started.elapsed() >= SHUTDOWN_GRACE {
                    eprintln!("kasmina serve: {open} call(s) still open after {SHUTDOWN_GRACE:?}; closing them");
                    break;
                }
            }
        }
    }
    server.abort();
    Ok(())
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
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(payloads.len())
}

/// The `KasminaControl` service over a running session's `Kasmina`.
#[derive(Debug)]
struct ControlService {
    kasmina: Kasmina,
    receipt_wait: Duration,
    /// Reads must carry `authorization: Bearer TOKEN` when set.
    read_token: Option<Arc<str>>,
    /// Telemetry streams open, and the most allowed.
    streams: Arc<AtomicUsize>,
    max_streams: usize,
    stop: Arc<AtomicBool>,
    /// Calls being answered and telemetry streams open (see [`InFlight`]).
    inflight: Arc<AtomicUsize>,
}

/// Counts an open call for the shutdown, from creation to drop.
#[derive(Debug)]
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ControlService {
    fn new(kasmina: Kasmina, plane: Plane, stop: &Arc<AtomicBool>, inflight: &Arc<AtomicUsize>) -> Self {
        Self {
            kasmina,
            receipt_wait: plane.receipt_wait,
            read_token: plane.read_token,
            streams: Arc::new(AtomicUsize::new(0)),
            max_streams: MAX_STREAMS,
            stop: Arc::clone(stop),
            inflight: Arc::clone(inflight),
        }
    }

    /// A read is allowed: no token is configured, or the request carries it (compared in
    /// constant time).
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(token) = &self.read_token else { return Ok(()) };
        let given = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let expected = format!("Bearer {token}");
        if subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes()).into() {
            Ok(())
        } else {
            Err(Status::unauthenticated("this read needs `authorization: Bearer <read token>`"))
        }
    }

    /// Runs a call that takes the runtime's locks off the async workers (a lock may be held for
    /// the length of a training step).
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Kasmina) -> T + Send + 'static) -> Result<T, Status> {
        let _open = InFlight::new(&self.inflight);
        let kasmina = self.kasmina.clone();
        tokio::task::spawn_blocking(move || f(&kasmina))
            .await
            .map_err(|e| Status::internal(format!("request handler failed: {e}")))
    }
}

/// Submits a signed command and waits up to `wait` for the receipt of the next safe point. A
/// command still queued then is answered `queued` (accepted, not yet applied, decisions D14);
/// its final receipt comes from `GetReceipt` and the `command_receipt` event.
pub(crate) fn submit_and_wait(kasmina: &Kasmina, signed: &SignedCommand, wait: Duration) -> CommandReceipt {
    match kasmina.submit_via(signed, CommandTransport::Grpc) {
        Err(receipt) => receipt,
        Ok(ticket) if wait.is_zero() => ticket.queued().clone(),
        Ok(ticket) => ticket.wait(wait).unwrap_or_else(|| ticket.queued().clone()),
    }
}

#[tonic::async_trait]
impl KasminaControl for ControlService {
    async fn submit_command(&self, request: Request<SignedCommand>) -> Result<Response<CommandReceipt>, Status> {
        let signed = request.into_inner();
        let wait = self.receipt_wait;
        let receipt = self.blocking(move |k| submit_and_wait(k, &signed, wait)).await?;
        Ok(Response::new(receipt))
    }

    async fn get_system_state(
        &self,
        request: Request<SystemStateRequest>,
    ) -> Result<Response<SystemStatePacket>, Status> {
        self.authorize(&request)?;
        Ok(Response::new(self.blocking(Kasmina::system_state_packet).await?))
    }

    type StreamTelemetryStream = ReceiverStream<Result<TelemetryPacket, Status>>;

    async fn stream_telemetry(
        &self,
        request: Request<TelemetryRequest>,
    ) -> Result<Response<Self::StreamTelemetryStream>, Status> {
        self.authorize(&request)?;
        let min_level = match TelemetryLevel::try_from(request.get_ref().min_level) {
            Ok(TelemetryLevel::Unspecified) => TelemetryLevel::Info,
            Ok(level) => level,
            Err(_) => {
                return Err(Status::invalid_argument(format!("unknown min_level {}", request.get_ref().min_level)));
            }
        };
        // A bounded number of streams, each a task (no OS thread): a flood of subscribers is
        // refused, not served at any cost.
        let slot = StreamSlot::take(&self.streams, self.max_streams)
            .ok_or_else(|| Status::resource_exhausted(format!("at most {} telemetry streams", self.max_streams)))?;
        let subscription = self.kasmina.telemetry().subscribe(min_level);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let stop = Arc::clone(&self.stop);
        let open = InFlight::new(&self.inflight);
        tokio::spawn(async move {
            bridge(&subscription, &tx, &stop).await;
            // The stream ends once the sender is gone; only then is it closed for the shutdown.
            drop(tx);
            drop(open);
            drop(slot);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn health(&self, request: Request<HealthRequest>) -> Result<Response<SystemHealth>, Status> {
        self.authorize(&request)?;
        Ok(Response::new(self.blocking(Kasmina::health).await?))
    }

    async fn get_receipt(&self, request: Request<ReceiptRequest>) -> Result<Response<CommandReceipt>, Status> {
        self.authorize(&request)?;
        let id = request.into_inner().command_id;
        if id.is_empty() {
            return Err(Status::invalid_argument("command_id is empty"));
        }
        let lookup = id.clone();
        match self.blocking(move |k| k.receipt(&lookup)).await? {
            Some(receipt) => Ok(Response::new(receipt)),
            None => Err(Status::not_found(format!("no receipt for command `{id}` (unknown or expired)"))),
        }
    }
}

/// Moves packets from a subscription to a response stream until the client goes away, the
/// server stops, or the client stops reading: a client whose stream buffer stays full lets its
/// subscription fill up, the transport cuts it off (counted in
/// `TelemetryStats::subscribers_evicted`), and the stream ends. A slow or vanished client never
/// blocks training and never grows memory without bound.
async fn bridge(subscription: &Subscription, tx: &mpsc::Sender<Result<TelemetryPacket, Status>>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) && !tx.is_closed() && !subscription.evicted() {
        let Some(mut packet) = subscription.try_recv() else {
            tokio::time::sleep(BRIDGE_IDLE).await;
            continue;
        };
        loop {
            match tx.try_send(Ok(packet)) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    if stop.load(Ordering::SeqCst) || subscription.evicted() {
                        return;
                    }
                    let Ok(p) = back else { return };
                    packet = p;
                    tokio::time::sleep(BRIDGE_IDLE).await;
                }
            }
        }
    }
}

/// The gRPC transport: dead peers are found and their connections closed, and one connection
/// cannot monopolise the server.
fn transport() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .concurrency_limit_per_connection(32)
}

/// Accepted connections. A failed accept (no file descriptor left, too many open files) backs
/// off before the next try instead of spinning on the error.
fn accept_loop(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::wrappers::ReceiverStream::new({
        // Bounded: while the server is busy, accepting waits (the kernel's backlog holds the rest).
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut backoff = ACCEPT_BACKOFF;
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        backoff = ACCEPT_BACKOFF;
                        if tx.send(Ok(stream)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        eprintln!("kasmina serve: accept failed ({e}); retrying in {} ms", backoff.as_millis());
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        });
        rx
    })
}

/// One of the bounded telemetry-stream slots, released on drop.
#[derive(Debug)]
struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let taken = open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).is_ok();
        taken.then(|| Self(Arc::clone(open)))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
