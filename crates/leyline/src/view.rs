//! Borrowed views of Leyline messages: decoding without allocating (decisions D23).
//!
//! prost decodes into owned types: every string and map key is an allocation, every map a
//! `BTreeMap` of them. A view borrows the received bytes instead. [`View::parse`] checks the
//! whole message in one pass (wire types, lengths, UTF-8 of every string, nested messages
//! recursively) and fills the view's singular fields; repeated fields and maps are
//! [`Repeated`] and [`MapView`], which decode their elements as they are iterated (from bytes
//! already checked, so iteration cannot fail). Nothing is allocated, and an owned message is one
//! call away ([`View::to_message`]); [`Viewable::view`] parses the view of an owned type.
//!
//! `cargo xtask proto` generates one view per message beside the owned type (`SeedState` →
//! [`SeedStateView`]). Field names are prost's; enums are `i32` with the same typed accessors.
//!
//! One difference from prost, by design: a singular message field that occurs more than once in
//! the same message (protobuf merges the occurrences) is refused with
//! [`ViewError::RepeatedSingular`]; no Esper peer writes one, and prost's owned decoding still
//! accepts it.
//!
//! ```
//! use leyline::view::{SeedStateView, View};
//! use leyline::{Message, SeedLifecycleStage, SeedState};
//!
//! let owned = SeedState { seed_id: "seed-1".into(), metrics: [("alpha".to_owned(), 0.5f32)].into(), ..Default::default() };
//! let bytes = owned.encode_to_vec();
//! let view = SeedStateView::parse(&bytes).unwrap();
//! assert_eq!(view.seed_id, "seed-1");
//! assert_eq!(view.metrics.get("alpha"), Some(0.5));
//! assert_eq!(view.stage(), SeedLifecycleStage::SeedStageUnknown);
//! assert_eq!(view.to_message(), owned);
//! ```

use std::fmt;
use std::marker::PhantomData;

pub use crate::fast_generated::*;

/// Why bytes are not a valid Leyline message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The bytes end inside a field.
    #[error("truncated message")]
    Truncated,
    /// A varint longer than ten bytes.
    #[error("invalid varint")]
    InvalidVarint,
    /// A field key with number 0 or above 2^29 - 1, or a group wire type.
    #[error("invalid field key {key}")]
    InvalidKey {
        /// The key as read.
        key: u64,
    },
    /// A known field with the wrong wire type.
    #[error("field {field}: wire type {wire} where {expected} was expected")]
    WireType {
        /// The field number.
        field: u32,
        /// The wire type found.
        wire: u8,
        /// The wire type of the field's type.
        expected: u8,
    },
    /// A `string` field that is not UTF-8.
    #[error("field {field}: string is not UTF-8")]
    Utf8 {
        /// The field number.
        field: u32,
    },
    /// A singular message field that occurs more than once (which protobuf merges).
    #[error("field {field}: a singular message occurs more than once; decode the owned type to merge")]
    RepeatedSingular {
        /// The field number.
        field: u32,
    },
    /// A `google.protobuf.Struct` field that does not decode.
    #[error("field {field}: {detail}")]
    Foreign {
        /// The field number.
        field: u32,
        /// prost's error.
        detail: String,
    },
}

/// The wire types.
pub mod wire {
    /// Varint.
    pub const VARINT: u8 = 0;
    /// 8 bytes.
    pub const I64: u8 = 1;
    /// Length-delimited.
    pub const LEN: u8 = 2;
    /// 4 bytes.
    pub const I32: u8 = 5;
}

/// A borrowed, checked view of one message.
pub trait View<'a>: Sized + Default + Copy {
    /// The owned message.
    type Owned;

    /// Checks the whole message and reads its singular fields.
    ///
    /// # Errors
    /// [`ViewError`] when `bytes` is not a valid encoding of the message.
    fn parse(bytes: &'a [u8]) -> Result<Self, ViewError>;

    /// The owned message (allocates its strings and maps).
    fn to_message(&self) -> Self::Owned;
}

