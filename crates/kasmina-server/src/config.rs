//! What the control plane allows: who may read, TLS, and every resource bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use zeroize::Zeroizing;

use crate::ServerError;

/// The shortest read token accepted.
pub const MIN_READ_TOKEN_LEN: usize = 16;

/// The control plane's settings. [`ServerConfig::default`] is the loopback, plaintext,
/// token-less setup of a developer machine; [`ServerConfig::check`] refuses the combinations that
/// would expose commands or reads off loopback.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long `SubmitCommand` waits for the command's safe point before answering `queued`
    /// (its final receipt then comes from `GetReceipt`, decisions D14); zero answers at once.
    pub receipt_wait: Duration,
    /// Bearer token every read (`GetSystemState`, `StreamTelemetry`, `GetReceipt`, `Health`) may
    /// carry as `authorization: Bearer TOKEN`.
    pub read_token: Option<ReadToken>,
    /// TLS, and optionally client certificates; `None` serves plaintext HTTP/2.
    pub tls: Option<TlsSettings>,
    /// Off loopback, serve plaintext anyway (behind a TLS-terminating proxy).
    pub allow_plaintext: bool,
    /// The most telemetry streams open at once (each is a task, a subscription and a buffer).
    pub max_streams: usize,
    /// Packets buffered per telemetry stream between the subscription and the client.
    pub stream_buffer: usize,
    /// Largest request decoded (commands themselves are limited to 4 KiB, D11).
    pub max_request_bytes: usize,
    /// Concurrent calls per connection.
    pub max_calls_per_connection: usize,
    /// Deadline of every unary call (a stream is bounded by its client and the shutdown).
    pub call_timeout: Duration,
    /// How long a new connection may take to start speaking (the HTTP/2 preface, or the TLS
    /// handshake under TLS) before it is closed.
    pub handshake_timeout: Duration,
    /// Connections accepted but not yet past their handshake; more are closed on accept.
    pub max_pending_handshakes: usize,
    /// How long a shutdown waits for open calls before closing them.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            receipt_wait: Duration::from_secs(2),
            read_token: None,
            tls: None,
            allow_plaintext: false,
            max_streams: 64,
            stream_buffer: 256,
            max_request_bytes: 64 * 1024,
            max_calls_per_connection: 32,
            call_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_pending_handshakes: 256,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl ServerConfig {
    /// Refuses settings that are unsafe for `listen`: off loopback, reads need a token or
    /// client certificates, and the wire needs TLS unless plaintext is explicitly allowed.
    pub fn check(&self, listen: SocketAddr) -> Result<(), ServerError> {
        if let Some(tls) = &self.tls
            && tls.client_ca.is_none()
            && tls.require_client_cert
        {
            return Err(ServerError::ClientCertWithoutCa);
        }
        if listen.ip().is_loopback() {
            return Ok(());
        }
        let client_certs = self.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if self.read_token.is_none() && !client_certs {
            return Err(ServerError::ReadsUnprotected(listen));
        }
        if self.tls.is_none() && !self.allow_plaintext {
            return Err(ServerError::PlaintextOffLoopback(listen));
        }
        Ok(())
    }

    /// Whether reads need a credential (a token or a verified client certificate).
    pub(crate) fn reads_guarded(&self) -> bool {
        self.read_token.is_some() || self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }
}

/// A read token of at least [`MIN_READ_TOKEN_LEN`] characters; never printed, wiped from memory
/// when the last clone is dropped.
#[derive(Clone)]
pub struct ReadToken(Arc<Zeroizing<String>>);

impl ReadToken {
    /// Checks the length.
    pub fn new(token: &str) -> Result<Self, ServerError> {
        if token.len() < MIN_READ_TOKEN_LEN {
            return Err(ServerError::WeakReadToken { len: token.len(), min: MIN_READ_TOKEN_LEN });
        }
        Ok(Self(Arc::new(Zeroizing::new(token.to_owned()))))
    }

    /// Whether `header` is `Bearer TOKEN`, compared in constant time.
    pub(crate) fn matches(&self, header: &str) -> bool {
        let Some(given) = header.strip_prefix("Bearer ") else { return false };
        subtle::ConstantTimeEq::ct_eq(given.as_bytes(), self.0.as_bytes()).into()
    }
}

impl std::fmt::Debug for ReadToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadToken(<redacted>)")
    }
}

/// TLS material, in PEM: the server's certificate chain and key, and optionally the CA whose
/// client certificates are accepted. The private key's bytes are wiped when the settings are
/// dropped (rustls keeps its own parsed copy for as long as the server runs).
#[derive(Clone)]
pub struct TlsSettings {
    cert_pem: Vec<u8>,
    key_pem: Zeroizing<Vec<u8>>,
    client_ca: Option<Vec<u8>>,
    require_client_cert: bool,
}

impl TlsSettings {
    /// The server's certificate chain and private key, read from PEM files. The key file must not
    /// be readable by group or others (unix).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, ServerError> {
        check_private(key)?;
        Ok(Self {
            cert_pem: read(cert)?,
            key_pem: Zeroizing::new(read(key)?),
            client_ca: None,
            require_client_cert: false,
        })
    }

    /// The same, from PEM bytes already in memory.
    pub fn from_pem(cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            cert_pem: cert_pem.into(),
            key_pem: Zeroizing::new(key_pem.into()),
            client_ca: None,
            require_client_cert: false,
        }
    }

    /// Accepts client certificates issued by the CA in this PEM file. A client that presents one
    /// is authorised for reads; with [`require_client_cert`](Self::require_client_cert) a client
    /// without one cannot connect at all.
    pub fn client_ca_file(self, ca: &Path) -> Result<Self, ServerError> {
        Ok(self.client_ca_pem(read(ca)?))
    }

    /// The same, from PEM bytes.
    pub fn client_ca_pem(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.client_ca = Some(ca_pem.into());
        self
    }

    /// Refuses the TLS handshake of clients without a certificate from the client CA.
    pub fn require_client_cert(mut self, require: bool) -> Self {
        self.require_client_cert = require;
        self
    }

    /// Whether client certificates are verified.
    pub fn verifies_clients(&self) -> bool {
        self.client_ca.is_some()
    }

    pub(crate) fn server_config(&self, handshake_timeout: Duration) -> ServerTlsConfig {
        let mut tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, self.key_pem.as_slice()))
            .timeout(handshake_timeout);
        if let Some(ca) = &self.client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(!self.require_client_cert);
        }
        tls
    }
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("client_ca", &self.client_ca.is_some())
            .field("require_client_cert", &self.require_client_cert)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::TlsFile { path: path.to_path_buf(), source })
}

/// Refuses a private key file that grants any permission to group or others (unix only).
fn check_private(path: &Path) -> Result<(), ServerError> {
    let metadata =
        std::fs::metadata(path).map_err(|source| ServerError::TlsFile { path: path.to_path_buf(), source })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(ServerError::KeyFilePermissions { path: PathBuf::from(path), mode });
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    Ok(())
}
