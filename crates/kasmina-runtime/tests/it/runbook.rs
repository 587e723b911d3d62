//! Every event and metric name Kasmina can emit is documented in the operator runbook.

use kasmina_runtime::reexports::telemetry::names::{ALL_EVENTS, ALL_METRICS};

#[test]
fn every_emitted_name_is_in_the_runbook() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/runbook.md");
    let runbook = std::fs::read_to_string(path).unwrap();
    let missing: Vec<&str> = ALL_EVENTS
        .iter()
        .map(|e| e.name())
        .chain(ALL_METRICS.iter().map(|m| m.name()))
        .filter(|name| !runbook.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "names missing from docs/runbook.md: {missing:?}");
}
