//! The crate's error type: configuration and key-management failures.
//!
//! A command that fails verification is not an error of this API but a verdict: see
//! [`Rejection`](crate::Rejection).

use std::path::PathBuf;

/// What went wrong while configuring keys or a verifier, or while signing.
///
/// No variant ever carries a secret: key-list syntax errors name the source and the line, not the
/// text of the line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A secret was empty (an empty HMAC key authenticates nothing).
    #[error("empty secret{}", key_id.as_deref().map(|id| format!(" for key {id:?}")).unwrap_or_default())]
    EmptySecret {
        /// The key id the secret was meant for, when known.
        key_id: Option<String>,
    },
    /// A secret is shorter than [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN) bytes: too weak to
    /// authenticate commands (a short secret can be guessed offline from one signed command).
    #[error(
        "secret{} is {len} bytes; at least {min_len} are required",
        key_id.as_deref().map(|id| format!(" for key {id:?}")).unwrap_or_default()
    )]
    WeakKey {
        /// The key id the secret was meant for, when known.
        key_id: Option<String>,
        /// The minimum length, in bytes.
        min_len: usize,
        /// The secret's length, in bytes.
        len: usize,
    },
    /// A key id is not usable (empty, too long, or with a separator character).
    #[error("invalid key id {key_id:?}: {reason}")]
    InvalidKeyId {
        /// The rejected key id.
        key_id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The same key id was given twice while loading one key ring.
    #[error("key {key_id:?} is defined more than once")]
    DuplicateKey {
        /// The repeated key id.
        key_id: String,
    },
    /// Signing was asked for with a key id the key ring does not hold.
    #[error("unknown key {key_id:?}")]
    UnknownKey {
        /// The key id asked for.
        key_id: String,
    },
    /// A key list (`ESPER_LEYLINE_KEYS` or a key file) could not be parsed.
    #[error("{source_name}: entry {entry}: {reason}")]
    KeyListSyntax {
        /// Where the list came from: the environment variable or the file path.
        source_name: String,
        /// The 1-based entry (line of a key file, comma-separated item of the variable).
        entry: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key file could not be read.
    #[error("cannot read key file {}", path.display())]
    KeyFileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key file grants some permission to group or others (unix): refused before it is read.
    #[error("key file {} is readable or writable by group or others (mode {mode:04o}); chmod 600 it", path.display())]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// A verifier configuration value is out of range.
    #[error("invalid verifier configuration: {field}: {reason}")]
    InvalidConfig {
        /// The offending field of [`VerifierConfig`](crate::VerifierConfig).
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}

/// Result with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
