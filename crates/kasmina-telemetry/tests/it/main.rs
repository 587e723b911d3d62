//! Integration tests of kasmina-telemetry: transport saturation, sinks, exporters.
#![allow(clippy::unwrap_used)] // Tests may unwrap (helpers are plain functions, not `#[test]`s).

mod jsonl;
#[cfg(feature = "otlp")]
mod otlp;
mod saturation;
