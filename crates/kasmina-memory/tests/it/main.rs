//! Integration tests of `kasmina-memory`.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod cache;
mod governor;
mod soak;
