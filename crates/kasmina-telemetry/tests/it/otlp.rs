//! The OpenTelemetry sink exports the right names, values and attributes to an in-process
//! collector (exporters implementing the SDK's export traits and keeping what they receive).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kasmina_telemetry::{HealthInputs, OtlpSink, Telemetry, TelemetryAssembler, TelemetryConfig, TelemetrySink, names};
use leyline::{HealthStatus, SeedLifecycleGate};
use opentelemetry::logs::{AnyValue, Severity};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use parking_lot::Mutex;

/// One exported data point: (instrument kind, value, unit, attributes).
#[derive(Debug, Clone, PartialEq)]
struct Point {
    kind: &'static str,
    value: f64,
    unit: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
struct MetricCollector(Arc<Mutex<Vec<(String, Point)>>>);

impl PushMetricExporter for MetricCollector {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let mut out = self.0.lock();
        for scope in metrics.scope_metrics() {
            for metric in scope.metrics() {
                let unit = metric.unit().to_owned();
                let attrs = |it: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| -> BTreeMap<String, String> {
                    it.map(|kv| (kv.key.to_string(), kv.value.to_string())).collect()
                };
                match metric.data() {
                    AggregatedMetrics::F64(MetricData::Gauge(g)) => {
                        for p in g.data_points() {
                            let attributes = attrs(&mut p.attributes());
                            let point = Point { kind: "gauge", value: p.value(), unit: unit.clone(), attributes };
                            out.push((metric.name().to_owned(), point));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Sum(s)) => {
                        assert!(s.is_monotonic());
                        for p in s.data_points() {
                            let attributes = attrs(&mut p.attributes());
                            let point = Point { kind: "counter", value: p.value(), unit: unit.clone(), attributes };
                            out.push((metric.name().to_owned(), point));
                        }
                    }
                    other => panic!("unexpected aggregation {other:?}"),
                }
            }
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// One exported log record: (event name, severity, severity text, body, attributes).
type Record = (Option<&'static str>, Option<Severity>, Option<&'static str>, Option<String>, BTreeMap<String, String>);

#[derive(Debug, Clone, Default)]
struct LogCollector(Arc<Mutex<Vec<Record>>>);

impl LogExporter for LogCollector {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let mut out = self.0.lock();
        for (record, _scope) in batch.iter() {
            let body = match record.body() {
                Some(AnyValue::String(s)) => Some(s.to_string()),
                _ => None,
            };
            let attributes = record
                .attributes_iter()
                .map(|(k, v)| {
                    let v = match v {
                        AnyValue::String(s) => s.to_string(),
                        other => format!("{other:?}"),
                    };
                    (k.to_string(), v)
                })
                .collect();
            out.push((record.event_name(), record.severity_number(), record.severity_text(), body, attributes));
        }
        Ok(())
    }
}

fn sink() -> (OtlpSink, MetricCollector, LogCollector) {
    let metrics = MetricCollector::default();
    let logs = LogCollector::default();
    let meter_provider =
        SdkMeterProvider::builder().with_reader(PeriodicReader::builder(metrics.clone()).build()).build();
    let logger_provider = SdkLoggerProvider::builder().with_simple_exporter(logs.clone()).build();
    (OtlpSink::new(meter_provider, logger_provider), metrics, logs)
}

fn last<'a>(points: &'a [(String, Point)], name: &str) -> &'a Point {
    &points.iter().rev().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} not exported")).1
}

