//! Value types of the registry: owners, parameter handles, configuration, events and violations.

use std::fmt;

use candle_core::{Tensor, TensorId, Var};

/// The learning-rate group a seed's parameters land in when the caller has no better name (design 02.3).
pub const DEFAULT_LR_GROUP: &str = "seed_default";

/// Anything that names a candle parameter: a [`Var`], a [`Tensor`] or a bare [`TensorId`].
///
/// The identity is candle's [`TensorId`]: it is unique for the life of the process (candle never reuses one),
/// and a [`Var`] and the tensor it derefs to share it.
pub trait ParamRef {
    /// The parameter's stable identity.
    fn param_id(&self) -> TensorId;

    /// Whether the handle is a trainable variable. Only trainable parameters can be registered.
    fn is_trainable(&self) -> bool {
        true
    }
}

impl ParamRef for Var {
    fn param_id(&self) -> TensorId {
        self.as_tensor().id()
    }
}

impl ParamRef for Tensor {
    fn param_id(&self) -> TensorId {
        self.id()
    }

    fn is_trainable(&self) -> bool {
        self.is_variable()
    }
}

impl ParamRef for TensorId {
    fn param_id(&self) -> TensorId {
        *self
    }
}

impl<P: ParamRef + ?Sized> ParamRef for &P {
    fn param_id(&self) -> TensorId {
        (**self).param_id()
    }

    fn is_trainable(&self) -> bool {
        (**self).is_trainable()
    }
}

/// Who owns a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A seed, by its id.
    Seed(String),
    /// The (fenced) distillation teacher: its parameters can be neither claimed nor released.
    Teacher,
    /// The host network: a seed may not claim a host parameter.
    Host,
}

impl Owner {
    /// The seed id when the owner is a seed.
    pub fn seed_id(&self) -> Option<&str> {
        match self {
            Owner::Seed(id) => Some(id),
            Owner::Teacher | Owner::Host => None,
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Seed(id) => write!(f, "seed {id}"),
            Owner::Teacher => f.write_str("teacher"),
            Owner::Host => f.write_str("host"),
        }
    }
}

/// Registry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Number of update violations after which a seed is reported as having reached the threshold (the runtime
    /// culls it). Must be at least 1; default 3.
    pub violation_threshold: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { violation_threshold: 3 }
    }
}

/// Why [`validate_update`](crate::ParameterRegistry::validate_update) refused an update (INVARIANT_L2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViolationReason {
    /// The update touches a teacher parameter.
    TeacherParam,
    /// The seed holds no registered parameters.
    SeedUnregistered,
    /// The update touches a parameter nobody registered.
    UnregisteredParam,
    /// The update touches a parameter owned by another seed or by the host.
    ForeignOwner,
}

impl ViolationReason {
    /// Every reason, in the order `validate_update` checks them.
    pub const ALL: [ViolationReason; 4] = [
        ViolationReason::TeacherParam,
        ViolationReason::SeedUnregistered,
        ViolationReason::UnregisteredParam,
        ViolationReason::ForeignOwner,
    ];

    /// The reason code carried by `parameter.violation` events.
    pub const fn code(self) -> &'static str {
        match self {
            ViolationReason::TeacherParam => "teacher_param",
            ViolationReason::SeedUnregistered => "seed_unregistered",
            ViolationReason::UnregisteredParam => "unregistered_param",
            ViolationReason::ForeignOwner => "foreign_owner",
        }
    }
}

impl fmt::Display for ViolationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused parameter update: the `parameter.violation` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The seed whose update was refused.
    pub seed_id: String,
    /// Why.
    pub reason: ViolationReason,
    /// The first offending parameter, when the reason concerns a parameter (not for `seed_unregistered`).
    pub param: Option<TensorId>,
    /// How many parameters of the update have this reason (0 for `seed_unregistered`).
    pub offending: usize,
    /// The seed's violation count including this one.
    pub count: u32,
    /// The configured repeat threshold.
    pub threshold: u32,
    /// `count >= threshold`: the seed has reached the threshold and should be culled. Stays true for later
    /// violations until the count is reset (deregistration or [`reset_violations`]).
    ///
    /// [`reset_violations`]: crate::ParameterRegistry::reset_violations
    pub threshold_reached: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter update of seed {} refused: {}", self.seed_id, self.reason)?;
        if let Some(param) = self.param {
            write!(f, " (parameter {param:?}, {} offending)", self.offending)?;
        }
        write!(f, ", violation {}/{}", self.count, self.threshold)
    }
}

impl std::error::Error for Violation {}

/// A successful seed registration: the `parameter.registration` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationEvent {
    /// The seed.
    pub seed_id: String,
    /// The learning-rate group the parameters were registered in.
    pub lr_group: String,
    /// Parameters the seed did not hold before this call.
    pub newly_registered: usize,
    /// Parameters of this call the seed already held (idempotent re-registration).
    pub already_registered: usize,
    /// The seed's parameter count after the call.
    pub total_params: usize,
}

/// What [`deregister_seed`](crate::ParameterRegistry::deregister_seed) released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deregistration {
    /// The seed.
    pub seed_id: String,
    /// Parameters released.
    pub released: usize,
    /// The violation count that was cleared with the record.
    pub violations_cleared: u32,
}

/// A registry event, returned as a value; the runtime turns it into telemetry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// A seed registered parameters (`parameter.registration`).
    Registration(RegistrationEvent),
    /// A seed's update was refused (`parameter.violation`).
    Violation(Violation),
}

impl RegistryEvent {
    /// The telemetry event name: `parameter.registration` or `parameter.violation`.
    pub const fn name(&self) -> &'static str {
        match self {
            RegistryEvent::Registration(_) => "parameter.registration",
            RegistryEvent::Violation(_) => "parameter.violation",
        }
    }

    /// The seed the event is about.
    pub fn seed_id(&self) -> &str {
        match self {
            RegistryEvent::Registration(e) => &e.seed_id,
            RegistryEvent::Violation(v) => &v.seed_id,
        }
    }
}

impl From<RegistrationEvent> for RegistryEvent {
    fn from(e: RegistrationEvent) -> Self {
        RegistryEvent::Registration(e)
    }
}

impl From<Violation> for RegistryEvent {
    fn from(v: Violation) -> Self {
        RegistryEvent::Violation(v)
    }
}

/// Running counters of the registry (design 02.3), for telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryCounters {
    /// Successful `register_seed` calls.
    pub registrations: u64,
    /// Parameters a seed registered again while already holding them (idempotent, not an error).
    pub double_registration_attempts: u64,
    /// Registrations refused because they claimed a teacher parameter.
    pub teacher_claim_attempts: u64,
    /// Registrations refused because they claimed a host parameter.
    pub host_claim_attempts: u64,
    /// Registrations refused because they claimed another seed's parameter.
    pub foreign_claim_attempts: u64,
    /// Updates refused by `validate_update`, all reasons together.
    pub ownership_violations: u64,
}
