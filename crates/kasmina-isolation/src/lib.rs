//! Gradient isolation for seeds on candle: per-stage slot forward, alpha blending, isolation monitor.
//!
//! (Being written: see the issue for this crate.)
