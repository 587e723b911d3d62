//! The entry format of `OonaClient`: `payload` (an encoded `BusEnvelope`) and `signature`
//! (standard padded base64 HMAC-SHA256 over those exact bytes).

use std::collections::HashMap;

use kasmina_runtime::reexports::security::{DEFAULT_KEY_ID, KeyRing};
use leyline::{BusEnvelope, BusMessageType, Message};

use crate::OonaError;

/// One stream entry as read: its id and the two fields (missing fields read as empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BusEntry {
    /// The entry id (`<ms>-<seq>`).
    pub id: String,
    /// The `payload` field: an encoded `BusEnvelope`.
    pub payload: Vec<u8>,
    /// The `signature` field.
    pub signature: String,
    /// Whether the entry has a `payload` field at all (`OonaClient.ensure_consumer_group`
    /// writes a `bootstrap` entry without one).
    pub has_payload: bool,
}

impl BusEntry {
    /// An entry from the field map Redis returned.
    pub(crate) fn from_fields(id: String, map: &HashMap<String, redis::Value>) -> Self {
        let bytes = |k: &str| map.get(k).and_then(|v| redis::from_redis_value::<Vec<u8>>(v.clone()).ok());
        let payload = bytes("payload");
        let signature = bytes("signature").map(|s| String::from_utf8_lossy(&s).into_owned()).unwrap_or_default();
        Self { id, has_payload: payload.is_some(), payload: payload.unwrap_or_default(), signature }
    }
}

/// The two fields of an entry carrying `payload` as `message_type`, signed with the ring's
/// `default` key (the form `OonaClient._publish_proto` writes).
pub fn encode_entry(
    message_type: BusMessageType,
    payload: Vec<u8>,
    keys: &KeyRing,
) -> Result<[(&'static str, Vec<u8>); 2], OonaError> {
    let mut envelope = BusEnvelope { payload, ..Default::default() };
    envelope.set_message_type(message_type);
    let bytes = envelope.encode_to_vec();
    let signature = keys.get(DEFAULT_KEY_ID).map(|key| key.sign(&bytes)).ok_or(OonaError::Config {
        field: "keys",
        reason: format!("no `{DEFAULT_KEY_ID}` key to sign bus entries with (ESPER_LEYLINE_SECRET)"),
    })?;
    Ok([("payload", bytes), ("signature", signature.into_bytes())])
}
