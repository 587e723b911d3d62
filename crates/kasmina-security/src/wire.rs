//! Wire-level handling of the legacy form: find `annotations["signature"]` in the received bytes
//! and split it out without decoding (and so without re-encoding) the command; read
//! `annotations["key_id"]`, which stays in the signed bytes.

use leyline::prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::keys::{KEY_ID_ANNOTATION, SIGNATURE_ANNOTATION};

/// Field number of `AdaptationCommand.annotations`.
const ANNOTATIONS_FIELD: u32 = 20;

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
