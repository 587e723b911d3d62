//! The OpenTelemetry sink (feature `otlp`): metrics become gauges and counters, events become log
//! records, exported over OTLP to a collector.
//!
//! Mapping of one packet:
//! - each `MetricPoint` → an `f64` instrument named like the metric, with its unit and attributes:
//!   a gauge, or for [`MetricKind::Counter`] metrics (cumulative totals) a counter that is
//!   incremented by the growth since the last packet (the full value after a reset);
//! - `system_health` → the gauge `kasmina.health.status` (the `HealthStatus` number) with the
//!   `summary` attribute;
//! - each `TelemetryEvent` → a log record: event name and body = the event's name, severity from
//!   its level (INFO → Info, WARNING → Warn, ERROR → Error, CRITICAL → Fatal; severity text is the
//!   Leyline short name), attributes = the event's attributes plus `event_id`, `packet_id` and
//!   `source_subsystem`, timestamp = the packet's.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leyline::{TelemetryLevel, TelemetryPacket};
use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::{Counter, Gauge, Meter, MeterProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::names::{self, MetricKind};
use crate::packet::event_level;
use crate::sink::TelemetrySink;

/// The instrumentation scope of every instrument and logger.
const SCOPE: &str = "kasmina";

#[derive(Default)]
struct Instruments {
    gauges: HashMap<String, Gauge<f64>>,
    counters: HashMap<String, Counter<f64>>,
    /// Last cumulative value seen per counter and attribute set.
    totals: HashMap<(String, BTreeMap<String, String>), f64>,
}

/// Exports packets to OpenTelemetry (see the module docs for the mapping).
pub struct OtlpSink {
    meter_provider: SdkMeterProvider,
    logger_provider: SdkLoggerProvider,
    meter: Meter,
    logger: SdkLogger,
    instruments: Mutex<Instruments>,
}

impl fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSink").finish_non_exhaustive()
    }
}

fn sink_error(reason: impl fmt::Display) -> Error {
    Error::Sink { sink: "otlp", reason: reason.to_string() }
}

impl OtlpSink {
    /// A sink recording through the given providers (any exporters: OTLP, stdout, in-memory).
    pub fn new(meter_provider: SdkMeterProvider, logger_provider: SdkLoggerProvider) -> Self {
        let meter = meter_provider.meter(SCOPE);
        let logger = logger_provider.logger(SCOPE);
        Self { meter_provider, logger_provider, meter, logger, instruments: Mutex::new(Instruments::default()) }
    }

    /// A sink exporting over OTLP/gRPC to `endpoint` (e.g. `http://localhost:4317`), metrics every
    /// `interval`, logs in batches, with resource `service.name = kasmina`. Must be called within
    /// a Tokio runtime (tonic runs on it); outside one it returns an error.
    pub fn grpc(endpoint: &str, interval: Duration) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(sink_error("the OTLP gRPC exporter must be built within a Tokio runtime"));
        }
        let resource = Resource::builder().with_service_name(SCOPE).build();
        let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(sink_error)?;
        let log_exporter = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(sink_error)?;
        let meter_provider = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_reader(PeriodicReader::builder(metric_exporter).with_interval(interval).build())
            .build();
        let logger_provider =
            SdkLoggerProvider::builder().with_resource(resource).with_batch_exporter(log_exporter).build();
        Ok(Self::new(meter_provider, logger_provider))
    }

    /// Flushes and shuts both providers down (further packets are ignored by the SDK).
    pub fn shutdown(&self) -> Result<()> {
        let metrics = self.meter_provider.shutdown().map_err(sink_error);
        let logs = self.logger_provider.shutdown().map_err(sink_error);
        metrics.and(logs)
    }

    fn record_metric(
        &self,
        instruments: &mut Instruments,
        name: &str,
        unit: &str,
        value: f64,
        attrs: &BTreeMap<String, String>,
    ) {
        let kind = names::metric_name(name).map_or(MetricKind::Gauge, |m| m.kind());
        let kv = key_values(attrs);
        match kind {
            MetricKind::Gauge => {
                let gauge = instruments.gauges.entry(name.to_owned()).or_insert_with(|| {
                    self.meter.f64_gauge(Cow::Owned(name.to_owned())).with_unit(unit.to_owned()).build()
                });
                gauge.record(value, &kv);
            }
            MetricKind::Counter => {
                let last = instruments.totals.insert((name.to_owned(), attrs.clone()), value);
                let delta = match last {
                    Some(last) if value >= last => value - last,
                    // First sight, or the source was reset: the whole value is new.
                    _ => value,
                };
                let counter = instruments.counters.entry(name.to_owned()).or_insert_with(|| {
                    self.meter.f64_counter(Cow::Owned(name.to_owned())).with_unit(unit.to_owned()).build()
                });
                if delta.is_finite() && delta >= 0.0 {
                    counter.add(delta, &kv);
                }
            }
        }
    }
}

fn key_values(attrs: &BTreeMap<String, String>) -> Vec<KeyValue> {
    attrs.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect()
}

fn severity(level: TelemetryLevel) -> (Severity, &'static str) {
    match level {
        TelemetryLevel::Critical => (Severity::Fatal, "CRITICAL"),
        TelemetryLevel::Error => (Severity::Error, "ERROR"),
        TelemetryLevel::Warning => (Severity::Warn, "WARNING"),
        TelemetryLevel::Info | TelemetryLevel::Unspecified => (Severity::Info, "INFO"),
    }
}

impl TelemetrySink for OtlpSink {
    fn send(&self, packet: &TelemetryPacket) -> Result<()> {
        {
            let mut instruments = self.instruments.lock();
            for m in &packet.metrics {
                self.record_metric(&mut instruments, &m.name, &m.unit, m.value, &m.attributes);
            }
            if let Some(health) = &packet.system_health {
                let attrs = BTreeMap::from([("summary".to_owned(), health.summary.clone())]);
                let h = names::HEALTH_STATUS;
                self.record_metric(&mut instruments, h.name(), h.unit(), f64::from(health.status), &attrs);
            }
        }
        let at = packet.timestamp.as_ref().map(|t| {
            UNIX_EPOCH + Duration::new(u64::try_from(t.seconds).unwrap_or(0), u32::try_from(t.nanos).unwrap_or(0))
        });
        for event in &packet.events {
            let mut record = self.logger.create_log_record();
            if let Some(known) = names::event_name(&event.description) {
                record.set_event_name(known.name());
            }
            let (severity, text) = severity(event_level(event));
            record.set_severity_number(severity);
            record.set_severity_text(text);
            record.set_body(AnyValue::from(event.description.clone()));
            record.set_timestamp(at.unwrap_or_else(SystemTime::now));
            record.add_attribute("event_id", event.event_id.clone());
            record.add_attribute("packet_id", packet.packet_id.clone());
            record.add_attribute("source_subsystem", packet.source_subsystem.clone());
            for (k, v) in &event.attributes {
                record.add_attribute(k.clone(), v.clone());
            }
            self.logger.emit(record);
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let metrics = self.meter_provider.force_flush().map_err(sink_error);
        let logs = self.logger_provider.force_flush().map_err(sink_error);
        metrics.and(logs)
    }
}
