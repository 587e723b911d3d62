//! Per-seed ownership of trainable candle variables with an immutable teacher fence.
//!
//! (Being written: see the issue for this crate.)
