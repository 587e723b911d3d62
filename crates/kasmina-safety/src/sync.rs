//! The synchronisation primitives of the circuit breaker, switched at compile time.
//!
//! A normal build re-exports `std`'s atomics and `parking_lot`'s mutex, so it compiles to exactly
//! the code it would without this module. The loom build (`RUSTFLAGS="--cfg loom"`, see
//! `tests/loom.rs`) swaps in loom's instrumented atomics and a thin wrapper over loom's mutex whose
//! `lock` has `parking_lot`'s signature, so the breaker's code is the same in both builds.

#[cfg(not(loom))]
pub(crate) use parking_lot::Mutex;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom_mutex::Mutex;

#[cfg(loom)]
mod loom_mutex {
    /// loom's mutex behind `parking_lot`'s interface: `lock` returns the guard itself.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        /// Like `parking_lot`, a panic while the lock is held does not poison it.
        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}
