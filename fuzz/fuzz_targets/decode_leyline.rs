//! The Leyline decoder of every message type (leyline.proto and control.proto) on arbitrary
//! bytes; the first input byte selects the type (modulo the number of types), the rest is the
//! encoded message.
//!
//! Checks, for every input:
//! - decoding never panics;
//! - the message's borrowed view (`leyline::view`) accepts only what prost accepts and reads the
//!   same message; the one-pass encoder (`leyline::fast`) writes prost's bytes;
//! - whatever decodes re-encodes to `encoded_len()` bytes that decode to an equal value
//!   (`decode(encode(m)) == m`, where `m` holds no NaN, which `==` never finds equal);
//! - the peer encoding (`leyline::encode_peer`, which applies to every message type) is
//!   canonical — the same for two decodings of it (prost's own bytes are not: a `Struct` is a
//!   `HashMap`) —, decodes to `m`, and is a fixed point
//!   (`encode_peer(decode(encode_peer(m))) == encode_peer(m)`), NaNs included.
//!
//! At start-up it checks that [`MESSAGES`] lists every message the generated code defines, so a
//! message added to `proto/` and not here fails the run.
//!
//! Run: `cargo xtask fuzz --target decode_leyline`.
#![no_main]

use std::fmt::Debug;

use leyline::fast::{Encoder, FastEncode};
use leyline::view::{View, ViewError, Viewable};
use leyline::{Message, Name};
use libfuzzer_sys::fuzz_target;

/// The generated code: the source of truth for which messages exist.
const GENERATED: &str = include_str!("../../crates/leyline/src/generated/esper.leyline.v1.rs");

/// A message type's name and its round-trip check.
type Check = (&'static str, fn(&[u8]));

macro_rules! messages {
    ($($t:ident),* $(,)?) => {
        /// Every message of package `esper.leyline.v1`, in the generated file's order.
        const MESSAGES: &[Check] = &[$((stringify!($t), round_trip::<leyline::$t>)),*];
    };
}

messages![
    // leyline.proto
    HardwareContext,
    SeedState,
    SystemStatePacket,
    CommandSeedOperation,
    CommandOptimizerAdjustment,
    CommandCircuitBreaker,
    AdaptationCommand,
    MitigationAction,
    FieldReport,
    BlueprintParameterBounds,
    BlueprintDescriptor,
    BusEnvelope,
    PolicyUpdate,
    MetricPoint,
    TelemetryEvent,
    TraceSpan,
    SystemHealth,
    TelemetryPacket,
    EventEnvelope,
    PerformanceBudgets,
    MemoryBudgets,
    SystemLimits,
    GateEvent,
    SignedCommand,
    // control.proto
    Provenance,
    CommandReceipt,
    ReceiptRequest,
    SystemStateRequest,
    TelemetryRequest,
    HealthRequest,
    // checkpoint.proto
    CheckpointManifest,
    CheckpointFile,
    KasminaCheckpoint,
    RuntimeCountersCheckpoint,
    StageList,
    RollbackCheckpoint,
    BreakerCheckpoint,
    NonceCheckpoint,
    PendingCommandCheckpoint,
    PauseQuotaCheckpoint,
    SlotCheckpoint,
    TransitionCheckpoint,
    LifecycleCheckpoint,
    SeedCheckpoint,
    DormantCheckpoint,
    ResettingCheckpoint,
    TerminatedCheckpoint,
    SeedHistoryCheckpoint,
    KernelCheckpoint,
    OptimizerCheckpoint,
    AlphaCheckpoint,
    AlphaRampIn,
    AlphaRampOut,
    ShadowStatsCheckpoint,
    ContributionCheckpoint,
    LiveCheckpoint,
    PauseCheckpoint,
    HealthCheckpoint,
    GerminatedPhase,
    TrainingPhase,
    BlendingPhase,
    ShadowingPhase,
    ProbationaryPhase,
    BlendingOutCheckpoint,
    FossilizedCheckpoint,
    EmbargoedCheckpoint,
];

fuzz_target!(
    init: {
        let generated: Vec<&str> = GENERATED
            .lines()
            .filter_map(|l| l.trim().strip_prefix("impl ::prost::Name for "))
            .filter_map(|rest| rest.split_whitespace().next())
            .collect();
        let listed: Vec<&str> = MESSAGES.iter().map(|(name, _)| *name).collect();
        assert_eq!(listed, generated, "MESSAGES must list every generated message, in order");
    },
    |data: &[u8]| {
        let Some((&selector, bytes)) = data.split_first() else { return };
        let (_, check) = MESSAGES[usize::from(selector) % MESSAGES.len()];
        check(bytes);
    }
);

fn round_trip<M: Message + Name + Default + PartialEq + Debug + FastEncode + Viewable>(bytes: &[u8]) {
    // The borrowed view accepts only what prost accepts, and reads the same message.
    let view = M::view(bytes);
    let Ok(message) = M::decode(bytes) else {
        assert!(view.is_err(), "a view accepted bytes prost refuses");
        return;
    };
    match view {
        Ok(v) => assert_eq!(leyline::encode_peer(&v.to_message()), leyline::encode_peer(&message), "view != prost"),
        // Only merging a repeated singular message and group-encoded unknown fields are refused
        // on purpose (crate::view's docs).
        Err(e) => assert!(
            matches!(e, ViewError::RepeatedSingular { .. } | ViewError::InvalidKey { .. }),
            "a view refused ({e}) what prost decodes"
        ),
    }
    // The one-pass encoder writes prost's bytes (a `Struct` iterates its `HashMap` the same way
    // in both, on the same value).
    assert_eq!(Encoder::new().encode(&message), message.encode_to_vec().as_slice(), "fast encode != prost");
    // A float field holding a NaN makes `==` false even on the same value.
    #[allow(clippy::eq_op)]
    let comparable = message == message;

    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len(), "encoded_len of {message:?}");
    let back = M::decode(encoded.as_slice()).unwrap_or_else(|e| panic!("re-encoded {message:?} does not decode: {e}"));
    if comparable {
        assert_eq!(back, message, "decode(encode(m)) != m");
    }

    // prost's bytes are not canonical (a `Struct` is a `HashMap`); the peer's are. Checked on two
    // decodings of the peer's bytes (two `HashMap`s, two iteration orders), not on `back`:
    // prost's plain form drops the sign of a -0.0, which the peer's form keeps, as upb does.
    let peer = leyline::encode_peer(&message);
    let from_peer =
        M::decode(peer.as_slice()).unwrap_or_else(|e| panic!("peer bytes of {message:?} do not decode: {e}"));
    let again = M::decode(peer.as_slice()).unwrap_or_else(|e| panic!("peer bytes of {message:?} do not decode: {e}"));
    assert_eq!(leyline::encode_peer(&again), leyline::encode_peer(&from_peer), "the same value, other peer bytes");
    if comparable {
        assert_eq!(from_peer, message, "decode(encode_peer(m)) != m");
    }
    assert_eq!(leyline::encode_peer(&from_peer), peer, "encode_peer is not a fixed point");
}
