//! Per-seed ownership of trainable candle variables, with an immutable teacher fence and host parameters that no
//! seed may claim.
//!
//! Layer L1 (domain): depends only on `leyline` and external crates (candle-core for parameter identity,
//! parking_lot, thiserror); never on another `kasmina-*` crate.
//!
//! Main types: [`ParameterRegistry`] (the ownership index), [`Owner`], [`RegistryConfig`], the events it returns as
//! values — [`RegistrationEvent`] (`parameter.registration`) and [`Violation`] (`parameter.violation`, with a
//! [`ViolationReason`] code), wrapped by [`RegistryEvent`] — and [`Error`].
//!
//! A parameter's identity is candle's [`TensorId`](candle_core::TensorId) (see [`ParamRef`]): a seed registers its
//! kernel's [`Var`](candle_core::Var)s before any update, and the runtime calls
//! [`validate_update`](ParameterRegistry::validate_update) before every optimizer step. Registration is atomic and
//! idempotent; a seed can never claim a teacher or host parameter, and teacher parameters can never be released.
//!
//! ```
//! use candle_core::{DType, Device, Var};
//! use kasmina_registry::{Owner, ParameterRegistry, RegistryConfig, ViolationReason, DEFAULT_LR_GROUP};
//!
//! let dev = Device::Cpu;
//! let host = Var::zeros((4, 4), DType::F32, &dev)?;
//! let teacher = Var::zeros(4, DType::F32, &dev)?;
//! let seed_w = Var::zeros((4, 4), DType::F32, &dev)?;
//!
//! let registry = ParameterRegistry::new(RegistryConfig { violation_threshold: 3, ..Default::default() })?;
//! registry.register_host(&[&host])?;
//! registry.register_teacher(&[&teacher])?;
//! let event = registry.register_seed("seed-1", &[&seed_w], DEFAULT_LR_GROUP)?;
//! assert_eq!(event.newly_registered, 1);
//!
//! // A seed kernel sharing a host parameter is refused at registration, and nothing is registered.
//! assert!(registry.register_seed("seed-2", &[&host], DEFAULT_LR_GROUP).is_err());
//! assert_eq!(registry.owner_of(&host), Some(Owner::Host));
//!
//! registry.validate_update("seed-1", &[&seed_w])?;
//! let violation = registry.validate_update("seed-1", &[teacher]).unwrap_err();
//! assert_eq!(violation.reason, ViolationReason::TeacherParam);
//! assert_eq!(violation.reason.code(), "teacher_param");
//! assert!(!violation.threshold_reached);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod registry;
mod types;

pub use error::{Error, Result};
pub use registry::ParameterRegistry;
pub use types::{
    DEFAULT_LR_GROUP, Deregistration, Owner, ParamRef, RegistrationEvent, RegistryConfig, RegistryCounters,
    RegistryEvent, Violation, ViolationReason,
};
