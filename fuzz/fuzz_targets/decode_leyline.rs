//! The Leyline decoder of every message type (leyline.proto and control.proto) on arbitrary
//! bytes; the first input byte selects the type (modulo the number of types), the rest is the
//! encoded message.
//!
//! Checks, for every input:
//! - decoding never panics;
//! - whatever decodes re-encodes to `encoded_len()` bytes that decode to an equal value
//!   (`decode(encode(m)) == m`, where `m` holds no NaN, which `==` never finds equal);
//! - the peer encoding (`leyline::encode_peer`, which applies to every message type) is
//!   canonical — the same for `m` and for `decode(encode(m))` (prost's own bytes are not: a
//!   `Struct` is a `HashMap`) —, decodes to `m`, and is a fixed point
//!   (`encode_peer(decode(encode_peer(m))) == encode_peer(m)`), NaNs included.
//!
//! At start-up it checks that [`MESSAGES`] lists every message the generated code defines, so a
//! message added to `proto/` and not here fails the run.
//!
//! Run: `cargo xtask fuzz --target decode_leyline`.
#![no_main]

use std::fmt::Debug;

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

fn round_trip<M: Message + Name + Default + PartialEq + Debug>(bytes: &[u8]) {
    let Ok(message) = M::decode(bytes) else { return };
    // A float field holding a NaN makes `==` false even on the same value.
    #[allow(clippy::eq_op)]
    let comparable = message == message;

    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len(), "encoded_len of {message:?}");
    let back = M::decode(encoded.as_slice()).unwrap_or_else(|e| panic!("re-encoded {message:?} does not decode: {e}"));
    if comparable {
        assert_eq!(back, message, "decode(encode(m)) != m");
    }

    // prost's bytes are not canonical (a `Struct` is a `HashMap`); the peer's are.
    let peer = leyline::encode_peer(&message);
    assert_eq!(leyline::encode_peer(&back), peer, "the same value, other peer bytes: {message:?}");
    let from_peer =
        M::decode(peer.as_slice()).unwrap_or_else(|e| panic!("peer bytes of {message:?} do not decode: {e}"));
    if comparable {
        assert_eq!(from_peer, message, "decode(encode_peer(m)) != m");
    }
    assert_eq!(leyline::encode_peer(&from_peer), peer, "encode_peer is not a fixed point");
}
