//! The memory crate's error type.

/// Everything that can go wrong in the memory governor and its caches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is unusable.
    #[error("invalid memory config: {field} {reason}")]
    InvalidConfig {
        /// The offending field (dotted path for nested configs).
        field: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A value is larger than the whole byte bound of the cache it was offered to; it was not cached.
    #[error("entry of {bytes} bytes exceeds the cache bound of {max_bytes} bytes")]
    EntryTooLarge {
        /// The value's weight.
        bytes: u64,
        /// The cache's byte bound.
        max_bytes: u64,
    },
}

/// The memory crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
