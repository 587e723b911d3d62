//! The `tracing` bridge, both ways.
//!
//! - **tracing → Leyline**: [`TelemetryLayer`] is a `tracing_subscriber` layer that turns every
//!   tracing event carrying a `telemetry_event = "<name>"` field (or logged to target
//!   [`TELEMETRY_TARGET`], named by its message) into a Leyline `TelemetryEvent`, and stores it in
//!   an [`EventCollector`] that the runtime drains into its next packet.
//! - **Leyline → tracing**: [`Telemetry::emit`](crate::Telemetry::emit) logs every event of the
//!   packet through `tracing` at target [`ECHO_TARGET`] (unless
//!   [`echo_to_tracing`](crate::TelemetryConfig::echo_to_tracing) is off).
//!
//! No loop: the layer ignores [`ECHO_TARGET`], and the echo carries no `telemetry_event` field.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use leyline::{TelemetryEvent, TelemetryLevel, TelemetryPacket};
use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

use crate::names;
use crate::packet::event_level;

/// The target under which emitted Leyline events are echoed to `tracing`.
pub const ECHO_TARGET: &str = "kasmina_telemetry::echo";

/// A tracing target whose events all become telemetry (named by their message when they carry
/// no [`EVENT_FIELD`]).
pub const TELEMETRY_TARGET: &str = "kasmina::telemetry";

/// The tracing field naming the Leyline event (`tracing::warn!(telemetry_event = "pause", seed_id = "s1")`).
pub const EVENT_FIELD: &str = "telemetry_event";

/// The tracing field that overrides the event's level (`"CRITICAL"` or `"TELEMETRY_LEVEL_CRITICAL"`).
pub const LEVEL_FIELD: &str = "telemetry_level";

/// Logs every event of `packet` through `tracing` at target [`ECHO_TARGET`].
pub(crate) fn echo(packet: &TelemetryPacket) {
    for event in &packet.events {
        let (name, id, attrs) = (&event.description, &event.event_id, &event.attributes);
        let packet_id = &packet.packet_id;
        match event_level(event) {
            TelemetryLevel::Critical => {
                tracing::error!(target: ECHO_TARGET, event = %name, telemetry.level = "CRITICAL", packet_id = %packet_id, event_id = %id, attributes = ?attrs)
            }
            TelemetryLevel::Error => {
                tracing::error!(target: ECHO_TARGET, event = %name, telemetry.level = "ERROR", packet_id = %packet_id, event_id = %id, attributes = ?attrs)
            }
            TelemetryLevel::Warning => {
                tracing::warn!(target: ECHO_TARGET, event = %name, telemetry.level = "WARNING", packet_id = %packet_id, event_id = %id, attributes = ?attrs)
            }
            TelemetryLevel::Info | TelemetryLevel::Unspecified => {
                tracing::info!(target: ECHO_TARGET, event = %name, telemetry.level = "INFO", packet_id = %packet_id, event_id = %id, attributes = ?attrs)
            }
        }
    }
}

#[derive(Debug)]
struct CollectorState {
    events: Vec<TelemetryEvent>,
    capacity: usize,
    dropped: u64,
}

/// A shared buffer of Leyline events collected from `tracing`; clones share it. When full, new
/// INFO and WARNING events are dropped (and counted); ERROR and CRITICAL events are always kept.
#[derive(Debug, Clone)]
pub struct EventCollector {
    state: Arc<Mutex<CollectorState>>,
}

impl Default for EventCollector {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl EventCollector {
    /// A collector holding up to `capacity` INFO/WARNING events between drains.
    pub fn new(capacity: usize) -> Self {
        Self { state: Arc::new(Mutex::new(CollectorState { events: Vec::new(), capacity, dropped: 0 })) }
    }

    /// Adds an event; returns false if it was dropped because the collector is full.
    pub fn push(&self, event: TelemetryEvent) -> bool {
        let mut state = self.state.lock();
        if state.events.len() >= state.capacity && event_level(&event) < TelemetryLevel::Error {
            state.dropped += 1;
            return false;
        }
        state.events.push(event);
        true
    }

    /// Removes and returns the collected events, oldest first.
    pub fn take(&self) -> Vec<TelemetryEvent> {
        std::mem::take(&mut self.state.lock().events)
    }

    /// Events waiting to be taken.
    pub fn len(&self) -> usize {
        self.state.lock().events.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events dropped because the collector was full.
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped
    }
}

/// A `tracing_subscriber` layer turning tracing events into Leyline events (see the module docs).
///
/// The event's level is the [`LEVEL_FIELD`] when given, otherwise the higher of the tracing level
/// (ERROR → ERROR, WARN → WARNING, else INFO) and the catalogue's level for that name. Every other
/// field becomes a string attribute (`message` included).
#[derive(Debug, Clone, Default)]
pub struct TelemetryLayer {
    collector: EventCollector,
}

impl TelemetryLayer {
    /// A layer feeding `collector`.
    pub fn new(collector: EventCollector) -> Self {
        Self { collector }
    }

