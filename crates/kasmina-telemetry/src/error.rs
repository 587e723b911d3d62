//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while delivering telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file sink could not be opened.
    #[error("cannot open telemetry file {path}: {source}")]
    Open {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A sink failed to write or flush.
    #[error("telemetry sink `{sink}` failed: {source}")]
    Io {
        /// The sink's name (`jsonl`, ...).
        sink: &'static str,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A packet could not be serialised to JSON.
    #[error("cannot serialise telemetry packet {packet_id}: {source}")]
    Serialize {
        /// The packet that failed.
        packet_id: String,
        /// The underlying serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A sink reported a failure of its own (an exporter, a remote collector).
    #[error("telemetry sink `{sink}` failed: {reason}")]
    Sink {
        /// The sink's name (`otlp`, ...).
        sink: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid telemetry configuration: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// The background delivery thread could not be started or has stopped.
    #[error("telemetry worker unavailable: {reason}")]
    Worker {
        /// What went wrong.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
