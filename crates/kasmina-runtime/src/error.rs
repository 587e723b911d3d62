//! Errors of the runtime: one `#[from]` variant per lower crate, plus the runtime's own.

use std::path::PathBuf;

/// Everything that can go wrong in the runtime. Bad input (an unknown slot, a malformed
/// artefact, an illegal move) is an `Err`, never a panic, and leaves every seed as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The lifecycle refused a move.
    #[error(transparent)]
    Lifecycle(#[from] kasmina_lifecycle::Error),
    /// An isolation primitive failed.
    #[error(transparent)]
    Isolation(#[from] kasmina_isolation::Error),
    /// The parameter registry refused an operation.
    #[error(transparent)]
    Registry(#[from] kasmina_registry::Error),
    /// A memory-governance operation failed.
    #[error(transparent)]
    Memory(#[from] kasmina_memory::Error),
    /// A safety primitive failed.
    #[error(transparent)]
    Safety(#[from] kasmina_safety::Error),
    /// The security layer failed (key loading, configuration).
    #[error(transparent)]
    Security(#[from] kasmina_security::Error),
    /// The telemetry layer failed.
    #[error(transparent)]
    Telemetry(#[from] kasmina_telemetry::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A blueprint descriptor file is not valid.
    #[error("invalid blueprint descriptor {path}: {reason}")]
    InvalidDescriptor {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A kernel artefact is not valid.
    #[error("invalid kernel artefact for `{blueprint_id}`: {reason}")]
    InvalidArtifact {
        /// The blueprint.
        blueprint_id: String,
        /// What is wrong.
        reason: String,
    },
    /// No blueprint with this id.
    #[error("unknown blueprint `{0}`")]
    UnknownBlueprint(String),
    /// No slot with this name.
    #[error("unknown slot `{0}`")]
    UnknownSlot(String),
    /// A slot with this name exists already.
    #[error("slot `{0}` exists already")]
    DuplicateSlot(String),
    /// No live seed with this id.
    #[error("unknown seed `{0}`")]
    UnknownSeed(String),
    /// A configuration value is out of range.
    #[error("invalid configuration `{field}`: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A step or epoch report is not valid (NaN loss, negative epoch, ...).
    #[error("invalid report: {0}")]
    InvalidReport(String),
    /// The trainer's evaluation closure failed (counterfactual evaluation); no seed changed.
    #[error("evaluation failed: {0}")]
    Evaluation(String),
    /// The runtime's background machinery is gone (it was shut down).
    #[error("runtime is shut down")]
    ShutDown,
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