#[test]
fn metrics_export_as_gauges_and_counters() {
    let (sink, metrics, _) = sink();
    let assembler = TelemetryAssembler::default();
    let health = HealthInputs { fallback_used: true, ..Default::default() };
    for (i, violations) in [2.0, 5.0].into_iter().enumerate() {
        let points = [
            names::SEEDS_ACTIVE.point(3.0 + i as f64),
            names::KERNEL_FETCH_LATENCY_MS.point_with(4.5, [("seed_id", "seed-1")]),
            names::ISOLATION_VIOLATIONS.point(violations),
        ];
        sink.send(&assembler.assemble(&points, &[], &health)).unwrap();
    }
    sink.flush().unwrap();
    let points = metrics.0.lock().clone();

    let seeds = last(&points, "kasmina.seeds.active");
    assert_eq!((seeds.kind, seeds.value, seeds.unit.as_str()), ("gauge", 4.0, "count"));
    let latency = last(&points, "kasmina.kernel.fetch_latency_ms");
    assert_eq!((latency.kind, latency.value, latency.unit.as_str()), ("gauge", 4.5, "ms"));
    assert_eq!(latency.attributes["seed_id"], "seed-1");
    // A cumulative total exported as a counter keeps its value (2 then +3).
    let violations = last(&points, "kasmina.isolation.violations");
    assert_eq!((violations.kind, violations.value), ("counter", 5.0));
    let health = last(&points, "kasmina.health.status");
    assert_eq!(health.value, f64::from(HealthStatus::Degraded as i32));
    assert_eq!(health.attributes["summary"], "fallback");
}

#[test]
fn events_export_as_log_records() {
    let (sink, _, logs) = sink();
    let events = [
        names::gate_event("seed-1", SeedLifecycleGate::SeedGateG1GradientHealth, false, "violations"),
        names::EMERGENCY_CLEANUP.event_with([("include_teacher", "true")]),
        names::SEED_STATE.event_at(leyline::TelemetryLevel::Info, [("seed_id", "seed-1")]),
    ];
    let packet = TelemetryAssembler::default().assemble(&[], &events, &HealthInputs::default());
    sink.send(&packet).unwrap();
    sink.flush().unwrap();
    let records = logs.0.lock().clone();
    assert_eq!(records.len(), 3);

    let (name, severity, text, body, attrs) = &records[0];
    assert_eq!((*name, *severity, *text), (Some("gate_event"), Some(Severity::Warn), Some("WARNING")));
    assert_eq!(body.as_deref(), Some("gate_event"));
    assert_eq!(attrs["gate"], "SEED_GATE_G1_GRADIENT_HEALTH");
    assert_eq!(attrs["passed"], "false");
    assert_eq!(attrs["event_id"], "evt-1");
    assert_eq!(attrs["packet_id"], packet.packet_id);
    assert_eq!(attrs["source_subsystem"], "kasmina");

    let (name, severity, text, _, attrs) = &records[1];
    assert_eq!((*name, *severity, *text), (Some("emergency_cleanup"), Some(Severity::Fatal), Some("CRITICAL")));
    assert_eq!(attrs["include_teacher"], "true");
    assert_eq!(records[2].1, Some(Severity::Info));
}

#[test]
fn otlp_sink_works_behind_the_transport() {
    let (sink, metrics, logs) = sink();
    let sink = Arc::new(sink);
    let telemetry = Telemetry::new(Arc::clone(&sink), TelemetryConfig::default()).unwrap();
    let packet = TelemetryAssembler::default().assemble(
        &[names::CACHE_HIT_RATE.point(0.75)],
        &[names::BREAKER_OPEN.event_with([("breaker", "kernel_fetch")])],
        &HealthInputs { any_breaker_open: true, ..Default::default() },
    );
    telemetry.emit(packet);
    telemetry.flush().unwrap();
    assert_eq!(last(&metrics.0.lock(), "kasmina.cache.hit_rate").value, 0.75);
    assert_eq!(logs.0.lock()[0].0, Some("breaker_open"));
    sink.shutdown().unwrap();
}

#[test]
fn grpc_exporter_needs_a_tokio_runtime() {
    let err = OtlpSink::grpc("http://127.0.0.1:4317", Duration::from_secs(10)).unwrap_err();
    assert!(matches!(err, kasmina_telemetry::Error::Sink { sink: "otlp", .. }), "{err}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = runtime.enter();
    let sink = OtlpSink::grpc("http://127.0.0.1:4317", Duration::from_secs(3600));
    assert!(sink.is_ok(), "{sink:?}");
}