/// An owned message type with a generated view (every message of the contract).
///
/// ```
/// use leyline::view::{View, Viewable};
/// use leyline::{Message, SeedState};
///
/// let bytes = SeedState { seed_id: "seed-1".into(), ..Default::default() }.encode_to_vec();
/// assert_eq!(SeedState::view(&bytes).unwrap().seed_id, "seed-1");
/// ```
pub trait Viewable: Sized {
    /// The view type.
    type View<'a>: View<'a, Owned = Self>;

    /// Parses `bytes` as this message's view.
    ///
    /// # Errors
    /// [`ViewError`] when `bytes` is not a valid encoding of the message.
    fn view(bytes: &[u8]) -> Result<Self::View<'_>, ViewError> {
        <Self::View<'_> as View<'_>>::parse(bytes)
    }
}

/// A cursor over the fields of a message.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The next varint.
    ///
    /// # Errors
    /// Truncated or over-long.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, ViewError> {
        // One and two bytes inline: every key of a field numbered up to 2047, every length up to
        // 16 383.
        match *self.buf {
            [b, ref rest @ ..] if b < 0x80 => {
                self.buf = rest;
                Ok(u64::from(b))
            }
            [b0, b1, ref rest @ ..] if b1 < 0x80 => {
                self.buf = rest;
                Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
            }
            [_, ..] => self.varint_slow(),
            [] => Err(ViewError::Truncated),
        }
    }

    fn varint_slow(&mut self) -> Result<u64, ViewError> {
        let mut v = 0u64;
        for (i, &b) in self.buf.iter().take(10).enumerate() {
            // The tenth byte holds bit 63 only: more overflows a u64 (prost refuses it too).
            if i == 9 && b > 1 {
                return Err(ViewError::InvalidVarint);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        Err(if self.buf.len() < 10 { ViewError::Truncated } else { ViewError::InvalidVarint })
    }

    /// The next field's number and wire type; `None` at the end of the message.
    ///
    /// # Errors
    /// A malformed key.
    #[inline]
    pub fn key(&mut self) -> Result<Option<(u32, u8)>, ViewError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = (key & 7) as u8;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 || !matches!(wire, 0 | 1 | 2 | 5) {
            return Err(ViewError::InvalidKey { key });
        }
        Ok(Some((number as u32, wire)))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], ViewError> {
        if n > self.buf.len() {
            return Err(ViewError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The payload of a length-delimited field.
    ///
    /// # Errors
    /// Truncated.
    #[inline]
    pub fn len_delimited(&mut self) -> Result<&'a [u8], ViewError> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| ViewError::Truncated)?)
    }

    /// Four bytes.
    ///
    /// # Errors
    /// Truncated.
    #[inline]
    pub fn fixed32(&mut self) -> Result<[u8; 4], ViewError> {
        let b = self.take(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }

    /// Eight bytes.
    ///
    /// # Errors
    /// Truncated.
    #[inline]
    pub fn fixed64(&mut self) -> Result<[u8; 8], ViewError> {
        let b = self.take(8)?;
        Ok([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// Skips a field of wire type `wire`.
    ///
    /// # Errors
    /// Truncated.
    #[inline]
    pub fn skip(&mut self, wire: u8) -> Result<(), ViewError> {
        match wire {
            wire::VARINT => self.varint().map(drop),
            wire::I64 => self.take(8).map(drop),
            wire::LEN => self.len_delimited().map(drop),
            _ => self.take(4).map(drop),
        }
    }
}

/// How one value of a protobuf type is read (the element type of [`Repeated`] and [`MapView`]).
pub trait Kind<'a> {
    /// The value read.
    type Value: Copy + Default;
    /// The wire type of one value (`LEN` for strings, bytes and messages).
    const WIRE: u8;
    /// Reads one value whose key (field `field`) was just read.
    ///
    /// # Errors
    /// A malformed value.
    fn read(field: u32, r: &mut Reader<'a>) -> Result<Self::Value, ViewError>;
}

/// Reads the value of field `field` of kind `K`, checking its wire type.
///
/// # Errors
/// Wrong wire type, or a malformed value.
#[inline]
pub fn read<'a, K: Kind<'a>>(field: u32, wire: u8, r: &mut Reader<'a>) -> Result<K::Value, ViewError> {
    if wire != K::WIRE {
        return Err(ViewError::WireType { field, wire, expected: K::WIRE });
    }
    K::read(field, r)
}

/// The kinds of protobuf values (type-level tags for [`Kind`]).
pub mod kinds {
    use super::{Kind, Reader, View, ViewError, wire};

    macro_rules! varint_kind {
        ($(#[$m:meta])* $name:ident, $t:ty, |$v:ident| $conv:expr) => {
            $(#[$m])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl<'a> Kind<'a> for $name {
                type Value = $t;
                const WIRE: u8 = wire::VARINT;
                #[inline]
                fn read(_: u32, r: &mut Reader<'a>) -> Result<$t, ViewError> {
                    let $v = r.varint()?;
                    Ok($conv)
                }
            }
        };
    }
    varint_kind!(/// `int32` and enums.
        Int32, i32, |v| v as i32);
    varint_kind!(/// `int64`.
        Int64, i64, |v| v as i64);
    varint_kind!(/// `uint32`.
        Uint32, u32, |v| v as u32);
    varint_kind!(/// `uint64`.
        Uint64, u64, |v| v);
    varint_kind!(/// `bool`.
        Bool, bool, |v| v != 0);
    varint_kind!(/// `sint32`.
        Sint32, i32, |v| ((v >> 1) as i32) ^ -((v & 1) as i32));
    varint_kind!(/// `sint64`.
        Sint64, i64, |v| ((v >> 1) as i64) ^ -((v & 1) as i64));

    macro_rules! fixed_kind {
        ($(#[$m:meta])* $name:ident, $t:ty, $wire:expr, $read:ident) => {
            $(#[$m])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl<'a> Kind<'a> for $name {
                type Value = $t;
                const WIRE: u8 = $wire;
                #[inline]
                fn read(_: u32, r: &mut Reader<'a>) -> Result<$t, ViewError> {
                    Ok(<$t>::from_le_bytes(r.$read()?))
                }
            }
        };
    }
    fixed_kind!(/// `float`.
        Float, f32, wire::I32, fixed32);
    fixed_kind!(/// `double`.
        Double, f64, wire::I64, fixed64);
    fixed_kind!(/// `fixed32`.
        Fixed32, u32, wire::I32, fixed32);
    fixed_kind!(/// `fixed64`.
        Fixed64, u64, wire::I64, fixed64);
    fixed_kind!(/// `sfixed32`.
        Sfixed32, i32, wire::I32, fixed32);
    fixed_kind!(/// `sfixed64`.
        Sfixed64, i64, wire::I64, fixed64);

    /// `string`.
    #[derive(Debug, Clone, Copy)]
    pub struct Str;
    impl<'a> Kind<'a> for Str {
        type Value = &'a str;
        const WIRE: u8 = wire::LEN;
        #[inline]
        fn read(field: u32, r: &mut Reader<'a>) -> Result<&'a str, ViewError> {
            std::str::from_utf8(r.len_delimited()?).map_err(|_| ViewError::Utf8 { field })
        }
    }

    /// `bytes`.
    #[derive(Debug, Clone, Copy)]
    pub struct Bytes;
    impl<'a> Kind<'a> for Bytes {
        type Value = &'a [u8];
        const WIRE: u8 = wire::LEN;
        #[inline]
        fn read(_: u32, r: &mut Reader<'a>) -> Result<&'a [u8], ViewError> {
            r.len_delimited()
        }
    }

    /// A message, read as its view `V`.
    #[derive(Debug, Clone, Copy)]
    pub struct Msg<V>(std::marker::PhantomData<V>);
    impl<'a, V: View<'a>> Kind<'a> for Msg<V> {
        type Value = V;
        const WIRE: u8 = wire::LEN;
        #[inline]
        fn read(_: u32, r: &mut Reader<'a>) -> Result<V, ViewError> {
            V::parse(r.len_delimited()?)
        }
    }
}

/// The occurrences of a repeated field, decoded as they are iterated (packed or not, as
/// protobuf allows for scalars).
pub struct Repeated<'a, K: Kind<'a>> {
    /// The enclosing message's bytes (already checked).
    msg: &'a [u8],
    field: u32,
    len: usize,
    kind: PhantomData<K>,
}

impl<'a, K: Kind<'a>> Clone for Repeated<'a, K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<'a, K: Kind<'a>> Copy for Repeated<'a, K> {}

impl<'a, K: Kind<'a>> Default for Repeated<'a, K> {
    fn default() -> Self {
        Self { msg: &[], field: 0, len: 0, kind: PhantomData }
    }
}

impl<'a, K: Kind<'a>> Repeated<'a, K> {
    /// Records one occurrence of the field during [`View::parse`], checking it.
    ///
    /// # Errors
    /// A malformed element, or the wrong wire type.
    #[inline]
    pub fn check(&mut self, field: u32, wire: u8, r: &mut Reader<'a>) -> Result<(), ViewError> {
        if wire == K::WIRE {
            K::read(field, r)?;
            self.len += 1;
            return Ok(());
        }
        if wire != wire::LEN {
            return Err(ViewError::WireType { field, wire, expected: K::WIRE });
        }
        // A packed run of scalars.
        let mut packed = Reader::new(r.len_delimited()?);
        while !packed.buf.is_empty() {
            K::read(field, &mut packed)?;
            self.len += 1;
        }
        Ok(())
    }

    /// Points the view at the enclosing message's bytes, once they are checked.
    #[inline]
    pub fn finish(&mut self, msg: &'a [u8], field: u32) {
        if self.len > 0 {
            self.msg = msg;
            self.field = field;
        }
    }

    /// The number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements, in wire order.
    #[inline]
    pub fn iter(&self) -> RepeatedIter<'a, K> {
        RepeatedIter {
            outer: Reader::new(self.msg),
            packed: Reader::new(&[]),
            field: self.field,
            left: self.len,
            kind: PhantomData,
        }
    }
}

impl<'a, K: Kind<'a>> fmt::Debug for Repeated<'a, K>
where
    K::Value: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, K: Kind<'a>> PartialEq for Repeated<'a, K>
where
    K::Value: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<'a, K: Kind<'a>> IntoIterator for Repeated<'a, K> {
    type Item = K::Value;
    type IntoIter = RepeatedIter<'a, K>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator of [`Repeated`].
pub struct RepeatedIter<'a, K: Kind<'a>> {
    outer: Reader<'a>,
    packed: Reader<'a>,
    field: u32,
    left: usize,
    kind: PhantomData<K>,
}

impl<'a, K: Kind<'a>> fmt::Debug for RepeatedIter<'a, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepeatedIter").field("field", &self.field).field("left", &self.left).finish()
    }
}

impl<'a, K: Kind<'a>> RepeatedIter<'a, K> {
    // The bytes were checked by `parse`: an error here means they were not, and ends the
    // iteration rather than panicking.
    fn next_checked(&mut self) -> Result<Option<K::Value>, ViewError> {
        if self.left == 0 {
            return Ok(None);
        }
        if !self.packed.buf.is_empty() {
            self.left -= 1;
            return K::read(self.field, &mut self.packed).map(Some);
        }
        while let Some((number, wire)) = self.outer.key()? {
            if number != self.field {
                self.outer.skip(wire)?;
            } else if wire == K::WIRE {
                self.left -= 1;
                return K::read(self.field, &mut self.outer).map(Some);
            } else {
                self.packed = Reader::new(self.outer.len_delimited()?);
                if !self.packed.buf.is_empty() {
                    self.left -= 1;
                    return K::read(self.field, &mut self.packed).map(Some);
                }
            }
        }
        Ok(None)
    }
}

impl<'a, K: Kind<'a>> Iterator for RepeatedIter<'a, K> {
    type Item = K::Value;

    #[inline]
    fn next(&mut self) -> Option<K::Value> {
        let next = self.next_checked();
        debug_assert!(next.is_ok(), "iterating bytes View::parse accepted");
        next.ok().flatten()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a, K: Kind<'a>> ExactSizeIterator for RepeatedIter<'a, K> {}

/// A map field: its entries, decoded as they are iterated (wire order; a key that occurs twice
/// is yielded twice, and [`get`](Self::get) returns the last, as protobuf's decoding keeps).
pub struct MapView<'a, K: Kind<'a>, V: Kind<'a>> {
    entries: Repeated<'a, kinds::Bytes>,
    kind: PhantomData<(K, V)>,
}

impl<'a, K: Kind<'a>, V: Kind<'a>> Clone for MapView<'a, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<'a, K: Kind<'a>, V: Kind<'a>> Copy for MapView<'a, K, V> {}

impl<'a, K: Kind<'a>, V: Kind<'a>> Default for MapView<'a, K, V> {
    fn default() -> Self {
        Self { entries: Repeated::default(), kind: PhantomData }
    }
}

impl<'a, K: Kind<'a>, V: Kind<'a>> MapView<'a, K, V> {
    /// Records and checks one entry during [`View::parse`].
    ///
    /// # Errors
    /// A malformed entry, or the wrong wire type.
    #[inline]
    pub fn check(&mut self, field: u32, wire: u8, r: &mut Reader<'a>) -> Result<(), ViewError> {
        let entry = read::<kinds::Bytes>(field, wire, r)?;
        Self::entry(entry)?;
        self.entries.len += 1;
        Ok(())
    }

    #[inline]
    fn entry(bytes: &'a [u8]) -> Result<(K::Value, V::Value), ViewError> {
        let mut r = Reader::new(bytes);
        let (mut key, mut value) = (K::Value::default(), V::Value::default());
        while let Some((number, wire)) = r.key()? {
            match number {
                1 => key = read::<K>(1, wire, &mut r)?,
                2 => value = read::<V>(2, wire, &mut r)?,
                _ => r.skip(wire)?,
            }
        }
        Ok((key, value))
    }

    /// Points the view at the enclosing message's bytes, once they are checked.
    #[inline]
    pub fn finish(&mut self, msg: &'a [u8], field: u32) {
        self.entries.finish(msg, field);
    }

    /// The number of entries on the wire.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len
    }

    /// Whether there is none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.len == 0
    }

    /// The entries, in wire order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (K::Value, V::Value)> + use<'a, K, V> {
        self.entries.iter().filter_map(|e| Self::entry(e).ok())
    }

    /// The value of `key` (its last occurrence).
    pub fn get<Q>(&self, key: Q) -> Option<V::Value>
    where
        K::Value: PartialEq<Q>,
    {
        self.iter().filter(|(k, _)| *k == key).last().map(|(_, v)| v)
    }
}

