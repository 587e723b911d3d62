//! Kasmina's seed manager: seed slots, blueprint library, command handling and training-driven lifecycle.
//!
//! (Being written: see the issue for this crate.)
