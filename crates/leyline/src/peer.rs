//! Peer-compatible encoding: the exact bytes Esper's Python peer (protobuf's upb) writes.
//!
//! prost and upb both write valid protobuf, and each decodes the other. They differ in maps:
//! inside a map entry, upb always writes the key and the value, while prost leaves out a key or
//! value equal to its default (`"alpha": 0.0` costs 5 more bytes in upb); and upb's deterministic
//! order of string keys is not `BTreeMap`'s: a key that is a prefix of another comes after it
//! (`"alpha_target"` before `"alpha"`), while a `google.protobuf.Struct` (a `HashMap` in
//! pbjson-types) has no fixed order at all in prost. Where the bytes themselves matter — golden
//! vectors, signatures a peer recomputes over re-encoded bytes, size budgets compared with the
//! peer's — use [`crate::encode_peer`]. It runs the generated one-pass encoder (`leyline::fast`) in
//! the peer's form. The wire-level rewrite it replaced (prost's bytes, every map rewritten,
//! driven by a schema table generated from `proto/`) stays as the tests' oracle and for
//! `google.protobuf.Struct` fields.

use std::cmp::Ordering;

use prost::bytes::Buf;
use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};
#[cfg(test)]
use prost::{Message, Name};

use crate::generated::schema::{FieldKind, MessageSchema, SCHEMA, WireKind};

/// The wire-level rewrite `encode_peer` used before the one-pass encoder (decisions D23): prost's
/// bytes, every map rewritten in the peer's form. Kept as the independent oracle the tests
/// compare the generated encoder with, and for `Struct` fields inside the generated one.
#[cfg(test)]
pub(crate) fn encode_peer_rewrite<M: Message + Name>(msg: &M) -> Vec<u8> {
    rewrite_bytes(&msg.encode_to_vec(), &M::full_name())
}

/// The peer's form of `bytes`, an encoded message `full_name` (the bytes themselves if they do
/// not parse, which prost's own output always does).
pub(crate) fn rewrite_bytes(bytes: &[u8], full_name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    match rewrite(bytes, full_name, &mut out) {
        Ok(()) => out,
        Err(_) => bytes.to_vec(),
    }
}

/// Bytes that do not parse as protobuf (never produced by prost itself).
#[derive(Debug)]
struct Malformed;

impl From<prost::DecodeError> for Malformed {
    fn from(_: prost::DecodeError) -> Self {
        Malformed
    }
}

fn schema(name: &str) -> Option<&'static MessageSchema> {
    SCHEMA.binary_search_by(|m| m.name.cmp(name)).ok().map(|i| &SCHEMA[i])
}

fn rewrite(mut buf: &[u8], message: &str, out: &mut Vec<u8>) -> Result<(), Malformed> {
    let Some(schema) = schema(message) else {
        out.extend_from_slice(buf);
        return Ok(());
    };
    // The entries of the map field being read (prost writes them together), with their sort
    // key, written in upb's order when the field ends.
    let mut entries: Vec<(Option<Vec<u8>>, Vec<u8>)> = Vec::new();
    let mut map_tag = 0;
    while buf.has_remaining() {
        let start = buf;
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag != map_tag {
            write_entries(map_tag, &mut entries, out);
        }
        let kind = schema.fields.iter().find(|f| f.number == tag).map(|f| &f.kind);
        match (wire_type, kind) {
            (WireType::LengthDelimited, Some(FieldKind::Map { key, value, value_message })) => {
                let mut entry = Vec::new();
                rewrite_entry(take_len(&mut buf)?, *key, *value, *value_message, &mut entry)?;
                let sort_key = matches!(key, WireKind::Len).then(|| entry_key(&entry)).transpose()?;
                entries.push((sort_key.map(<[u8]>::to_vec), entry));
                map_tag = tag;
            }
            (WireType::LengthDelimited, Some(FieldKind::Message(name))) => {
                let payload = take_len(&mut buf)?;
                let mut inner = Vec::with_capacity(payload.len() + 8);
                rewrite(payload, name, &mut inner)?;
                write_len(tag, &inner, out);
            }
            _ => {
                skip(wire_type, &mut buf)?;
                out.extend_from_slice(&start[..start.len() - buf.len()]);
            }
        }
    }
    write_entries(map_tag, &mut entries, out);
    Ok(())
}