impl<'a, K: Kind<'a>, V: Kind<'a>> fmt::Debug for MapView<'a, K, V>
where
    K::Value: fmt::Debug,
    V::Value: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a, K: Kind<'a>, V: Kind<'a>> PartialEq for MapView<'a, K, V>
where
    K::Value: PartialEq,
    V::Value: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

/// Checks and records a singular message field during [`View::parse`].
///
/// # Errors
/// A malformed message, or a second occurrence ([`ViewError::RepeatedSingular`]).
#[inline]
pub fn singular<'a, V: View<'a>>(
    slot: &mut Option<V>,
    field: u32,
    wire: u8,
    r: &mut Reader<'a>,
) -> Result<(), ViewError> {
    let v = read::<kinds::Msg<V>>(field, wire, r)?;
    if slot.is_some() {
        return Err(ViewError::RepeatedSingular { field });
    }
    *slot = Some(v);
    Ok(())
}

/// `google.protobuf.Timestamp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimestampView {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: i32,
}

/// `google.protobuf.Duration`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationView {
    /// Seconds.
    pub seconds: i64,
    /// Nanoseconds.
    pub nanos: i32,
}

macro_rules! seconds_nanos {
    ($view:ident, $owned:ty) => {
        impl<'a> View<'a> for $view {
            type Owned = $owned;

            fn parse(bytes: &'a [u8]) -> Result<Self, ViewError> {
                let mut v = Self::default();
                let mut r = Reader::new(bytes);
                while let Some((number, wire)) = r.key()? {
                    match number {
                        1 => v.seconds = read::<kinds::Int64>(1, wire, &mut r)?,
                        2 => v.nanos = read::<kinds::Int32>(2, wire, &mut r)?,
                        _ => r.skip(wire)?,
                    }
                }
                Ok(v)
            }

            fn to_message(&self) -> $owned {
                <$owned>::from(*self)
            }
        }

        impl From<$view> for $owned {
            fn from(v: $view) -> Self {
                Self { seconds: v.seconds, nanos: v.nanos }
            }
        }
    };
}
seconds_nanos!(TimestampView, pbjson_types::Timestamp);
seconds_nanos!(DurationView, pbjson_types::Duration);

