//! Wire-level handling of the legacy form: find `annotations["signature"]` in the received bytes
//! and split it out without decoding (and so without re-encoding) the command; read
//! `annotations["key_id"]`, which stays in the signed bytes.

use leyline::prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::keys::{KEY_ID_ANNOTATION, SIGNATURE_ANNOTATION};

/// Field number of `AdaptationCommand.annotations`.
const ANNOTATIONS_FIELD: u32 = 20;
/// Field numbers of `SignedCommand`: `command`, `signature`, `key_id`.
const ENVELOPE_COMMAND_FIELD: u32 = 1;
const ENVELOPE_SIGNATURE_FIELD: u32 = 2;
const ENVELOPE_KEY_ID_FIELD: u32 = 3;
/// Field numbers of `BusEnvelope`: `message_type`, `payload`, `attributes`.
const BUS_MESSAGE_TYPE_FIELD: u32 = 1;
const BUS_PAYLOAD_FIELD: u32 = 2;
const BUS_ATTRIBUTES_FIELD: u32 = 3;

/// The fields of an encoded `SignedCommand`, borrowed from the received bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EnvelopeFields<'a> {
    pub(crate) command: &'a [u8],
    /// Not checked for UTF-8 here (a signature that matches is ASCII): the caller checks it
    /// when the signature does not match.
    pub(crate) signature: &'a [u8],
    pub(crate) key_id: &'a str,
}

/// Reads an encoded `SignedCommand` in place, as prost decodes it (the last occurrence of a field
/// wins, unknown fields are skipped, strings must be UTF-8, except that the UTF-8 of the last
/// signature is left to the caller) but without copying anything. `None` when the bytes are not
/// a well-formed `SignedCommand`: the caller then has prost decode them, which names the error.
pub(crate) fn split_envelope(bytes: &[u8]) -> Option<EnvelopeFields<'_>> {
    let mut buf = bytes;
    let mut fields = EnvelopeFields { command: &[], signature: &[], key_id: "" };
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        match tag {
            ENVELOPE_COMMAND_FIELD | ENVELOPE_SIGNATURE_FIELD | ENVELOPE_KEY_ID_FIELD => {
                if wire_type != WireType::LengthDelimited {
                    return None;
                }
                let value = length_delimited(&mut buf)?;
                match tag {
                    ENVELOPE_COMMAND_FIELD => fields.command = value,
                    ENVELOPE_SIGNATURE_FIELD => {
                        // prost checks every occurrence; only the last one is left to the caller.
                        if !fields.signature.is_empty() {
                            std::str::from_utf8(fields.signature).ok()?;
                        }
                        fields.signature = value;
                    }
                    _ => fields.key_id = std::str::from_utf8(value).ok()?,
                }
            }
            _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default()).ok()?,
        }
    }
    Some(fields)
}

/// The fields of an encoded `BusEnvelope` without attributes, borrowed from the received bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BusFields<'a> {
    /// The `BusMessageType` value as received.
    pub(crate) message_type: i32,
    pub(crate) payload: &'a [u8],
}

/// Reads an encoded `BusEnvelope` in place, as [`split_envelope`] does. `None` when the bytes
/// are not well formed, and also when they carry `attributes` (a map prost checks entry by
/// entry): the caller then has prost decode them.
pub(crate) fn split_bus(bytes: &[u8]) -> Option<BusFields<'_>> {
    let mut buf = bytes;
    let mut fields = BusFields { message_type: 0, payload: &[] };
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        match (tag, wire_type) {
            // prost's int32 (and so enum) decoding: the varint truncated to 32 bits.
            (BUS_MESSAGE_TYPE_FIELD, WireType::Varint) => fields.message_type = decode_varint(&mut buf).ok()? as i32,
            (BUS_PAYLOAD_FIELD, WireType::LengthDelimited) => fields.payload = length_delimited(&mut buf)?,
            (BUS_MESSAGE_TYPE_FIELD | BUS_PAYLOAD_FIELD | BUS_ATTRIBUTES_FIELD, _) => return None,
            _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default()).ok()?,
        }
    }
    Some(fields)
}

