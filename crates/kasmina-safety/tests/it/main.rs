//! Integration tests of kasmina-safety (one binary: breaker, timer, pause quota).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod breaker;
mod pause;
mod saved;
mod timer;
