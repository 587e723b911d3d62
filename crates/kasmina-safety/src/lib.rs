//! Circuit breakers, monotonic timers, deadline guards and pause quotas for Kasmina.
//!
//! (Being written: see the issue for this crate.)