/// A length-delimited value: its length, then that many bytes (`None` when they overrun `buf`).
fn length_delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(buf).ok()?).ok().filter(|len| *len <= buf.len())?;
    let (value, rest) = buf.split_at(len);
    *buf = rest;
    Some(value)
}

/// A legacy command split around its signature map entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LegacySplit<'a> {
    /// The signature's value.
    pub(crate) signature: &'a str,
    /// The bytes before the signature entry (key, length and entry included in neither part).
    pub(crate) before: &'a [u8],
    /// The bytes after it.
    pub(crate) after: &'a [u8],
    /// The value of the `key_id` annotation, when there is one (possibly empty). It is part of
    /// the signed bytes; it only says which key to check them with.
    pub(crate) key_id: Option<&'a str>,
}

/// Why no signature could be split out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// No `signature` entry (or an empty one).
    Missing,
    /// The bytes are not a well-formed message, or carry two `signature` or two `key_id`
    /// entries, or one that is not UTF-8.
    Malformed(String),
}

/// Walks the top-level fields of `bytes` and splits out the one `annotations` entry whose key is
/// `signature`; every other byte is kept as received. Also reads the `key_id` entry.
pub(crate) fn split_legacy(bytes: &[u8]) -> Result<LegacySplit<'_>, SplitError> {
    let malformed = |e: leyline::DecodeError| SplitError::Malformed(e.to_string());
    let mut buf = bytes;
    let mut found: Option<(usize, usize, &str)> = None;
    let mut key_id: Option<&str> = None;
    while !buf.is_empty() {
        let start = bytes.len() - buf.len();
        let (tag, wire_type) = decode_key(&mut buf).map_err(malformed)?;
        if tag == ANNOTATIONS_FIELD && wire_type == WireType::LengthDelimited {
            let len = decode_varint(&mut buf).map_err(malformed)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|len| *len <= buf.len())
                .ok_or_else(|| SplitError::Malformed("annotations entry overruns the message".to_owned()))?;
            let (entry, rest) = buf.split_at(len);
            buf = rest;
            match map_entry(entry)? {
                (key, value) if key == SIGNATURE_ANNOTATION.as_bytes() => {
                    if found.is_some() {
                        return Err(SplitError::Malformed("two signature annotations".to_owned()));
                    }
                    found = Some((start, bytes.len() - buf.len(), utf8(value, "signature")?));
                }
                (key, value) if key == KEY_ID_ANNOTATION.as_bytes() => {
                    if key_id.is_some() {
                        return Err(SplitError::Malformed("two key_id annotations".to_owned()));
                    }
                    key_id = Some(utf8(value, "key_id")?);
                }
                _ => {}
            }
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default()).map_err(malformed)?;
        }
    }
    match found {
        Some((start, end, signature)) if !signature.is_empty() => {
            Ok(LegacySplit { signature, before: &bytes[..start], after: &bytes[end..], key_id })
        }
        _ => Err(SplitError::Missing),
    }
}

/// The key and value of a map entry (`key = 1`, `value = 2`, last occurrence wins).
fn map_entry(entry: &[u8]) -> Result<(&[u8], &[u8]), SplitError> {
    let malformed = |e: leyline::DecodeError| SplitError::Malformed(e.to_string());
    let mut buf = entry;
    let mut key: &[u8] = b"";
    let mut value: &[u8] = b"";
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(malformed)?;
        if wire_type == WireType::LengthDelimited && (tag == 1 || tag == 2) {
            let len = decode_varint(&mut buf).map_err(malformed)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|len| *len <= buf.len())
                .ok_or_else(|| SplitError::Malformed("map entry field overruns the entry".to_owned()))?;
            let (field, rest) = buf.split_at(len);
            buf = rest;
            if tag == 1 {
                key = field;
            } else {
                value = field;
            }
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default()).map_err(malformed)?;
        }
    }
    Ok((key, value))
}

