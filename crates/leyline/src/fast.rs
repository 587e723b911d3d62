//! A one-pass Leyline encoder, generated beside prost's (decisions D23).
//!
//! prost encodes forwards, so every nested message's length is computed before the message is
//! written: a `SeedState` inside a `SystemStatePacket` is walked twice, its map entries three
//! times. [`Encoder`] writes backwards instead, as upb does: the last field first, each nested
//! message before its length, which is then known. One walk, one buffer reused across calls.
//!
//! The bytes are prost's, byte for byte ([`Encoder::encode`]), or the peer's
//! ([`Encoder::encode_peer`], what [`crate::encode_peer`] returns): map entries with both key
//! and value, in upb's key order. `cargo xtask proto` generates a [`FastEncode`] impl for every
//! message of the contract; tests check both forms against prost and the wire-level rewrite.
//!
//! ```
//! use leyline::fast::Encoder;
//! use leyline::{Message, SeedState};
//!
//! let state = SeedState { seed_id: "seed-1".into(), metrics: [("alpha".to_owned(), 0.0f32)].into(), ..Default::default() };
//! let mut encoder = Encoder::new();
//! assert_eq!(encoder.encode(&state), state.encode_to_vec().as_slice());
//! assert_eq!(encoder.encode_peer(&state).len(), state.encoded_len() + 5); // the explicit 0.0
//! ```

use std::collections::BTreeMap;

/// A message the one-pass encoder can write (every message of the contract).
pub trait FastEncode {
    /// Writes the message's fields, last first, to `w` (`peer`: the peer's form of maps).
    fn encode_rev(&self, w: &mut RevWriter, peer: bool);
}

/// Encodes `msg` exactly as Esper's Python peer does (deterministic map order, map entries
/// with both key and value).
///
/// ```
/// use leyline::{Message, SeedState};
///
/// let state = SeedState { metrics: [("alpha".to_owned(), 0.0f32)].into(), ..Default::default() };
/// let peer = leyline::encode_peer(&state);
/// assert_eq!(peer.len(), state.encoded_len() + 5); // the explicit 0.0 value
/// assert_eq!(SeedState::decode(peer.as_slice()).unwrap(), state);
/// ```
pub fn encode_peer<M: FastEncode>(msg: &M) -> Vec<u8> {
    thread_local! {
        static ENCODER: std::cell::RefCell<Encoder> = std::cell::RefCell::new(Encoder::new());
    }
    ENCODER.with(|e| match e.try_borrow_mut() {
        Ok(mut e) => e.encode_peer(msg).to_vec(),
        // Re-entered (cannot happen: encoding calls no user code); a fresh encoder then.
        Err(_) => Encoder::new().encode_peer(msg).to_vec(),
    })
}

/// A reusable encoder: the returned bytes borrow its buffer until the next call.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    w: RevWriter,
}

impl Encoder {
    /// An encoder with an empty buffer (it grows to the largest message encoded).
    pub fn new() -> Self {
        Self::default()
    }

    /// prost's bytes for `msg` (what `msg.encode_to_vec()` returns).
    pub fn encode<M: FastEncode>(&mut self, msg: &M) -> &[u8] {
        self.w.clear();
        msg.encode_rev(&mut self.w, false);
        self.w.as_slice()
    }

    /// The peer's bytes for `msg` (what [`crate::encode_peer`] returns).
    pub fn encode_peer<M: FastEncode>(&mut self, msg: &M) -> &[u8] {
        self.w.clear();
        msg.encode_rev(&mut self.w, true);
        self.w.as_slice()
    }
}

/// A buffer filled from its end towards its start.
#[derive(Debug, Default, Clone)]
pub struct RevWriter {
    buf: Vec<u8>,
    /// The written bytes are `buf[pos..]`.
    pos: usize,
}

/// Bytes a varint of `v` takes.
#[inline]
const fn varint_len(v: u64) -> usize {
    ((64 - (v | 1).leading_zeros() as usize) * 9 + 64) / 64
}

