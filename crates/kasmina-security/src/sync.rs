//! The synchronisation primitives of the nonce ledger, switched at compile time.
//!
//! A normal build re-exports `std`'s atomics and `parking_lot`'s mutex, so the ledger uses those
//! types directly, with no wrapper and no run-time switch. The loom build (`RUSTFLAGS="--cfg loom"`,
//! see `tests/loom.rs`) swaps in loom's instrumented atomics and a thin wrapper over loom's mutex
//! whose `lock` has `parking_lot`'s signature, so the ledger's own code is the same in both builds.
//! The ledger keeps all its state behind one mutex (decision D25); the atomic is only its
//! lock-free copy of the entry count.

#[cfg(not(loom))]
pub(crate) use parking_lot::Mutex;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
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
