//! The runtime's clocks: the injected monotonic clock (`quanta::Clock`; embargo, breakers, nonce
//! TTL, deadlines) and the one wall clock of the workspace ([`kasmina_clock::WallClock`]; command
//! freshness, timestamps), shared by every domain crate the runtime composes.

use std::sync::Arc;
use std::time::SystemTime;

use kasmina_clock::{FnWallClock, WallClock};

/// The wall clock every part of the runtime reads.
pub(crate) type Wall = Arc<dyn WallClock>;

/// The system clock.
pub(crate) fn system() -> Wall {
    Arc::new(kasmina_clock::SystemWallClock)
}

/// A wall clock over a closure (tests pin it).
pub(crate) fn from_fn(f: impl Fn() -> SystemTime + Send + Sync + 'static) -> Wall {
    Arc::new(FnWallClock::new(f))
}