impl RevWriter {
    /// Forgets what was written, keeping the buffer.
    #[inline]
    pub fn clear(&mut self) {
        self.pos = self.buf.len();
    }

    /// Bytes written so far.
    #[inline]
    pub fn written(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes written, in wire order.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    #[inline]
    fn room(&mut self, n: usize) {
        if self.pos < n {
            self.grow(n);
        }
    }

    #[cold]
    fn grow(&mut self, n: usize) {
        let used = self.written();
        let len = (self.buf.len() * 2).max(used + n + 64).max(256);
        let mut buf = vec![0u8; len];
        buf[len - used..].copy_from_slice(&self.buf[self.pos..]);
        self.buf = buf;
        self.pos = len - used;
    }

    /// Prepends raw bytes.
    #[inline]
    pub fn put_slice(&mut self, s: &[u8]) {
        self.room(s.len());
        self.raw_slice(s);
    }

    /// Prepends a varint.
    #[inline]
    pub fn put_varint(&mut self, v: u64) {
        self.room(10);
        self.raw_varint(v);
    }

    // The `raw_` writers assume `room` was made for what they write: a field writer reserves
    // once for its key, length and payload instead of once per part.
    #[inline]
    fn raw_slice(&mut self, s: &[u8]) {
        self.pos -= s.len();
        self.buf[self.pos..self.pos + s.len()].copy_from_slice(s);
    }

    #[inline]
    fn raw_varint(&mut self, mut v: u64) {
        if v < 0x80 {
            self.pos -= 1;
            self.buf[self.pos] = v as u8;
            return;
        }
        let n = varint_len(v);
        self.pos -= n;
        let out = &mut self.buf[self.pos..self.pos + n];
        for b in &mut out[..n - 1] {
            *b = (v as u8) | 0x80;
            v >>= 7;
        }
        out[n - 1] = v as u8;
    }

    /// Prepends a field key (`number << 3 | wire type`, precomputed by the generator).
    #[inline]
    pub fn key(&mut self, key: u32) {
        self.put_varint(u64::from(key));
    }

    /// Prepends the key and length of a length-delimited field whose payload was written since
    /// `written` was [`written`](Self::written).
    #[inline]
    pub fn len_prefix(&mut self, key: u32, written: usize) {
        let n = self.written() - written;
        self.room(15);
        self.raw_varint(n as u64);
        self.raw_varint(u64::from(key));
    }

    /// A varint field (`int32`, `int64`, `uint32`, `uint64`, `bool`, enums; negative `int32`
    /// values sign-extended to ten bytes, as protobuf requires).
    #[inline]
    pub fn varint(&mut self, key: u32, v: u64) {
        self.room(15);
        self.raw_varint(v);
        self.raw_varint(u64::from(key));
    }

    /// A `sint32`/`sint64` field (zigzag).
    #[inline]
    pub fn sint(&mut self, key: u32, v: i64) {
        self.varint(key, ((v << 1) ^ (v >> 63)) as u64);
    }

    /// A 4-byte field (`float`, `fixed32`, `sfixed32`), given its little-endian bytes.
    #[inline]
    pub fn fixed32(&mut self, key: u32, v: [u8; 4]) {
        self.room(9);
        self.raw_slice(&v);
        self.raw_varint(u64::from(key));
    }

    /// An 8-byte field (`double`, `fixed64`, `sfixed64`), given its little-endian bytes.
    #[inline]
    pub fn fixed64(&mut self, key: u32, v: [u8; 8]) {
        self.room(13);
        self.raw_slice(&v);
        self.raw_varint(u64::from(key));
    }

    /// A `string` or `bytes` field.
    #[inline]
    pub fn bytes(&mut self, key: u32, v: &[u8]) {
        self.room(v.len() + 15);
        self.raw_slice(v);
        self.raw_varint(v.len() as u64);
        self.raw_varint(u64::from(key));
    }

    /// A nested message field.
    #[inline]
    pub fn message<M: FastEncode>(&mut self, key: u32, m: &M, peer: bool) {
        let start = self.written();
        m.encode_rev(self, peer);
        self.len_prefix(key, start);
    }

    /// A message field of a type the generator does not know (`google.protobuf.Struct`):
    /// prost's bytes, or in the peer's form the wire-level rewrite of [`crate::encode_peer`].
    pub fn foreign_message<M: prost::Message>(&mut self, key: u32, m: &M, full_name: &str, peer: bool) {
        let bytes = m.encode_to_vec();
        if peer {
            self.bytes(key, &crate::peer::rewrite_bytes(&bytes, full_name));
        } else {
            self.bytes(key, &bytes);
        }
    }
}

/// The order in which the peer writes a map's keys.
pub trait PeerKeyOrder: Ord {
    /// Whether the map's own (`BTreeMap`) order is already the peer's.
    fn btree_order_is_peer<V>(map: &BTreeMap<Self, V>) -> bool
    where
        Self: Sized;
    /// Compares two keys in the peer's order.
    fn peer_cmp(&self, other: &Self) -> std::cmp::Ordering;
}

impl PeerKeyOrder for String {
    /// upb orders string keys bytewise over their common prefix, then the longer first: the
    /// orders differ only where one key is a prefix of the next.
    fn btree_order_is_peer<V>(map: &BTreeMap<Self, V>) -> bool {
        let mut keys = map.keys();
        let Some(mut prev) = keys.next() else { return true };
        for k in keys {
            if k.as_bytes().starts_with(prev.as_bytes()) {
                return false;
            }
            prev = k;
        }
        true
    }

