//! Integration tests of kasmina-lifecycle (one binary: table, gates, lifecycle, properties).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod fixtures;
mod gates;
mod lifecycle;
mod props;
mod table;
