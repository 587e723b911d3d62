//! Every message in `shared/vectors/leyline_messages.json` (bytes produced by Esper's Python
//! peer) decodes to its `fields` and re-encodes, with sorted map keys, to its `hex`.

use std::path::PathBuf;

use leyline::{BlueprintDescriptor, Message, SeedState, SystemStatePacket, TelemetryPacket};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/leyline_messages.json")
}

fn check<
    M: Message + leyline::Name + leyline::fast::FastEncode + Default + DeserializeOwned + PartialEq + std::fmt::Debug,
>(
    name: &str,
    hex: &str,
    fields: &Value,
) {
    let bytes = hex::decode(hex).unwrap_or_else(|e| panic!("{name}: bad hex: {e}"));
    let decoded = M::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{name}: decode failed: {e}"));
    let expected: M =
        serde_json::from_value(fields.clone()).unwrap_or_else(|e| panic!("{name}: peer JSON does not parse: {e}"));
    assert_eq!(decoded, expected, "{name}: decoded bytes differ from the peer's JSON view");
    assert_eq!(hex::encode(leyline::encode_peer(&decoded)), hex, "{name}: re-encoding differs from the peer's bytes");
    // prost's own encoding is shorter or equal (it omits default map values) and decodes the same.
    let prost_bytes = decoded.encode_to_vec();
    assert!(prost_bytes.len() <= bytes.len(), "{name}");
    assert_eq!(M::decode(prost_bytes.as_slice()).unwrap(), decoded, "{name}");
}

#[test]
fn python_peer_vectors_decode_and_reencode() {
    let text = std::fs::read_to_string(vectors_path()).expect("shared/vectors/leyline_messages.json");
    let doc: Value = serde_json::from_str(&text).unwrap();
    let messages = doc["messages"].as_array().unwrap();
    assert!(messages.len() >= 15, "expected the full vector set, got {}", messages.len());
    let mut seen = std::collections::BTreeSet::new();
    for m in messages {
        let name = m["name"].as_str().unwrap();
        let hex = m["hex"].as_str().unwrap();
        let fields = &m["fields"];
        let ty = m["type"].as_str().unwrap();
        match ty.strip_prefix("esper.leyline.v1.").unwrap_or(ty) {
            "SeedState" => check::<SeedState>(name, hex, fields),
            "SystemStatePacket" => check::<SystemStatePacket>(name, hex, fields),
            "TelemetryPacket" => check::<TelemetryPacket>(name, hex, fields),
            "BlueprintDescriptor" => check::<BlueprintDescriptor>(name, hex, fields),
            other => panic!("{name}: vector of type {other} has no check; add it here"),
        }
        seen.insert(ty.to_owned());
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
}

#[test]
fn every_stage_has_a_seed_state_vector() {
    let text = std::fs::read_to_string(vectors_path()).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut stages = std::collections::BTreeSet::new();
    for m in doc["messages"].as_array().unwrap() {
        if m["type"] == "esper.leyline.v1.SeedState" {
            let state = SeedState::decode(hex::decode(m["hex"].as_str().unwrap()).unwrap().as_slice()).unwrap();
            stages.insert(state.stage);
        }
    }
    // All 12 wire values of SeedLifecycleStage, UNKNOWN (0) included.
    assert_eq!(stages, (0..12).collect());
}
