//! The one wall clock of the Kasmina workspace: a [`WallClock`] trait that every crate reading
//! wall-clock (UTC) time takes by injection, so tests, replays and benches can fix "now".
//!
//! Layer L0, beside `leyline`: it depends on `std` only and on no workspace crate, so every
//! domain crate (L1) may use it. Wall time is what stamps events and checks a command's
//! freshness; monotonic time (embargoes, breakers, TTLs, deadlines) is an injected
//! `quanta::Clock` elsewhere and never comes from here.
//!
//! - [`WallClock`]: `now()` as a [`SystemTime`], and `now_unix_nanos()` (provided; negative
//!   before 1970). Implemented for `Arc<T>` and `&T` of any wall clock, `dyn WallClock` included.
//! - [`SystemWallClock`]: the system's clock ([`SystemTime::now`]), the default everywhere.
//! - [`FixedWallClock`]: stays where it is set, moved by `set`/`advance`/`rewind` through a
//!   shared reference (share it as `Arc<FixedWallClock>` to move it while others read it).
//! - [`FnWallClock`]: any closure returning a [`SystemTime`], cheap to clone.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, UNIX_EPOCH};
//! use kasmina_clock::{FixedWallClock, WallClock};
//!
//! let clock = Arc::new(FixedWallClock::at_unix(1_790_000_000));
//! let reader: Arc<dyn WallClock> = clock.clone();
//! clock.advance(Duration::from_millis(1_500));
//! assert_eq!(reader.now(), UNIX_EPOCH + Duration::from_millis(1_790_000_001_500));
//! assert_eq!(reader.now_unix_nanos(), 1_790_000_001_500_000_000);
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A source of wall-clock (UTC) time, injected wherever a crate stamps or compares wall time.
///
/// Implementors provide [`now`](Self::now); [`now_unix_nanos`](Self::now_unix_nanos) is derived
/// from it (an implementor holding nanoseconds already may override it to skip the conversion).
pub trait WallClock: Send + Sync + fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// The current wall-clock time as nanoseconds since the Unix epoch, negative before it.
    fn now_unix_nanos(&self) -> i128 {
        unix_nanos(self.now())
    }
}

impl<T: WallClock + ?Sized> WallClock for Arc<T> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }

    fn now_unix_nanos(&self) -> i128 {
        (**self).now_unix_nanos()
    }
}

impl<T: WallClock + ?Sized> WallClock for &T {
    fn now(&self) -> SystemTime {
        (**self).now()
    }

    fn now_unix_nanos(&self) -> i128 {
        (**self).now_unix_nanos()
    }
}

/// Nanoseconds between the Unix epoch and `at`, negative before it.
fn unix_nanos(at: SystemTime) -> i128 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// `at` as nanoseconds since the Unix epoch, saturated to the range of `i64` (about the years
/// 1677 to 2262).
fn unix_nanos_i64(at: SystemTime) -> i64 {
    let nanos = unix_nanos(at);
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// The time `nanos` after the Unix epoch (before it when negative). A time the platform cannot
/// represent reads as the Unix epoch.
fn from_unix_nanos(nanos: i64) -> SystemTime {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    let at = if nanos < 0 { UNIX_EPOCH.checked_sub(magnitude) } else { UNIX_EPOCH.checked_add(magnitude) };
    at.unwrap_or(UNIX_EPOCH)
}

/// `by` in nanoseconds, saturated to `i64::MAX` (about 292 years).
fn duration_nanos(by: Duration) -> i64 {
    i64::try_from(by.as_nanos()).unwrap_or(i64::MAX)
}

/// The system's wall clock ([`SystemTime::now`]): the default wherever a clock is injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock that stays where it is set: for tests, replays and benches.
///
/// It holds nanoseconds since the Unix epoch in an atomic, so it moves through a shared
/// reference; share it as `Arc<FixedWallClock>` and keep a handle to move it while a component
/// reads it. Times are kept within the range of `i64` nanoseconds around the epoch (about the
/// years 1677 to 2262): setting or moving it beyond saturates. [`Default`] reads the epoch.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kasmina_clock::{FixedWallClock, WallClock};
///
/// let clock = FixedWallClock::at(UNIX_EPOCH + Duration::from_secs(10));
/// clock.rewind(Duration::from_secs(15));
/// assert_eq!(clock.now_unix_nanos(), -5_000_000_000);
/// clock.set_unix(7);
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(7));
/// ```
#[derive(Debug, Default)]
pub struct FixedWallClock {
    /// Nanoseconds since the Unix epoch (negative before it).
    nanos: AtomicI64,
}

impl FixedWallClock {
    /// A clock stopped at `at`.
    pub fn at(at: SystemTime) -> Self {
        Self { nanos: AtomicI64::new(unix_nanos_i64(at)) }
    }

    /// A clock stopped at `seconds` after the Unix epoch (before it when negative).
    pub fn at_unix(seconds: i64) -> Self {
        Self { nanos: AtomicI64::new(seconds.saturating_mul(NANOS_PER_SEC)) }
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: SystemTime) {
        self.nanos.store(unix_nanos_i64(at), Ordering::SeqCst);
    }

    /// Sets the clock to `seconds` after the Unix epoch (before it when negative).
    pub fn set_unix(&self, seconds: i64) {
        self.nanos.store(seconds.saturating_mul(NANOS_PER_SEC), Ordering::SeqCst);
    }

    /// Moves the clock forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = duration_nanos(by);
        // `fetch_update` cannot fail with a closure that always returns `Some`.
        let _ = self.nanos.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add(by)));
    }

    /// Moves the clock back by `by` (saturating); it may go before the Unix epoch.
    pub fn rewind(&self, by: Duration) {
        let by = duration_nanos(by);
        let _ = self.nanos.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(by)));
    }
}

