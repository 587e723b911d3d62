//! Kasmina's gRPC control plane: the `KasminaControl` service of Leyline over tonic, for a
//! running [`Kasmina`].
//!
//! **Purpose.** Let a remote controller (Esper's Tamiyo) submit signed commands and read state,
//! receipts, health and telemetry, safely on an untrusted network:
//!
//! - commands are authenticated by their HMAC envelope (the runtime verifies them); reads
//!   (`GetSystemState`, `StreamTelemetry`, `GetReceipt`, `Health`) are authorised by a verified
//!   TLS client certificate or a bearer read token once either is configured;
//! - TLS by rustls with optional or required client certificates ([`TlsSettings`]);
//!   [`ServerConfig::check`] refuses plaintext or unauthorised reads off loopback;
//! - every resource is bounded: request size, calls per connection, a deadline per call,
//!   telemetry streams (and a subscriber that stops reading is cut off, never blocking training),
//!   connections that have not started speaking (closed after the handshake timeout) — see
//!   [`ServerConfig`];
//! - an undecodable request body is `INVALID_ARGUMENT` (Leyline's codec).
//!
//! **Layer.** L3: depends on `kasmina-runtime` and `leyline` (with its `server` stubs), tonic,
//! tokio. Nothing in the runtime depends on it; the `kasmina serve` command is a thin user.
//!
//! **Main types.** [`ControlPlane`] (bind, serve, graceful shutdown), [`ControlService`] (the
//! service alone, to mount in another tonic server), [`ServerConfig`], [`TlsSettings`],
//! [`ReadToken`], [`ServerError`].

mod config;
mod error;
mod listen;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kasmina_runtime::Kasmina;
use tokio::net::TcpListener;

pub use config::{MIN_READ_TOKEN_LEN, ReadToken, ServerConfig, TlsSettings};
pub use error::ServerError;
pub use service::{ControlService, submit_and_wait};

/// How long no call may be open before a shutdown drops the connections (lets the last
/// responses and stream trailers reach the wire).
const SETTLE: Duration = Duration::from_millis(100);

/// A control plane ready to serve one `Kasmina`.
#[derive(Debug)]
pub struct ControlPlane {
    service: ControlService,
    config: ServerConfig,
}

impl ControlPlane {
    /// The control plane of `kasmina` under `config` (checked against the address when served).
    pub fn new(kasmina: Kasmina, config: ServerConfig) -> Self {
        Self { service: ControlService::new(kasmina, &config), config }
    }

    /// The service, for a caller that wants to watch open calls or streams.
    pub fn service(&self) -> &ControlService {
        &self.service
    }

    /// Checks the configuration for `listener`'s address, then serves until `shutdown` resolves.
    /// On shutdown, no new connection is accepted, telemetry streams end, open calls get up to
    /// [`ServerConfig::shutdown_grace`], and the remaining connections are closed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr: SocketAddr = listener.local_addr().map_err(ServerError::Listen)?;
        self.config.check(addr)?;
        let mut builder = tonic::transport::Server::builder()
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .concurrency_limit_per_connection(self.config.max_calls_per_connection)
            .timeout(self.config.call_timeout);
        if let Some(tls) = &self.config.tls {
            builder = builder.tls_config(tls.server_config(self.config.handshake_timeout)).map_err(ServerError::Tls)?;
        }
        let gate = listen::Gate {
            tls: self.config.tls.is_some(),
            timeout: self.config.handshake_timeout,
            max_pending: self.config.max_pending_handshakes,
            accept_failures: self.service.accept_failure_counter(),
        };
        let incoming = listen::incoming(listener, gate);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let router = builder.add_service(self.service.clone().into_server(self.config.max_request_bytes));
        let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        }));
        tokio::select! {
            result = &mut server => return finished(result),
            () = shutdown => {}
        }
        // Ends the telemetry streams (their bridges see the flag); open calls finish; idle
        // connections are not waited for (some clients keep them open long after GOAWAY).
        self.service.stop_streams();
        let _ = stop_tx.send(());
        self.drain(&mut server).await
    }

    async fn drain(
        &self,
        server: &mut tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    ) -> Result<(), ServerError> {
        let started = Instant::now();
        let mut quiet_since: Option<Instant> = None;
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                result = &mut *server => return finished(result),
                _ = ticker.tick() => {
                    let open = self.service.open_calls();
                    if open > 0 {
                        quiet_since = None;
                    } else if quiet_since.get_or_insert_with(Instant::now).elapsed() >= SETTLE {
                        break;
                    }
                    if started.elapsed() >= self.config.shutdown_grace {
                        eprintln!(
                            "kasmina-server: {open} call(s) still open after {:?}; closing them",
                            self.config.shutdown_grace
                        );
                        break;
                    }
                }
            }
        }
        server.abort();
        Ok(())
    }
}

fn finished(result: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>) -> Result<(), ServerError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServerError::Transport(e)),
        Err(e) => Err(ServerError::Task(e)),
    }
}
