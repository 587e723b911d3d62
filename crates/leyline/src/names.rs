//! Name helpers built on the generated enums (no second enum, no mapping table).

use crate::{
    CircuitBreakerState, CommandForm, CommandTransport, HealthStatus, ReceiptStatus, SeedLifecycleGate,
    SeedLifecycleStage, TelemetryLevel,
};

/// A name that is not the protobuf name of any value of the enum it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// The enum that was asked for.
    pub enum_name: &'static str,
    /// The name that was given.
    pub name: String,
}

impl std::fmt::Display for UnknownName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` is not a {} name", self.name, self.enum_name)
    }
}

impl std::error::Error for UnknownName {}

macro_rules! enum_helpers {
    ($ty:ident, $prefix:literal, [$($v:ident),+ $(,)?]) => {
        impl $ty {
            /// Every value of the enum, in wire-number order.
            pub const ALL: &'static [$ty] = &[$($ty::$v),+];

            /// The protobuf name without its enum prefix (e.g. `DORMANT` for `SEED_STAGE_DORMANT`).
            pub fn short_name(self) -> &'static str {
                let full = self.as_str_name();
                full.strip_prefix($prefix).unwrap_or(full)
            }

            /// Parses a full protobuf name (`SEED_STAGE_DORMANT`) or a short one (`DORMANT`),
            /// case-insensitively.
            pub fn parse_name(name: &str) -> Result<Self, UnknownName> {
                let upper = name.trim().to_ascii_uppercase();
                Self::from_str_name(&upper)
                    .or_else(|| Self::from_str_name(&format!("{}{upper}", $prefix)))
                    .ok_or_else(|| UnknownName { enum_name: stringify!($ty), name: name.to_owned() })
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str_name())
            }
        }
    };
}

enum_helpers!(
    SeedLifecycleStage,
    "SEED_STAGE_",
    [
        SeedStageUnknown,
        SeedStageDormant,
        SeedStageGerminated,
        SeedStageTraining,
        SeedStageBlending,
        SeedStageShadowing,
        SeedStageProbationary,
        SeedStageFossilized,
        SeedStageCulled,
        SeedStageEmbargoed,
        SeedStageResetting,
        SeedStageTerminated
    ]
);
enum_helpers!(
    SeedLifecycleGate,
    "SEED_GATE_",
    [
        SeedGateUnknown,
        SeedGateG0Sanity,
        SeedGateG1GradientHealth,
        SeedGateG2Stability,
        SeedGateG3Interface,
        SeedGateG4SystemImpact,
        SeedGateG5Reset
    ]
);
enum_helpers!(HealthStatus, "HEALTH_STATUS_", [Unknown, Healthy, Degraded, Unhealthy, Critical]);
enum_helpers!(
    CircuitBreakerState,
    "CIRCUIT_STATE_",
    [CircuitStateUnknown, CircuitStateClosed, CircuitStateOpen, CircuitStateHalfOpen]
);
enum_helpers!(TelemetryLevel, "TELEMETRY_LEVEL_", [Unspecified, Info, Warning, Error, Critical]);
enum_helpers!(CommandForm, "COMMAND_FORM_", [Unspecified, Envelope, Legacy, Trusted, Bus]);
enum_helpers!(CommandTransport, "COMMAND_TRANSPORT_", [Unspecified, InProcess, Grpc, Oona]);
enum_helpers!(ReceiptStatus, "RECEIPT_STATUS_", [Unspecified, Queued, Applied, Refused]);

impl SeedLifecycleStage {
    /// The stages in which a seed is live and isolated from the host (decisions D6): TRAINING,
    /// BLENDING, SHADOWING and PROBATIONARY. Gradient-isolation monitoring runs only here.
    pub fn is_monitored(self) -> bool {
        matches!(
            self,
            Self::SeedStageTraining | Self::SeedStageBlending | Self::SeedStageShadowing | Self::SeedStageProbationary
        )
    }

    /// TERMINATED: absorbing, nothing leaves it.
    pub fn is_terminal(self) -> bool {
        self == Self::SeedStageTerminated
    }

    /// The failure path CULLED → EMBARGOED → RESETTING.
    pub fn is_failure_path(self) -> bool {
        matches!(self, Self::SeedStageCulled | Self::SeedStageEmbargoed | Self::SeedStageResetting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_strip_the_prefix() {
        assert_eq!(SeedLifecycleStage::SeedStageProbationary.short_name(), "PROBATIONARY");
        assert_eq!(SeedLifecycleGate::SeedGateG3Interface.short_name(), "G3_INTERFACE");
        assert_eq!(CircuitBreakerState::CircuitStateHalfOpen.short_name(), "HALF_OPEN");
        assert_eq!(CommandForm::Envelope.short_name(), "ENVELOPE");
        assert_eq!(CommandTransport::InProcess.short_name(), "IN_PROCESS");
        assert_eq!(ReceiptStatus::Queued.short_name(), "QUEUED");
    }

    #[test]
    fn all_lists_every_wire_value_in_order() {
        for (i, s) in SeedLifecycleStage::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
        }
        assert_eq!(SeedLifecycleStage::ALL.len(), 12);
        assert_eq!(SeedLifecycleGate::ALL.len(), 7);
        assert!(SeedLifecycleStage::try_from(12).is_err());
        for (i, f) in CommandForm::ALL.iter().enumerate() {
            assert_eq!(*f as i32, i as i32);
        }
        for (i, t) in CommandTransport::ALL.iter().enumerate() {
            assert_eq!(*t as i32, i as i32);
        }
        for (i, s) in ReceiptStatus::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
        }
        assert_eq!(CommandForm::ALL.len(), 5);
        assert!(CommandForm::try_from(5).is_err());
    }

    #[test]
    fn parse_name_accepts_full_and_short_names() {
        assert_eq!(SeedLifecycleStage::parse_name("SEED_STAGE_CULLED"), Ok(SeedLifecycleStage::SeedStageCulled));
        assert_eq!(SeedLifecycleStage::parse_name("culled"), Ok(SeedLifecycleStage::SeedStageCulled));
        assert_eq!(CircuitBreakerState::parse_name("half_open"), Ok(CircuitBreakerState::CircuitStateHalfOpen));
        let err = SeedLifecycleStage::parse_name("CANCELLED").unwrap_err();
        assert!(err.to_string().contains("CANCELLED"));
    }
}
