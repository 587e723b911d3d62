//! Integration tests of `kasmina-registry`.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod registration;
mod validation;

use candle_core::{DType, Device, Var};

/// A fresh trainable variable with its own identity.
pub(crate) fn var() -> Var {
    Var::zeros((2, 2), DType::F32, &Device::Cpu).unwrap()
}

/// `n` fresh variables.
pub(crate) fn vars(n: usize) -> Vec<Var> {
    (0..n).map(|_| var()).collect()
}