fn utf8<'a>(value: &'a [u8], annotation: &str) -> Result<&'a str, SplitError> {
    std::str::from_utf8(value).map_err(|_| SplitError::Malformed(format!("{annotation} annotation is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leyline::{AdaptationCommand, Message};

    fn command(annotations: &[(&str, &str)]) -> AdaptationCommand {
        AdaptationCommand {
            command_id: "c".into(),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn split_removes_exactly_the_signature_entry() {
        for (before_sig, after_sig) in
            [(vec![], vec![]), (vec![("a", "1")], vec![("z", "2")]), (vec![("a", "1")], vec![])]
        {
            let mut all = before_sig.clone();
            all.push(("signature", "SIG"));
            all.extend(after_sig.iter().cloned());
            let with = command(&all).encode_to_vec();
            let mut rest = before_sig.clone();
            rest.extend(after_sig);
            let without = command(&rest).encode_to_vec();
            let split = split_legacy(&with).unwrap();
            assert_eq!(split.signature, "SIG");
            assert_eq!(split.key_id, None);
            assert_eq!([split.before, split.after].concat(), without);
        }
    }

    #[test]
    fn the_key_id_annotation_is_read_and_kept_in_the_signed_bytes() {
        let with = command(&[("key_id", "k2"), ("signature", "SIG")]).encode_to_vec();
        let split = split_legacy(&with).unwrap();
        assert_eq!((split.signature, split.key_id), ("SIG", Some("k2")));
        assert_eq!([split.before, split.after].concat(), command(&[("key_id", "k2")]).encode_to_vec());
        let empty = command(&[("key_id", ""), ("signature", "SIG")]).encode_to_vec();
        assert_eq!(split_legacy(&empty).unwrap().key_id, Some(""));
        let mut twice = command(&[("key_id", "a"), ("signature", "SIG")]).encode_to_vec();
        twice.extend_from_slice(&command(&[("key_id", "b")]).encode_to_vec());
        assert!(matches!(split_legacy(&twice), Err(SplitError::Malformed(_))));
    }

    /// What prost reads from `bytes`, as the fields [`split_envelope`] returns.
    fn prost_envelope(bytes: &[u8]) -> Option<(Vec<u8>, String, String)> {
        leyline::SignedCommand::decode(bytes).ok().map(|s| (s.command, s.signature, s.key_id))
    }

    /// The envelope read in place, refused as the verifier refuses it when its signature is not
    /// UTF-8.
    fn split_envelope_owned(bytes: &[u8]) -> Option<(Vec<u8>, String, String)> {
        split_envelope(bytes).and_then(|f| {
            let signature = String::from_utf8(f.signature.to_vec()).ok()?;
            Some((f.command.to_vec(), signature, f.key_id.to_owned()))
        })
    }

    /// What prost reads from `bytes` when it has no attributes (what [`split_bus`] handles).
    fn prost_bus(bytes: &[u8]) -> Option<(i32, Vec<u8>)> {
        leyline::BusEnvelope::decode(bytes)
            .ok()
            .filter(|b| b.attributes.is_empty())
            .map(|b| (b.message_type, b.payload))
    }

    fn split_bus_owned(bytes: &[u8]) -> Option<(i32, Vec<u8>)> {
        split_bus(bytes).map(|f| (f.message_type, f.payload.to_vec()))
    }

    /// A valid encoding, then `edits` (position, byte) applied: overwritten, inserted or removed.
    fn mutated(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
        for &(at, byte, how) in edits {
            let at = at % (bytes.len() + 1);
            match how % 3 {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.push(byte),
            }
        }
        bytes
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever the bytes, the envelope read in place is prost's reading, and it fails exactly
        /// when prost's does (so the fallback to prost only ever names an error).
        #[test]
        fn the_envelope_read_in_place_is_prosts(
            command in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            signature in ".{0,50}",
            key_id in ".{0,20}",
            again in proptest::option::of((proptest::collection::vec(proptest::prelude::any::<u8>(), 0..10), ".{0,5}", ".{0,5}")),
            extra in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            edits in proptest::collection::vec(proptest::prelude::any::<(usize, u8, u8)>(), 0..4),
        ) {
            let mut bytes = leyline::SignedCommand { command, signature, key_id }.encode_to_vec();
            // Fields given twice: the last occurrence wins.
            if let Some((command, signature, key_id)) = again {
                bytes.extend_from_slice(&leyline::SignedCommand { command, signature, key_id }.encode_to_vec());
            }
            bytes.extend_from_slice(&extra);
            let bytes = mutated(bytes, &edits);
            proptest::prop_assert_eq!(split_envelope_owned(&bytes), prost_envelope(&bytes));
        }

        /// The same for a bus envelope without attributes; one with attributes is left to prost.
        #[test]
        fn the_bus_envelope_read_in_place_is_prosts(
            message_type in proptest::prelude::any::<i32>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            attributes in proptest::collection::btree_map(".{0,5}", ".{0,5}", 0..2),
            again in proptest::option::of((proptest::prelude::any::<i32>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..10))),
            extra in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            edits in proptest::collection::vec(proptest::prelude::any::<(usize, u8, u8)>(), 0..4),
        ) {
            let has_attributes = !attributes.is_empty();
            let mut bytes = leyline::BusEnvelope { message_type, payload, attributes: attributes.into_iter().collect() }.encode_to_vec();
            if let Some((message_type, payload)) = again {
                bytes.extend_from_slice(&leyline::BusEnvelope { message_type, payload, ..Default::default() }.encode_to_vec());
            }
            bytes.extend_from_slice(&extra);
            let bytes = mutated(bytes, &edits);
            let split = split_bus_owned(&bytes);
            proptest::prop_assert_eq!(&split, &prost_bus(&bytes));
            if has_attributes && edits.is_empty() && extra.is_empty() {
                proptest::prop_assert_eq!(split, None);
            }
        }
    }

    #[test]
    fn envelope_fields_are_read_in_place_and_the_last_occurrence_wins() {
        let first = leyline::SignedCommand { command: b"one".to_vec(), signature: "S1".into(), key_id: "k1".into() };
        let second = leyline::SignedCommand { command: b"two".to_vec(), signature: "S2".into(), key_id: String::new() };
        let mut bytes = first.encode_to_vec();
        bytes.extend_from_slice(&second.encode_to_vec());
        // An unknown field (number 9, varint) is skipped.
        bytes.extend_from_slice(&[9 << 3, 1]);
        let fields = split_envelope(&bytes).unwrap();
        // `second` leaves its empty key_id out of the encoding: the first one stays.
        assert_eq!(fields, EnvelopeFields { command: b"two", signature: b"S2", key_id: "k1" });
        assert_eq!(split_envelope_owned(&bytes), prost_envelope(&bytes));
        assert_eq!(split_envelope(&[]), Some(EnvelopeFields { command: b"", signature: b"", key_id: "" }));
        // A key id that is not UTF-8, a wrong wire type, a truncated length: left to prost.
        assert_eq!(split_envelope(&[3 << 3 | 2, 1, 0xff]), None);
        // A signature that is not UTF-8 is read as it is (the verifier checks it when it does not
        // match) and refused as prost refuses it.
        assert_eq!(split_envelope(&[2 << 3 | 2, 1, 0xff]).map(|f| f.signature), Some(&[0xff][..]));
        assert_eq!(split_envelope_owned(&[2 << 3 | 2, 1, 0xff]), None);
        assert_eq!(split_envelope(&[1 << 3, 1]), None);
        assert_eq!(split_envelope(&[1 << 3 | 2, 5, 0]), None);
    }

    #[test]
    fn missing_empty_duplicate_and_truncated() {
        assert_eq!(split_legacy(&command(&[("a", "1")]).encode_to_vec()), Err(SplitError::Missing));
        assert_eq!(split_legacy(&command(&[("signature", "")]).encode_to_vec()), Err(SplitError::Missing));
        assert_eq!(split_legacy(&[]), Err(SplitError::Missing));
        let mut twice = command(&[("signature", "A")]).encode_to_vec();
        twice.extend_from_slice(&command(&[("signature", "B")]).encode_to_vec());
        assert!(matches!(split_legacy(&twice), Err(SplitError::Malformed(_))));
        let bytes = command(&[("signature", "SIG")]).encode_to_vec();
        assert!(matches!(split_legacy(&bytes[..bytes.len() - 1]), Err(SplitError::Malformed(_))));
    }
}