/// A `google.protobuf.Struct` field: its bytes, checked by decoding it with prost when the
/// enclosing view is parsed (the one place a view allocates: a `Struct` is a tree of maps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StructView<'a> {
    /// The encoded `Struct`.
    pub bytes: &'a [u8],
}

impl<'a> View<'a> for StructView<'a> {
    type Owned = pbjson_types::Struct;

    fn parse(bytes: &'a [u8]) -> Result<Self, ViewError> {
        use prost::Message;
        pbjson_types::Struct::decode(bytes).map_err(|e| ViewError::Foreign { field: 0, detail: e.to_string() })?;
        Ok(Self { bytes })
    }

    /// The owned `Struct` (empty if the bytes no longer decode, which `parse` rules out).
    fn to_message(&self) -> pbjson_types::Struct {
        use prost::Message;
        pbjson_types::Struct::decode(self.bytes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_prost() {
        for v in [0u64, 1, 127, 128, 300, 16_384, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(v, &mut buf);
            let mut r = Reader::new(&buf);
            assert_eq!(r.varint(), Ok(v));
            assert!(r.buf.is_empty());
            assert_eq!(Reader::new(&buf[..buf.len() - 1]).varint(), Err(ViewError::Truncated));
        }
        assert_eq!(Reader::new(&[0xff; 11]).varint(), Err(ViewError::InvalidVarint));
        // Ten bytes whose last carries more than bit 63 (found by the fuzzer).
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0x5e];
        assert_eq!(Reader::new(&over).varint(), Err(ViewError::InvalidVarint));
        assert!(prost::encoding::decode_varint(&mut over.as_slice()).is_err());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(matches!(Reader::new(&[0x00]).key(), Err(ViewError::InvalidKey { .. })));
        assert!(matches!(Reader::new(&[0x0b]).key(), Err(ViewError::InvalidKey { .. }))); // group
        assert_eq!(Reader::new(&[]).key(), Ok(None));
    }
}

