//! Leyline: the protobuf wire contract every Esper subsystem speaks, as Rust types.
//!
//! Layer L0 of the Kasmina workspace: it depends only on the protobuf runtime (`prost`, `pbjson`,
//! and `tonic` behind features) and on no workspace crate. It is the single source of truth for
//! every stage, gate, command and telemetry type: other crates use these types directly and
//! never define a copy, alias or mapping of them.
//!
//! - Messages and enums of package `esper.leyline.v1` are generated from `proto/` by
//!   `cargo xtask proto` and committed under `src/generated/` (no protoc needed to build).
//!   Enum values and field numbers are wire-compatible with Esper's Python peers.
//! - Every message also implements `serde::Serialize`/`Deserialize` in protobuf's canonical JSON
//!   mapping (lowerCamelCase names, enum values by name, 64-bit integers as strings, RFC 3339
//!   timestamps), so JSON written here is readable by any protobuf library and vice versa.
//! - Maps are `BTreeMap`s, so encoding is deterministic (map entries sorted by key).
//! - The `KasminaControl` gRPC stubs are behind the `client` and `server` features.
//! - [`constants`] holds the values of the contract's budget messages, and the `impl` blocks in
//!   this file add name helpers built on the generated enums.
//!
//! ```
//! use leyline::{Message, SeedLifecycleStage, SeedState};
//!
//! let state = SeedState { seed_id: "seed-1".into(), stage: SeedLifecycleStage::SeedStageTraining as i32, ..Default::default() };
//! let bytes = state.encode_to_vec();
//! let back = SeedState::decode(bytes.as_slice()).unwrap();
//! assert_eq!(back.stage(), SeedLifecycleStage::SeedStageTraining);
//! assert_eq!(SeedLifecycleStage::SeedStageTraining.short_name(), "TRAINING");
//! ```

pub mod constants;
mod names;

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic, missing_debug_implementations)]
#[rustfmt::skip]
mod generated {
    include!("generated/esper.leyline.v1.rs");
    include!("generated/esper.leyline.v1.serde.rs");
}

pub use generated::*;
pub use names::UnknownName;
pub use prost::{self, DecodeError, EncodeError, Message};

/// Protobuf well-known types (`Timestamp`, `Duration`, `Struct`, `Value`) with canonical JSON.
pub mod wkt {
    pub use pbjson_types::{Duration, ListValue, NullValue, Struct, Timestamp, Value, value::Kind};
}

/// The fully qualified protobuf package of every type in this crate.
pub const PACKAGE: &str = "esper.leyline.v1";