    fn peer_cmp(&self, other: &Self) -> std::cmp::Ordering {
        crate::peer::upb_string_order(self.as_bytes(), other.as_bytes())
    }
}

macro_rules! numeric_keys {
    ($($t:ty),*) => {$(
        impl PeerKeyOrder for $t {
            fn btree_order_is_peer<V>(_: &BTreeMap<Self, V>) -> bool {
                true
            }
            fn peer_cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.cmp(other)
            }
        }
    )*};
}
numeric_keys!(i32, i64, u32, u64, bool);

/// Writes a map field: one length-delimited entry per key, last first; `entry` writes one
/// entry's value then key (skipping defaults unless `peer`). In the peer's form the entries go
/// in upb's key order.
#[inline]
pub fn map<K: PeerKeyOrder, V>(
    w: &mut RevWriter,
    key: u32,
    map: &BTreeMap<K, V>,
    peer: bool,
    entry: impl Fn(&mut RevWriter, &K, &V),
) {
    if !peer || K::btree_order_is_peer(map) {
        for (k, v) in map.iter().rev() {
            let start = w.written();
            entry(w, k, v);
            w.len_prefix(key, start);
        }
        return;
    }
    let mut sorted: Vec<(&K, &V)> = map.iter().collect();
    sorted.sort_by(|a, b| a.0.peer_cmp(b.0));
    for (k, v) in sorted.into_iter().rev() {
        let start = w.written();
        entry(w, k, v);
        w.len_prefix(key, start);
    }
}

/// Writes a packed repeated scalar field (nothing when empty): `item` prepends one value.
#[inline]
pub fn packed<T: Copy>(w: &mut RevWriter, key: u32, items: &[T], item: impl Fn(&mut RevWriter, T)) {
    if items.is_empty() {
        return;
    }
    let start = w.written();
    for &v in items.iter().rev() {
        item(w, v);
    }
    w.len_prefix(key, start);
}