#[cfg(test)]
mod oracle_tests {
    //! Views against prost's owned decoding: the same message, and no bytes a view accepts that
    //! prost refuses.

    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::strategies::*;
    use crate::{AdaptationCommand, SystemStatePacket, TelemetryPacket};

    fn same<'a, V: View<'a>, M: Message + Default + PartialEq + fmt::Debug>(bytes: &'a [u8], to: impl Fn(&V) -> M) {
        let owned = M::decode(bytes);
        match V::parse(bytes) {
            // Compared as bytes: random bytes may hold NaNs.
            Ok(view) => assert_eq!(
                Ok(to(&view).encode_to_vec()),
                owned.map(|m| m.encode_to_vec()).map_err(|e| e.to_string()),
                "a view accepts only what prost accepts, and agrees"
            ),
            // Views refuse merging a repeated singular message and group-encoded fields; prost
            // accepts both. Anything else they refuse, prost refuses too.
            Err(ViewError::RepeatedSingular { .. } | ViewError::InvalidKey { .. }) => {}
            Err(e) => assert!(owned.is_err(), "view refused ({e}) what prost decodes"),
        }
    }

    proptest! {
        #[test]
        fn system_state_packets(m in system_state_packet()) {
            let bytes = crate::encode_peer(&m);
            let view = SystemStatePacketView::parse(&bytes).unwrap();
            prop_assert_eq!(view.to_message(), m.clone());
            prop_assert_eq!(view.seed_states.len(), m.seed_states.len());
            let plain = m.encode_to_vec();
            prop_assert_eq!(SystemStatePacketView::parse(&plain).unwrap().to_message(), m);
        }

        #[test]
        fn commands(m in adaptation_command()) {
            let bytes = m.encode_to_vec();
            prop_assert_eq!(AdaptationCommandView::parse(&bytes).unwrap().to_message(), m);
        }

        #[test]
        fn telemetry_packets(m in telemetry_packet()) {
            let bytes = crate::encode_peer(&m);
            prop_assert_eq!(TelemetryPacketView::parse(&bytes).unwrap().to_message(), m);
        }

        #[test]
        fn corrupted_bytes(m in system_state_packet(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = m.encode_to_vec();
            if !bytes.is_empty() {
                let i = flip.index(bytes.len());
                bytes[i] = byte;
                bytes.truncate(cut.index(bytes.len() + 1).max(i));
            }
            same::<SystemStatePacketView<'_>, SystemStatePacket>(&bytes, SystemStatePacketView::to_message);
            same::<AdaptationCommandView<'_>, AdaptationCommand>(&bytes, AdaptationCommandView::to_message);
            same::<TelemetryPacketView<'_>, TelemetryPacket>(&bytes, TelemetryPacketView::to_message);
        }

        #[test]
        fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            same::<SystemStatePacketView<'_>, SystemStatePacket>(&bytes, SystemStatePacketView::to_message);
            same::<AdaptationCommandView<'_>, AdaptationCommand>(&bytes, AdaptationCommandView::to_message);
            same::<TelemetryPacketView<'_>, TelemetryPacket>(&bytes, TelemetryPacketView::to_message);
        }
    }

