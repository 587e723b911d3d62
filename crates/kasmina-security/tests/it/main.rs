//! Integration tests of kasmina-security: the peer's vectors, properties, concurrency, keys, ledger,
//! allocations.
#![allow(clippy::unwrap_used)] // Test helpers outside `#[test]` functions unwrap too.

mod alloc;
mod bus;
mod concurrency;
mod keys;
mod ledger;
mod properties;
mod vectors;

use std::sync::Arc;

use kasmina_security::{CommandVerifier, FixedWallClock, KeyRing, VerifierConfig};
use leyline::wkt::Timestamp;
use leyline::{AdaptationCommand, CommandSeedOperation, CommandType, SeedOperation, adaptation_command::Payload};

/// Wall-clock "now" of most tests.
pub(crate) const NOW: i64 = 1_790_000_000;
pub(crate) const SECRET: &str = "kasmina-test-secret";

/// A verifier over `keys` whose wall clock is fixed at [`NOW`] and whose monotonic clock is mocked.
pub(crate) struct Fixture {
    pub(crate) verifier: CommandVerifier,
    pub(crate) keys: KeyRing,
    pub(crate) wall: Arc<FixedWallClock>,
    pub(crate) mono: Arc<quanta::Mock>,
}

impl Fixture {
    pub(crate) fn new(keys: KeyRing) -> Self {
        Self::with_config(keys, VerifierConfig::default())
    }

    pub(crate) fn with_config(keys: KeyRing, config: VerifierConfig) -> Self {
        let wall = Arc::new(FixedWallClock::at_unix(NOW));
        let (clock, mono) = quanta::Clock::mock();
        let verifier = CommandVerifier::with_config(keys.clone(), config)
            .unwrap()
            .with_wall_clock(wall.clone())
            .with_monotonic_clock(clock);
        Self { verifier, keys, wall, mono }
    }

    pub(crate) fn default_key() -> Self {
        Self::new(KeyRing::with_key("default", SECRET).unwrap())
    }
}

/// A germinate command issued at [`NOW`].
pub(crate) fn command(id: &str) -> AdaptationCommand {
    let mut operation = CommandSeedOperation { blueprint_id: "BP001".into(), ..Default::default() };
    operation.set_operation(SeedOperation::SeedOpGerminate);
    operation.parameters.insert("alpha".into(), 0.5);
    let mut command = AdaptationCommand {
        version: 1,
        command_id: id.into(),
        target_seed_id: "seed-1".into(),
        issued_at: Some(Timestamp { seconds: NOW, nanos: 0 }),
        issued_by: "tamiyo".into(),
        payload: Some(Payload::SeedOperation(operation)),
        ..Default::default()
    };
    command.set_command_type(CommandType::CommandSeed);
    command.annotations.insert("origin".into(), "tamiyo-policy".into());
    command.annotations.insert("resume".into(), "true".into());
    command
}
