//! Wire-level handling of the legacy form: find `annotations["signature"]` in the received bytes
//! and split it out without decoding (and so without re-encoding) the command.

use leyline::prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::keys::SIGNATURE_ANNOTATION;

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
}

/// Why no signature could be split out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// No `signature` entry (or an empty one).
    Missing,
    /// The bytes are not a well-formed message, or carry two `signature` entries.
    Malformed(String),
}

/// Walks the top-level fields of `bytes` and splits out the one `annotations` entry whose key is
/// `signature`; every other byte is kept as received.
pub(crate) fn split_legacy(bytes: &[u8]) -> Result<LegacySplit<'_>, SplitError> {
    let malformed = |e: leyline::DecodeError| SplitError::Malformed(e.to_string());
    let mut buf = bytes;
    let mut found: Option<(usize, usize, &str)> = None;
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
            if let Some(signature) = signature_entry(entry)? {
                if found.is_some() {
                    return Err(SplitError::Malformed("two signature annotations".to_owned()));
                }
                found = Some((start, bytes.len() - buf.len(), signature));
            }
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default()).map_err(malformed)?;
        }
    }
    match found {
        Some((start, end, signature)) if !signature.is_empty() => {
            Ok(LegacySplit { signature, before: &bytes[..start], after: &bytes[end..] })
        }
        _ => Err(SplitError::Missing),
    }
}

/// The value of a map entry (`key = 1`, `value = 2`, last occurrence wins) when its key is
/// `signature`.
fn signature_entry(entry: &[u8]) -> Result<Option<&str>, SplitError> {
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
    if key != SIGNATURE_ANNOTATION.as_bytes() {
        return Ok(None);
    }
    std::str::from_utf8(value)
        .map(Some)
        .map_err(|_| SplitError::Malformed("signature annotation is not UTF-8".to_owned()))
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
            assert_eq!([split.before, split.after].concat(), without);
        }
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
