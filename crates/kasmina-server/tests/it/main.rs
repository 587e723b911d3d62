//! Integration tests of the control plane: a real `Kasmina` (no slot is needed), a real tonic
//! server on a loopback port, real clients (plaintext, TLS, mTLS, raw TCP).
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod config;
mod harness;
mod plane;
mod tls;
