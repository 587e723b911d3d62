//! Wall-clock time for the freshness check, injectable so tests can fix "now".

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock (UTC) time, compared against a command's `issued_at`.
///
/// Only the freshness check uses it; the nonce ledger runs on the monotonic [`quanta::Clock`].
pub trait WallClock: Send + Sync + fmt::Debug {
    /// Now, as nanoseconds since the Unix epoch (negative before it).
    fn now_unix_nanos(&self) -> i128;
}

impl<T: WallClock + ?Sized> WallClock for Arc<T> {
    fn now_unix_nanos(&self) -> i128 {
        (**self).now_unix_nanos()
    }
}

/// The system's wall clock ([`SystemTime::now`]); the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn now_unix_nanos(&self) -> i128 {
        let now = SystemTime::now();
        match now.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        }
    }
}

/// A wall clock that stays where it is set: for tests, replays and benches.
///
/// Share it as `Arc<FixedWallClock>` to move it while a verifier uses it.
///
/// ```
/// use kasmina_security::{FixedWallClock, WallClock};
/// use std::time::Duration;
///
/// let clock = FixedWallClock::at_unix(1_790_000_000);
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now_unix_nanos(), 1_790_000_001_500_000_000);
/// ```
#[derive(Debug, Default)]
pub struct FixedWallClock {
    nanos: AtomicI64,
}

impl FixedWallClock {
    /// A clock stopped at `seconds` after the Unix epoch.
    pub fn at_unix(seconds: i64) -> Self {
        Self { nanos: AtomicI64::new(seconds.saturating_mul(1_000_000_000)) }
    }

    /// Sets the clock to `seconds` after the Unix epoch.
    pub fn set_unix(&self, seconds: i64) {
        self.nanos.store(seconds.saturating_mul(1_000_000_000), Ordering::SeqCst);
    }

    /// Moves the clock forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        let _ = self.nanos.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add(by)));
    }

    /// Moves the clock back by `by` (saturating).
    pub fn rewind(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        let _ = self.nanos.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(by)));
    }
}

impl WallClock for FixedWallClock {
    fn now_unix_nanos(&self) -> i128 {
        i128::from(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemWallClock.now_unix_nanos() > 1_577_836_800 * 1_000_000_000);
    }

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let clock = Arc::new(FixedWallClock::at_unix(10));
        let shared: Arc<dyn WallClock> = clock.clone();
        clock.advance(Duration::from_secs(5));
        assert_eq!(shared.now_unix_nanos(), 15_000_000_000);
        clock.rewind(Duration::from_secs(20));
        assert_eq!(shared.now_unix_nanos(), -5_000_000_000);
        clock.set_unix(7);
        assert_eq!(shared.now_unix_nanos(), 7_000_000_000);
    }
}
