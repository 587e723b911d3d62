//! The one error type of this crate.

use leyline::CircuitBreakerState;

use crate::breaker::Denied;
use crate::timer::DeadlineViolation;

/// Everything a safety primitive can refuse or report as a failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `force_state` was asked for a state a breaker cannot be in (UNKNOWN).
    #[error("a breaker cannot be forced to {}", state.short_name())]
    UnsupportedState {
        /// The requested state.
        state: CircuitBreakerState,
    },
    /// A breaker refused the call.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// An operation overran its deadline.
    #[error(transparent)]
    DeadlineExceeded(#[from] DeadlineViolation),
    /// A pause has used every identity pass it was granted.
    #[error("pause quota of {granted} identity passes exhausted")]
    PauseQuotaExhausted {
        /// Passes granted to the pause.
        granted: u32,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
