//! Errors of building and running the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the control plane could not be configured or could not keep serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The read token is shorter than [`MIN_READ_TOKEN_LEN`](crate::MIN_READ_TOKEN_LEN).
    #[error("the read token must be at least {min} characters (got {len})")]
    WeakReadToken {
        /// Its length.
        len: usize,
        /// The least accepted.
        min: usize,
    },
    /// Listening off loopback without a way to authorise reads.
    #[error(
        "listening on {0}, which is not a loopback address, needs a read token or TLS client certificates: \
         otherwise anyone who can reach it could read every seed's state and the telemetry"
    )]
    ReadsUnprotected(SocketAddr),
    /// Listening off loopback in plaintext without saying so.
    #[error(
        "listening on {0}, which is not a loopback address, needs TLS (a certificate and key): signed commands \
         and the read token would travel in the clear (allow it explicitly to run behind a TLS proxy)"
    )]
    PlaintextOffLoopback(SocketAddr),
    /// Client-certificate settings without a server certificate.
    #[error("client-certificate authentication needs TLS: give the server's certificate and key too")]
    ClientAuthWithoutTls,
    /// Client certificates required, but no CA to verify them with.
    #[error("requiring client certificates needs the CA that issues them")]
    ClientCertWithoutCa,
    /// A TLS file could not be read.
    #[error("reading {path}: {source}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A private key readable by group or others.
    #[error("{path} is readable by group or others (mode {mode:o}); run `chmod 600` on it")]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The certificate, key or CA could not be used by rustls.
    #[error("invalid TLS configuration: {0}")]
    Tls(#[source] tonic::transport::Error),
    /// Binding or reading the listening socket failed.
    #[error("listening socket: {0}")]
    Listen(#[source] std::io::Error),
    /// The gRPC server stopped with an error.
    #[error("the gRPC server failed: {0}")]
    Transport(#[source] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("the gRPC server task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}
