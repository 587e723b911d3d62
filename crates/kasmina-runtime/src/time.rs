//! The runtime's one wall clock, handed to every domain crate that stamps or checks wall time.
//!
//! Domain crates may not depend on each other, so each declares the small wall-clock trait it
//! needs; [`WallTime`] implements all of them over one injected source.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// An injectable wall clock (`SystemTime::now` by default).
#[derive(Clone)]
pub(crate) struct WallTime(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl WallTime {
    pub(crate) fn new(f: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub(crate) fn system() -> Self {
        Self::new(SystemTime::now)
    }

    pub(crate) fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl std::fmt::Debug for WallTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WallTime").field(&self.now()).finish()
    }
}

impl kasmina_lifecycle::WallClock for WallTime {
    fn now(&self) -> SystemTime {
        WallTime::now(self)
    }
}

impl kasmina_telemetry::WallClock for WallTime {
    fn now(&self) -> SystemTime {
        WallTime::now(self)
    }
}

impl kasmina_security::WallClock for WallTime {
    fn now_unix_nanos(&self) -> i128 {
        match WallTime::now(self).duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        }
    }
}
