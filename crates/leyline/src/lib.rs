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
//! - Leyline's own maps are `BTreeMap`s (entries sorted by key), but `google.protobuf.Struct`
//!   (pbjson-types) holds a `HashMap`, so `encode` is deterministic only for messages without a
//!   `Struct`. [`encode_peer`] is deterministic for every message and writes byte-for-byte what
//!   Esper's Python peer (upb, `deterministic=True`) writes: each map in upb's key order, where a
//!   key comes after every longer key it is a prefix of.
//! - The `KasminaControl` gRPC stubs are behind the `client` and `server` features; their
//!   `codec` module answers a malformed request body with `INVALID_ARGUMENT`.
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

#[cfg(any(feature = "client", feature = "server"))]
pub mod codec;
pub mod constants;
pub mod fast;
mod names;
mod peer;
#[cfg(test)]
mod strategies;
pub mod view;

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic, missing_debug_implementations)]
#[rustfmt::skip]
mod generated {
    include!("generated/esper.leyline.v1.rs");
    include!("generated/esper.leyline.v1.serde.rs");

    /// The schema table behind [`crate::encode_peer`].
    pub(crate) mod schema {
        /// How a map key or value travels on the wire (what its default looks like).
        #[derive(Debug, Clone, Copy)]
        #[allow(dead_code)] // every kind is handled; the current contract uses only some
        pub(crate) enum WireKind { Varint, Fixed32, Fixed64, Len }
        /// A field that holds a map or a nested message.
        #[derive(Debug)]
        pub(crate) enum FieldKind {
            Map { key: WireKind, value: WireKind, value_message: Option<&'static str> },
            Message(&'static str),
        }
        #[derive(Debug)]
        pub(crate) struct FieldSchema { pub(crate) number: u32, pub(crate) kind: FieldKind }
        #[derive(Debug)]
        pub(crate) struct MessageSchema { pub(crate) name: &'static str, pub(crate) fields: &'static [FieldSchema] }
        include!("generated/esper.leyline.v1.schema.rs");
    }
}

/// Views and one-pass encoders generated beside the owned types (see [`view`] and [`fast`]).
#[allow(missing_docs, unreachable_pub, unused_mut, unused_variables, unused_parens, clippy::all, clippy::pedantic, missing_debug_implementations)]
#[rustfmt::skip]
mod fast_generated {
    use crate::fast::{self, FastEncode, RevWriter};
    use crate::generated::*;
    use crate::view::{kinds, read, singular, DurationView, MapView, Reader, Repeated, StructView, TimestampView, View, ViewError, Viewable};
    include!("generated/esper.leyline.v1.fast.rs");
}

pub use fast::encode_peer;
pub use generated::*;
pub use names::UnknownName;
pub use prost::{self, DecodeError, EncodeError, Message, Name};

/// Protobuf well-known types (`Timestamp`, `Duration`, `Struct`, `Value`) with canonical JSON.
pub mod wkt {
    pub use pbjson_types::{Duration, ListValue, NullValue, Struct, Timestamp, Value, value};
}

/// The fully qualified protobuf package of every type in this crate.
pub const PACKAGE: &str = "esper.leyline.v1";