/// `google.protobuf.Timestamp` and `Duration` (seconds = 1, nanos = 2).
macro_rules! seconds_nanos {
    ($($t:ty),*) => {$(
        impl FastEncode for $t {
            #[inline]
            fn encode_rev(&self, w: &mut RevWriter, _peer: bool) {
                if self.nanos != 0 {
                    w.varint(0x10, self.nanos as i64 as u64);
                }
                if self.seconds != 0 {
                    w.varint(0x08, self.seconds as u64);
                }
            }
        }
    )*};
}
seconds_nanos!(pbjson_types::Timestamp, pbjson_types::Duration);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        for (v, n) in [(0u64, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (u64::MAX, 10)] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut w = RevWriter::default();
            w.put_varint(v);
            let mut expected = Vec::new();
            prost::encoding::encode_varint(v, &mut expected);
            assert_eq!(w.as_slice(), expected.as_slice());
        }
    }

    #[test]
    fn the_buffer_grows_keeping_what_was_written() {
        let mut w = RevWriter::default();
        let chunk: Vec<u8> = (0..=255).collect();
        for _ in 0..10 {
            w.put_slice(&chunk);
        }
        assert_eq!(w.written(), 2560);
        assert!(w.as_slice().chunks(256).all(|c| c == chunk.as_slice()));
        w.clear();
        assert_eq!(w.written(), 0);
    }
}

#[cfg(test)]
mod oracle_tests {
    //! The generated encoder against prost (plain form) and the wire-level rewrite (peer form),
    //! on random messages whose maps have prefix keys, default values and negative numbers.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use prost::Message;

    use super::Encoder;
    use crate::peer::encode_peer_rewrite;
    use crate::strategies::*;
    use crate::*;

    fn check<M: super::FastEncode + prost::Message + prost::Name>(msg: &M) {
        let mut e = Encoder::new();
        assert_eq!(e.encode(msg), msg.encode_to_vec().as_slice(), "plain form = prost");
        assert_eq!(e.encode_peer(msg), encode_peer_rewrite(msg).as_slice(), "peer form = rewrite");
    }

    proptest! {
        #[test]
        fn system_state_packets(m in system_state_packet()) { check(&m); }
        #[test]
        fn commands(m in adaptation_command()) { check(&m); }
        #[test]
        fn telemetry_packets(m in telemetry_packet()) { check(&m); }
    }

    #[test]
    fn negative_zero_is_written_as_the_peer_writes_it() {
        // upb 6.33: SeedState(gradient_norm=-0.0, metrics={"a": -0.0, "b": 0.0}), deterministic.
        let state = SeedState {
            gradient_norm: -0.0,
            metrics: BTreeMap::from([("a".to_owned(), -0.0), ("b".to_owned(), 0.0)]),
            ..Default::default()
        };
        let upb = [
            0x1d, 0, 0, 0, 0x80, 0x32, 8, 0x0a, 1, b'a', 0x15, 0, 0, 0, 0x80, 0x32, 8, 0x0a, 1, b'b', 0x15, 0, 0, 0, 0,
        ];
        assert_eq!(Encoder::new().encode_peer(&state), upb.as_slice());
        assert_eq!(Encoder::new().encode(&state), state.encode_to_vec().as_slice());
    }

    #[test]
    fn a_struct_payload_and_a_map_of_messages() {
        let rollback = wkt::Struct {
            fields: [("z", 1.0), ("a", 2.0), ("ab", 3.0)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), wkt::Value { kind: Some(wkt::value::Kind::NumberValue(v)) }))
                .collect(),
        };
        let cmd = AdaptationCommand {
            payload: Some(adaptation_command::Payload::RollbackPayload(rollback)),
            ..Default::default()
        };
        assert_eq!(Encoder::new().encode_peer(&cmd), encode_peer_rewrite(&cmd).as_slice());
        let bp = BlueprintDescriptor {
            allowed_parameters: BTreeMap::from([
                ("a".to_owned(), BlueprintParameterBounds::default()),
                ("ab".to_owned(), BlueprintParameterBounds { min_value: 1.0, ..Default::default() }),
            ]),
            ..Default::default()
        };
        check(&bp);
    }
}