    /// The collector this layer feeds.
    pub fn collector(&self) -> &EventCollector {
        &self.collector
    }
}

#[derive(Default)]
struct FieldVisitor {
    event: Option<String>,
    level: Option<String>,
    message: Option<String>,
    attributes: BTreeMap<String, String>,
}

impl FieldVisitor {
    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            EVENT_FIELD => self.event = Some(value),
            LEVEL_FIELD => self.level = Some(value),
            "message" => {
                self.attributes.insert("message".to_owned(), value.clone());
                self.message = Some(value);
            }
            name => {
                self.attributes.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for FieldVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

fn level_from_tracing(level: &tracing::Level) -> TelemetryLevel {
    if *level == tracing::Level::ERROR {
        TelemetryLevel::Error
    } else if *level == tracing::Level::WARN {
        TelemetryLevel::Warning
    } else {
        TelemetryLevel::Info
    }
}

/// Turns one tracing event into a Leyline event, or `None` when it is not telemetry.
pub(crate) fn to_leyline(event: &tracing::Event<'_>) -> Option<TelemetryEvent> {
    let meta = event.metadata();
    if meta.target() == ECHO_TARGET {
        return None;
    }
    let has_field = meta.fields().field(EVENT_FIELD).is_some();
    if !has_field && meta.target() != TELEMETRY_TARGET {
        return None;
    }
    let mut visitor = FieldVisitor::default();
    event.record(&mut visitor);
    let name = visitor.event.take().or_else(|| visitor.message.take())?;
    if has_field {
        // Named by the field: the message, if any, stays an attribute only.
    } else {
        // Named by the message: do not repeat it as an attribute.
        visitor.attributes.remove("message");
    }
    let level = match visitor.level.as_deref().map(TelemetryLevel::parse_name) {
        Some(Ok(level)) if level != TelemetryLevel::Unspecified => level,
        _ => {
            let traced = level_from_tracing(meta.level());
            names::event_name(&name).map_or(traced, |known| traced.max(known.level()))
        }
    };
    Some(TelemetryEvent {
        event_id: String::new(),
        description: name,
        level: level as i32,
        attributes: visitor.attributes,
    })
}

impl<S: tracing::Subscriber> Layer<S> for TelemetryLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if let Some(event) = to_leyline(event) {
            self.collector.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::packet::{HealthInputs, TelemetryAssembler};
    use crate::sink::MemorySink;
    use crate::transport::{Telemetry, TelemetryConfig};

    type Seen = (String, tracing::Level, BTreeMap<String, String>);

    /// Captures target, level and fields of every tracing event.
    #[derive(Debug, Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Seen>>>);

    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            let mut v = FieldVisitor::default();
            event.record(&mut v);
            let meta = event.metadata();
            self.0.lock().push((meta.target().to_owned(), *meta.level(), v.attributes));
        }
    }

    #[test]
    fn tracing_events_become_leyline_events() {
        let layer = TelemetryLayer::default();
        let collector = layer.collector().clone();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            // Callsite interest is global: another test's scoped subscriber, registered first,
            // may have cached "never" for a callsite this one wants. Recompute it with ours.
            tracing::callsite::rebuild_interest_cache();
            tracing::info!(telemetry_event = "pause", seed_id = "s1", quota = 3u64, "paused by operator");
            tracing::info!(telemetry_event = "gate_event", telemetry_level = "WARNING", seed_id = "s2");
            tracing::error!(telemetry_event = "seed_state", seed_id = "s3");
            tracing::warn!(target: "kasmina::telemetry", seed_id = "s4", "custom_event");
            tracing::info!(seed_id = "s5", "not telemetry");
        });
        let events = collector.take();
        assert_eq!(events.len(), 4);
        // Catalogue level (pause = WARNING) beats the tracing level INFO.
        assert_eq!((events[0].description.as_str(), events[0].level()), ("pause", TelemetryLevel::Warning));
        assert_eq!(events[0].attributes["seed_id"], "s1");
        assert_eq!(events[0].attributes["quota"], "3");
        assert_eq!(events[0].attributes["message"], "paused by operator");
        assert!(!events[0].attributes.contains_key(EVENT_FIELD));
        assert_eq!(events[1].level(), TelemetryLevel::Warning);
        assert!(!events[1].attributes.contains_key(LEVEL_FIELD));
        assert_eq!(events[2].level(), TelemetryLevel::Error);
        assert_eq!((events[3].description.as_str(), events[3].level()), ("custom_event", TelemetryLevel::Warning));
        assert!(!events[3].attributes.contains_key("message"));
        assert!(collector.is_empty());
    }

    #[test]
    fn emitted_events_are_echoed_without_looping_back() {
        let layer = TelemetryLayer::default();
        let collector = layer.collector().clone();
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(layer).with(capture.clone());
        let telemetry = Telemetry::new(MemorySink::new(), TelemetryConfig::default()).unwrap();
        let packet = TelemetryAssembler::default().assemble(
            &[],
            &[names::EMERGENCY_CLEANUP.event_with([("include_teacher", "false")]), names::SEED_STATE.event()],
            &HealthInputs::default(),
        );
        tracing::subscriber::with_default(subscriber, || {
            // Callsite interest is global: another test's scoped subscriber, registered first,
            // may have cached "never" for a callsite this one wants. Recompute it with ours.
            tracing::callsite::rebuild_interest_cache();
            telemetry.emit(packet);
        });
        let seen = capture.0.lock().clone();
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|(target, _, _)| target == ECHO_TARGET));
        assert_eq!(seen[0].1, tracing::Level::ERROR);
        assert_eq!(seen[0].2["event"], "emergency_cleanup");
        assert_eq!(seen[0].2["telemetry.level"], "CRITICAL");
        assert_eq!(seen[1].1, tracing::Level::INFO);
        assert!(collector.is_empty(), "the echo must not come back as telemetry");
    }

    #[test]
    fn collector_keeps_critical_when_full() {
        let c = EventCollector::new(1);
        assert!(c.push(names::SEED_STATE.event()));
        assert!(!c.push(names::PAUSE.event()));
        assert!(c.push(names::ISOLATION_VIOLATION.event()));
        assert_eq!(c.dropped(), 1);
        assert_eq!(c.len(), 2);
    }
}