/// Writes the collected entries of map field `tag` in upb's deterministic order (string keys
/// by bytes, a key after the longer keys it is a prefix of; other keys as prost wrote them).
fn write_entries(tag: u32, entries: &mut Vec<(Option<Vec<u8>>, Vec<u8>)>, out: &mut Vec<u8>) {
    entries.sort_by(|(a, _), (b, _)| match (a, b) {
        (Some(a), Some(b)) => upb_string_order(a, b),
        _ => Ordering::Equal,
    });
    for (_, entry) in entries.drain(..) {
        write_len(tag, &entry, out);
    }
}

/// upb's order of string map keys: bytewise over the common prefix, then the longer first.
pub(crate) fn upb_string_order(a: &[u8], b: &[u8]) -> Ordering {
    let common = a.len().min(b.len());
    a[..common].cmp(&b[..common]).then(b.len().cmp(&a.len()))
}

/// The key bytes of a rewritten map entry (its first field, a length-delimited key).
fn entry_key(mut entry: &[u8]) -> Result<&[u8], Malformed> {
    match decode_key(&mut entry)? {
        (1, WireType::LengthDelimited) => take_len(&mut entry),
        _ => Err(Malformed),
    }
}

fn write_len(tag: u32, payload: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

fn rewrite_entry(
    mut buf: &[u8],
    key_kind: WireKind,
    value_kind: WireKind,
    value_message: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    let mut key: Option<&[u8]> = None;
    let mut value: Option<(WireType, &[u8])> = None;
    while buf.has_remaining() {
        let start = buf;
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            1 => {
                skip(wire_type, &mut buf)?;
                key = Some(&start[..start.len() - buf.len()]);
            }
            2 if wire_type == WireType::LengthDelimited && value_message.is_some() => {
                value = Some((wire_type, take_len(&mut buf)?));
            }
            2 => {
                skip(wire_type, &mut buf)?;
                value = Some((wire_type, &start[..start.len() - buf.len()]));
            }
            _ => skip(wire_type, &mut buf)?,
        }
    }
    match key {
        Some(raw) => out.extend_from_slice(raw),
        None => write_default(1, key_kind, out),
    }
    match (value, value_message) {
        (Some((_, payload)), Some(name)) => {
            let mut inner = Vec::with_capacity(payload.len());
            rewrite(payload, name, &mut inner)?;
            encode_key(2, WireType::LengthDelimited, out);
            encode_varint(inner.len() as u64, out);
            out.extend_from_slice(&inner);
        }
        (Some((_, raw)), None) => out.extend_from_slice(raw),
        (None, _) => write_default(2, value_kind, out),
    }
    Ok(())
}

fn write_default(tag: u32, kind: WireKind, out: &mut Vec<u8>) {
    match kind {
        WireKind::Varint => {
            encode_key(tag, WireType::Varint, out);
            out.push(0);
        }
        WireKind::Fixed32 => {
            encode_key(tag, WireType::ThirtyTwoBit, out);
            out.extend_from_slice(&[0; 4]);
        }
        WireKind::Fixed64 => {
            encode_key(tag, WireType::SixtyFourBit, out);
            out.extend_from_slice(&[0; 8]);
        }
        WireKind::Len => {
            encode_key(tag, WireType::LengthDelimited, out);
            out.push(0);
        }
    }
}

fn take_len<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Malformed> {
    let len = usize::try_from(decode_varint(buf)?).map_err(|_| Malformed)?;
    if len > buf.len() {
        return Err(Malformed);
    }
    let (payload, rest) = buf.split_at(len);
    *buf = rest;
    Ok(payload)
}

fn skip(wire_type: WireType, buf: &mut &[u8]) -> Result<(), Malformed> {
    let n = match wire_type {
        WireType::Varint => {
            decode_varint(buf)?;
            0
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => {
            take_len(buf)?;
            0
        }
        WireType::StartGroup | WireType::EndGroup => return Err(Malformed),
    };
    if n > buf.len() {
        return Err(Malformed);
    }
    *buf = &buf[n..];
    Ok(())
}
