//! What the seed machine asks the runtime to do: the one way data leaves the machine.

use std::sync::Arc;

use candle_core::Var;
use leyline::{SeedLifecycleStage as Stage, TelemetryEvent};

use super::CullCause;
use kasmina_isolation::SlotMode;

use crate::blueprint::SeedKernel;
use crate::breakers::BreakerName;

/// What a slot forwards (decisions D4), set by the runtime from [`super::Seed::route`].
#[derive(Debug, Clone, Default)]
pub(crate) enum Route {
    /// The host activation, unchanged (no seed, DORMANT, GERMINATED, the failure path,
    /// TERMINATED).
    #[default]
    Transparent,
    /// The host activation, unchanged, and each pass counts against the seed's pause quota.
    Paused,
    /// The seed runs, combined with the host activation as `mode` says.
    Seed { kernel: Arc<SeedKernel>, mode: SlotMode },
}

/// One thing for the runtime to do.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Publish a telemetry event.
    Emit(TelemetryEvent),
    /// Step the seed's optimiser with this step's gradients.
    Train,
    /// Record a breaker outcome.
    BreakerSuccess(BreakerName),
    BreakerFailure(BreakerName, &'static str),
    /// Drop the seed's parameters from the registry.
    Deregister,
    /// Release the seed's kernel-cache lease.
    ReleaseLease,
    /// Forget which of the seed's events were emitted (its slot is being cleaned).
    ForgetTelemetry,
    /// FOSSILIZED: the seed's parameters become the host's (registry transfer, hand-over to the
    /// trainer's optimiser).
    HandOver(Vec<Var>),
    /// Record the rollback payload of a cull from `stage`.
    Rollback {
        stage: Stage,
        cause: CullCause,
    },
}

/// The effects of one machine call, in order.
#[derive(Debug, Default)]
pub(crate) struct Effects(pub(crate) Vec<Effect>);

impl Effects {
    pub(crate) fn push(&mut self, e: Effect) {
        self.0.push(e);
    }

    pub(crate) fn emit(&mut self, e: TelemetryEvent) {
        self.0.push(Effect::Emit(e));
    }

    pub(crate) fn extend_events(&mut self, events: impl IntoIterator<Item = TelemetryEvent>) {
        self.0.extend(events.into_iter().map(Effect::Emit));
    }
}
