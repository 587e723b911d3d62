//! Leyline telemetry packets, health and priority rules, bounded transport with emergency bypass, sinks.
//!
//! (Being written: see the issue for this crate.)
