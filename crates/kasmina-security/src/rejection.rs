//! Why a command was refused: [`Rejection`], whose [`reason`](Rejection::reason) is one of the D8 strings.

use std::fmt;
use std::time::Duration;

/// Why a command was not accepted.
///
/// This is the verifier's verdict, not a failure of the API: the caller reports it (the runtime emits
/// a `command_rejected` event with [`reason`](Self::reason) and [`command_id`](Self::command_id)) and
/// does not act on the command. A rejected command changes no state of the verifier.
///
/// The command id is only reported once the signature has been checked, so it is never an
/// unauthenticated value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The verifier cannot judge any command right now (no key configured, or the nonce ledger is
    /// full of live nonces); it fails closed.
    #[error("verifier unavailable: {cause}")]
    VerifierUnavailable {
        /// What is missing.
        cause: UnavailableCause,
    },
    /// The command is larger than the configured ingress limit (D11).
    #[error("command of {size} bytes exceeds the {limit}-byte limit")]
    OversizedCommand {
        /// Size received, in bytes.
        size: usize,
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// Neither the envelope nor the legacy `annotations["signature"]` carries a signature.
    #[error("command carries no signature")]
    MissingSignature,
    /// The envelope's `key_id`, or a legacy command's `annotations["key_id"]`, names a key id the
    /// key ring does not hold (never configured, or rotated out). No other key is tried.
    #[error("unknown signing key {key_id:?}")]
    UnknownKey {
        /// The key id the command named.
        key_id: String,
    },
    /// The signature does not match the bytes.
    #[error("signature does not match the command")]
    InvalidSignature {
        /// The key checked; `None` for a legacy command that names no key, which is checked
        /// against every key of the ring.
        key_id: Option<String>,
    },
    /// The bytes are not a well-formed command (or envelope).
    #[error("malformed command: {detail}")]
    MalformedCommand {
        /// What could not be decoded.
        detail: String,
    },
    /// The command has an empty `command_id` (it is the nonce, so it is required).
    #[error("command has no command_id")]
    MissingCommandId,
    /// The command has no `issued_at` timestamp.
    #[error("command {command_id:?} has no issued_at timestamp")]
    MissingTimestamp {
        /// The command's id.
        command_id: String,
    },
    /// `issued_at` is not a valid `google.protobuf.Timestamp`: `nanos` outside
    /// `0..=999_999_999`, or `seconds` outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
    /// Its [`reason`](Rejection::reason) is `malformed_command`; checked before freshness.
    #[error("command {command_id:?} has an invalid issued_at timestamp ({seconds} s, {nanos} ns)")]
    InvalidTimestamp {
        /// The command's id.
        command_id: String,
        /// `issued_at.seconds` as received.
        seconds: i64,
        /// `issued_at.nanos` as received.
        nanos: i32,
    },
    /// `issued_at` lies further in the future than the allowed clock skew.
    #[error("command {command_id:?} issued {ahead:?} in the future")]
    IssuedInFuture {
        /// The command's id.
        command_id: String,
        /// How far ahead of the verifier's wall clock it was issued.
        ahead: Duration,
    },
    /// `issued_at` is older than the freshness window.
    #[error("command {command_id:?} is stale ({age:?} old)")]
    StaleCommand {
        /// The command's id.
        command_id: String,
        /// Its age on the verifier's wall clock.
        age: Duration,
    },
    /// A command with this `command_id` was already accepted within the nonce TTL.
    #[error("command {command_id:?} was already accepted (nonce replayed)")]
    NonceReplayed {
        /// The command's id.
        command_id: String,
    },
}

impl Rejection {
    /// Every string [`reason`](Self::reason) can return (D8), in check order.
    pub const REASONS: [&'static str; 11] = [
        "verifier_unavailable",
        "oversized_command",
        "missing_signature",
        "unknown_key",
        "invalid_signature",
        "malformed_command",
        "missing_command_id",
        "missing_timestamp",
        "issued_in_future",
        "stale_command",
        "nonce_replayed",
    ];

    /// The stable reason string of decisions D8 (the Python prototype's strings plus
    /// `malformed_command`, `unknown_key`, `oversized_command` and `verifier_unavailable`).
    /// [`InvalidTimestamp`](Self::InvalidTimestamp) is a `malformed_command`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::VerifierUnavailable { .. } => "verifier_unavailable",
            Self::OversizedCommand { .. } => "oversized_command",
            Self::MissingSignature => "missing_signature",
            Self::UnknownKey { .. } => "unknown_key",
            Self::InvalidSignature { .. } => "invalid_signature",
            Self::MalformedCommand { .. } | Self::InvalidTimestamp { .. } => "malformed_command",
            Self::MissingCommandId => "missing_command_id",
            Self::MissingTimestamp { .. } => "missing_timestamp",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::StaleCommand { .. } => "stale_command",
            Self::NonceReplayed { .. } => "nonce_replayed",
        }
    }

    /// The command's id, when the rejection happened after the signature check and decoding.
    pub fn command_id(&self) -> Option<&str> {
        match self {
            Self::MissingTimestamp { command_id }
            | Self::InvalidTimestamp { command_id, .. }
            | Self::IssuedInFuture { command_id, .. }
            | Self::StaleCommand { command_id, .. }
            | Self::NonceReplayed { command_id } => Some(command_id),
            _ => None,
        }
    }
}

/// Why the verifier cannot judge commands (see [`Rejection::VerifierUnavailable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnavailableCause {
    /// The key ring holds no key (for instance `ESPER_LEYLINE_SECRET` is not set).
    NoKeyConfigured,
    /// The nonce ledger holds `capacity` live nonces; no new command can be recorded until some
    /// expire, and accepting one unrecorded would allow its replay.
    NonceLedgerFull {
        /// The ledger's capacity.
        capacity: usize,
    },
}

impl fmt::Display for UnavailableCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKeyConfigured => f.write_str("no signing key configured"),
            Self::NonceLedgerFull { capacity } => write!(f, "nonce ledger full ({capacity} live nonces)"),
        }
    }
}
