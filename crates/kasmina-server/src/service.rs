//! The `KasminaControl` service over a running `Kasmina`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use kasmina_runtime::Kasmina;
use kasmina_runtime::reexports::telemetry::Subscription;
use leyline::kasmina_control_server::KasminaControl;
use leyline::{
    CommandReceipt, CommandTransport, HealthRequest, ReceiptRequest, SignedCommand, SystemHealth, SystemStatePacket,
    SystemStateRequest, TelemetryLevel, TelemetryPacket, TelemetryRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::ServerConfig;
use crate::config::ReadToken;

/// How long a stream bridge sleeps when it has nothing to move (or the client's buffer is
/// full) before looking again.
const BRIDGE_IDLE: Duration = Duration::from_millis(20);

/// The `KasminaControl` service: verifies and queues commands, answers reads (authorised when
/// the configuration says so), bridges telemetry subscriptions into bounded streams.
///
/// Serve it with [`ControlPlane`](crate::ControlPlane), or mount it in your own tonic server
/// with [`ControlService::into_server`].
#[derive(Debug, Clone)]
pub struct ControlService {
    kasmina: Kasmina,
    receipt_wait: Duration,
    read_token: Option<ReadToken>,
    /// Reads need a token or a verified client certificate.
    reads_guarded: bool,
    stream_buffer: usize,
    max_streams: usize,
    /// Telemetry streams open.
    streams: Arc<AtomicUsize>,
    /// Ends the telemetry streams (the shutdown).
    stop: Arc<AtomicBool>,
    /// Calls being answered and telemetry streams open.
    inflight: Arc<AtomicUsize>,
    /// `accept` calls that failed (no file descriptor left, ...).
    accept_failures: Arc<AtomicU64>,
}

impl ControlService {
    /// The service for `kasmina` under `config`.
    pub fn new(kasmina: Kasmina, config: &ServerConfig) -> Self {
        Self {
            kasmina,
            receipt_wait: config.receipt_wait,
            read_token: config.read_token.clone(),
            reads_guarded: config.reads_guarded(),
            stream_buffer: config.stream_buffer.max(1),
            max_streams: config.max_streams,
            streams: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            inflight: Arc::new(AtomicUsize::new(0)),
            accept_failures: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The tonic server of this service, with the request and response size limits.
    pub fn into_server(
        self,
        max_request_bytes: usize,
    ) -> leyline::kasmina_control_server::KasminaControlServer<ControlService> {
        leyline::kasmina_control_server::KasminaControlServer::new(self)
            .max_decoding_message_size(max_request_bytes)
            .max_encoding_message_size(16 * 1024 * 1024)
    }

    /// Calls being answered plus telemetry streams open.
    pub fn open_calls(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Telemetry streams open.
    pub fn open_streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// `accept` calls that failed since the plane started (each is followed by a pause of 50 ms
    /// doubling to 1 s, so a process out of file descriptors does not spin).
    pub fn accept_failures(&self) -> u64 {
        self.accept_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn accept_failure_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.accept_failures)
    }

    /// Ends every telemetry stream within a bridge poll (used by the shutdown).
    pub fn stop_streams(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// A read is allowed: reads are not guarded, or the caller presented a client certificate
    /// that the TLS layer verified, or the request carries the read token (constant-time
    /// comparison).
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if !self.reads_guarded {
            return Ok(());
        }
        if request.peer_certs().is_some_and(|certs| !certs.is_empty()) {
            return Ok(());
        }
        if let Some(token) = &self.read_token {
            let given = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
            if token.matches(given) {
                return Ok(());
            }
        }
        Err(Status::unauthenticated(
            "this read needs a client certificate from the trusted CA or `authorization: Bearer <read token>`",
        ))
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
pub fn submit_and_wait(kasmina: &Kasmina, signed: &SignedCommand, wait: Duration) -> CommandReceipt {
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
        let (tx, rx) = mpsc::channel(self.stream_buffer);
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
