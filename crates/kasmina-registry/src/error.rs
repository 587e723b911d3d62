//! The registry's error type.

use candle_core::TensorId;

use crate::Owner;

/// Everything that can go wrong when registering or releasing parameters.
///
/// Every registration error leaves the registry exactly as it was (registration is atomic). The messages
/// contain the word "parameter" so a rollback reason built from them names the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry configuration is unusable.
    #[error("invalid registry config: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A seed id was empty.
    #[error("invalid seed id: a parameter owner needs a non-empty seed id")]
    EmptySeedId,
    /// A learning-rate group name was empty.
    #[error("invalid lr group for seed {seed_id}: a parameter group needs a non-empty name")]
    EmptyLrGroup {
        /// The seed being registered.
        seed_id: String,
    },
    /// A seed tried to register no parameters at all.
    #[error("seed {seed_id} tried to register an empty parameter list")]
    EmptyParameterList {
        /// The seed being registered.
        seed_id: String,
    },
    /// A tensor handed in for registration is not a trainable variable.
    #[error("parameter {param:?} is not a trainable variable")]
    NotTrainable {
        /// The tensor's identity.
        param: TensorId,
    },
    /// A parameter is already owned by someone else (another seed, the teacher or the host).
    #[error("parameter {param:?} already registered to {owner}, refused for {claimant} ({conflicts} conflicting)")]
    OwnershipConflict {
        /// Who asked for the parameter.
        claimant: Owner,
        /// The first conflicting parameter (in the order given).
        param: TensorId,
        /// Its current owner.
        owner: Owner,
        /// How many of the requested parameters conflict in total.
        conflicts: usize,
    },
    /// A seed re-registered one of its parameters under a different learning-rate group.
    #[error("parameter {param:?} of seed {seed_id} is in lr group {existing}, not {requested}")]
    LrGroupConflict {
        /// The seed being registered.
        seed_id: String,
        /// The parameter.
        param: TensorId,
        /// The group it is in.
        existing: String,
        /// The group asked for.
        requested: String,
    },
    /// An operation named a seed that holds no parameters.
    #[error("seed {seed_id} has no registered parameters")]
    UnknownSeed {
        /// The seed.
        seed_id: String,
    },
}

/// The registry's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
