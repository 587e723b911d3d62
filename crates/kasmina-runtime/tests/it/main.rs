//! Integration tests of the runtime: real (small) training through candle, signed commands,
//! fake clocks.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod checkpoint;
mod commands;
mod concurrency;
mod failure;
mod families;
mod faults;
mod happy;
mod harness;
mod kd;
mod layouts;
mod mixed;
mod reads;
mod receipts;
mod replay_receipt;
mod runbook;
mod sequences;
mod slots;
mod terminate;