    #[test]
    fn packed_and_unpacked_repeated_scalars_both_read() {
        // Field 1 packed (1, 2, 3), then once unpacked (4).
        let packed = [0x0a, 3, 1, 2, 3, 0x08, 4];
        let mut r = Reader::new(&packed);
        let mut rep: Repeated<'_, kinds::Uint32> = Repeated::default();
        while let Some((n, wire)) = r.key().unwrap() {
            rep.check(n, wire, &mut r).unwrap();
        }
        rep.finish(&packed, 1);
        assert_eq!(rep.iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(rep.len(), 4);
    }

    #[test]
    fn a_second_occurrence_of_a_singular_message_is_refused_with_its_field() {
        let bytes = [0x32, 0, 0x32, 0]; // issued_at twice
        assert_eq!(AdaptationCommandView::parse(&bytes), Err(ViewError::RepeatedSingular { field: 6 }));
        assert!(AdaptationCommand::decode(bytes.as_slice()).is_ok());
    }

    #[test]
    fn the_last_oneof_member_wins() {
        use crate::{CommandCircuitBreaker, CommandSeedOperation, adaptation_command::Payload};
        let mut bytes = AdaptationCommand {
            payload: Some(Payload::SeedOperation(CommandSeedOperation::default())),
            ..Default::default()
        }
        .encode_to_vec();
        bytes.extend(
            AdaptationCommand {
                payload: Some(Payload::CircuitBreaker(CommandCircuitBreaker {
                    desired_state: 1,
                    ..Default::default()
                })),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        let view = AdaptationCommandView::parse(&bytes).unwrap();
        assert!(view.seed_operation.is_none());
        assert_eq!(view.to_message(), AdaptationCommand::decode(bytes.as_slice()).unwrap());
    }
}
