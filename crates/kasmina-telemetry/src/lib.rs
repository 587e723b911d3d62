//! Kasmina's telemetry: assembles Leyline `TelemetryPacket`s with the health and priority rules of
//! decisions D9 and carries them to sinks through a bounded queue with an emergency bypass.
//!
//! Layer L1 (a domain crate): it depends only on the L0 crates `leyline` and `kasmina-clock` and
//! on external crates (crossbeam, parking_lot, serde_json, tracing, and OpenTelemetry behind the
//! `otlp` feature), never on another Kasmina domain crate. The runtime turns the typed events of
//! the other domain crates into the telemetry built here.
//!
//! Main types:
//! - [`names`]: every metric and event name with its unit or level ([`names::ALL_EVENTS`],
//!   [`names::ALL_METRICS`]).
//! - [`TelemetryAssembler`]: builds packets (ids, timestamps from a [`WallClock`], level, event ids,
//!   `system_health` from [`HealthInputs`], the `priority` indicator).
//! - [`Telemetry`]: the transport handle (`emit`, `drain`, `flush`, `stats`, `subscribe`); normal
//!   packets go through a bounded queue and may be dropped when it is full, ERROR and CRITICAL
//!   ones through a bypass that never drops and never blocks.
//! - [`TelemetrySink`] with [`MemorySink`], [`JsonLinesSink`], [`FanoutSink`], [`NullSink`], and
//!   `OtlpSink` with the `otlp` feature.
//! - [`TelemetryLayer`]: the `tracing` bridge.
//!
//! ```
//! use kasmina_telemetry::{names, HealthInputs, MemorySink, Telemetry, TelemetryAssembler, TelemetryConfig};
//! use leyline::{HealthStatus, MessagePriority, TelemetryLevel};
//!
//! let sink = MemorySink::new();
//! let telemetry = Telemetry::new(sink.clone(), TelemetryConfig::default())?;
//! let assembler = TelemetryAssembler::default();
//!
//! let metrics = [names::SEEDS_ACTIVE.point(1.0)];
//! let events = [names::EMBARGO_START.event_with([("seed_id", "seed-1")])];
//! let health = HealthInputs { fallback_used: true, live_seeds: 1, ..Default::default() };
//! let packet = assembler.assemble(&metrics, &events, &health);
//! assert_eq!(packet.packet_id, "kasmina-telemetry-0");
//! assert_eq!(packet.level(), TelemetryLevel::Warning);
//! let system_health = packet.system_health.as_ref().unwrap();
//! assert_eq!(system_health.status(), HealthStatus::Degraded);
//! assert_eq!(system_health.indicators["priority"], MessagePriority::High.as_str_name());
//!
//! telemetry.emit(packet);
//! telemetry.flush()?; // the runtime's safe point; `Telemetry::spawn` delivers in the background
//! assert_eq!(sink.packets()[0].events[0].event_id, "evt-1");
//! # Ok::<(), kasmina_telemetry::Error>(())
//! ```

mod bridge;
mod error;
pub mod names;
#[cfg(feature = "otlp")]
mod otlp;
mod packet;
mod sink;
mod transport;

pub use bridge::{ECHO_TARGET, EVENT_FIELD, EventCollector, LEVEL_FIELD, TELEMETRY_TARGET, TelemetryLayer};
pub use error::{Error, Result};
// The workspace's one wall clock, from `kasmina-clock` (its `FixedWallClock`, shared as an `Arc`,
// is the settable test clock).
pub use kasmina_clock::{FixedWallClock, FnWallClock, SystemWallClock, WallClock};
#[cfg(feature = "otlp")]
pub use otlp::OtlpSink;
pub use packet::{
    HealthInputs, PRIORITY_INDICATOR, SEEDS_INDICATOR, SOURCE_SUBSYSTEM, TelemetryAssembler, VIOLATIONS_INDICATOR,
    health_status, packet_level, packet_priority, priority_for_level, priority_of, system_health, timestamp,
};
pub use sink::{FanoutSink, JsonLinesSink, MemorySink, NullSink, TelemetrySink};
pub use transport::{EmitOutcome, Route, Subscription, Telemetry, TelemetryConfig, TelemetryStats};