impl WallClock for FixedWallClock {
    fn now(&self) -> SystemTime {
        from_unix_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn now_unix_nanos(&self) -> i128 {
        i128::from(self.nanos.load(Ordering::SeqCst))
    }
}

/// A wall clock that calls a closure: to derive "now" from another source (a simulated clock,
/// a monotonic clock plus an offset) without a new type. Clones share the closure.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use kasmina_clock::{FnWallClock, WallClock};
///
/// let clock = FnWallClock::new(|| UNIX_EPOCH + Duration::from_secs(42));
/// assert_eq!(clock.clone().now_unix_nanos(), 42_000_000_000);
/// ```
#[derive(Clone)]
pub struct FnWallClock {
    f: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl FnWallClock {
    /// A clock that reads `f()` on every call.
    pub fn new(f: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Self { f: Arc::new(f) }
    }
}

impl From<Arc<dyn Fn() -> SystemTime + Send + Sync>> for FnWallClock {
    /// Wraps a shared closure as it is.
    fn from(f: Arc<dyn Fn() -> SystemTime + Send + Sync>) -> Self {
        Self { f }
    }
}

impl fmt::Debug for FnWallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnWallClock").finish_non_exhaustive()
    }
}

impl WallClock for FnWallClock {
    fn now(&self) -> SystemTime {
        (self.f)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// 2020-01-01T00:00:00Z.
    const JAN_2020: i64 = 1_577_836_800;

    #[test]
    fn system_clock_is_after_2020_on_both_readings() {
        assert!(SystemWallClock.now() > UNIX_EPOCH + Duration::from_secs(JAN_2020 as u64));
        assert!(SystemWallClock.now_unix_nanos() > i128::from(JAN_2020) * 1_000_000_000);
    }

    #[test]
    fn provided_nanos_are_negative_before_the_epoch() {
        let before = FnWallClock::new(|| UNIX_EPOCH - Duration::new(1, 250_000_000));
        assert_eq!(before.now_unix_nanos(), -1_250_000_000);
        let after = FnWallClock::new(|| UNIX_EPOCH + Duration::new(3, 5));
        assert_eq!(after.now_unix_nanos(), 3_000_000_005);
        assert_eq!(FnWallClock::new(|| UNIX_EPOCH).now_unix_nanos(), 0);
    }

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let clock = Arc::new(FixedWallClock::at_unix(10));
        let shared: Arc<dyn WallClock> = clock.clone();
        assert_eq!(shared.now(), UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(shared.now(), shared.now());
        clock.advance(Duration::from_secs(5));
        assert_eq!(shared.now_unix_nanos(), 15_000_000_000);
        clock.rewind(Duration::from_secs(20));
        assert_eq!(shared.now_unix_nanos(), -5_000_000_000);
        assert_eq!(shared.now(), UNIX_EPOCH - Duration::from_secs(5));
        clock.set_unix(7);
        assert_eq!(shared.now_unix_nanos(), 7_000_000_000);
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        clock.set(at);
        assert_eq!(shared.now(), at);
        assert_eq!(shared.now_unix_nanos(), 1_700_000_000_000_000_123);
    }

    #[test]
    fn fixed_clock_at_reads_back_exactly() {
        for at in [UNIX_EPOCH, UNIX_EPOCH + Duration::new(5, 7), UNIX_EPOCH - Duration::new(2, 1)] {
            let clock = FixedWallClock::at(at);
            assert_eq!(clock.now(), at);
            assert_eq!(clock.now_unix_nanos(), unix_nanos(at));
        }
        assert_eq!(FixedWallClock::default().now(), UNIX_EPOCH);
    }

    #[test]
    fn fixed_clock_saturates() {
        let clock = FixedWallClock::at_unix(i64::MAX);
        assert_eq!(clock.now_unix_nanos(), i128::from(i64::MAX));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now_unix_nanos(), i128::from(i64::MAX));
        clock.set_unix(0);
        clock.rewind(Duration::MAX);
        assert_eq!(clock.now_unix_nanos(), -i128::from(i64::MAX));
        clock.rewind(Duration::from_secs(1));
        assert_eq!(clock.now_unix_nanos(), i128::from(i64::MIN));
    }

    #[test]
    fn fn_clock_calls_its_closure_each_time_and_clones_share_it() {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        let clock = FnWallClock::new(move || UNIX_EPOCH + Duration::from_secs(counter.fetch_add(1, Ordering::SeqCst)));
        let copy = clock.clone();
        assert_eq!(clock.now(), UNIX_EPOCH);
        assert_eq!(copy.now(), UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(format!("{clock:?}"), "FnWallClock { .. }");
        let shared: Arc<dyn Fn() -> SystemTime + Send + Sync> = Arc::new(|| UNIX_EPOCH);
        assert_eq!(FnWallClock::from(shared).now(), UNIX_EPOCH);
    }

    #[test]
    fn references_arcs_and_trait_objects_are_clocks() {
        fn read(clock: impl WallClock) -> i128 {
            clock.now_unix_nanos()
        }
        let fixed = FixedWallClock::at_unix(3);
        assert_eq!(read(&fixed), 3_000_000_000);
        let dynamic: &dyn WallClock = &fixed;
        assert_eq!(read(dynamic), 3_000_000_000);
        let arc: Arc<dyn WallClock> = Arc::new(FixedWallClock::at_unix(4));
        assert_eq!(read(arc.clone()), 4_000_000_000);
        assert_eq!(read(&arc), 4_000_000_000);
        assert!(read(SystemWallClock) > 0);
    }

    #[test]
    fn clocks_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SystemWallClock>();
        check::<FixedWallClock>();
        check::<FnWallClock>();
        check::<Arc<dyn WallClock>>();
    }
}
