//! [`NonceKey`]: a nonce as the ledger stores it, inline when short (no allocation per command),
//! with its hash computed once.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// Longest nonce stored inline, in bytes: a UUID (36 characters, the ids Esper's peers send) with
/// room to spare.
pub(crate) const INLINE_LEN: usize = 46;

/// A nonce (command id) as the ledger's table holds it: up to [`INLINE_LEN`] bytes
/// inline, so registering one allocates nothing and copying it is a `memcpy`; a longer one in a
/// shared `Arc<str>`.
///
/// It carries its hash: foldhash of its bytes under the ledger's random seed ([`NonceHasher`]),
/// computed once when the key is made; the ledger's table finds entries by it. Keys are equal
/// when their bytes are (their hashes are then equal too, under one [`NonceHasher`]).
#[derive(Clone)]
pub(crate) struct NonceKey {
    hash: u64,
    text: Text,
}

#[derive(Clone)]
enum Text {
    /// `bytes[..len]` is the nonce.
    Inline { len: u8, bytes: [u8; INLINE_LEN] },
    /// A nonce longer than [`INLINE_LEN`].
    Shared(Arc<str>),
}

/// Hashes nonces for one ledger: foldhash under a random seed of its own. Not SipHash: a nonce
/// reaches the ledger only after its command's signature checked, so whoever could choose
/// colliding nonces holds a signing key already (decisions D25).
#[derive(Debug, Default)]
pub(crate) struct NonceHasher(foldhash::fast::RandomState);

impl NonceHasher {
    /// The key of `nonce`.
    pub(crate) fn key(&self, nonce: &str) -> NonceKey {
        let src = nonce.as_bytes();
        let text = match u8::try_from(src.len()) {
            Ok(len) if src.len() <= INLINE_LEN => {
                let mut bytes = [0u8; INLINE_LEN];
                bytes[..src.len()].copy_from_slice(src);
                Text::Inline { len, bytes }
            }
            _ => Text::Shared(Arc::from(nonce)),
        };
        let mut hasher = self.0.build_hasher();
        hasher.write(src);
        NonceKey { hash: hasher.finish(), text }
    }
}

impl NonceKey {
    /// The hash computed when the key was made.
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// The same nonce under another hash (to force collisions in tests).
    #[cfg(test)]
    pub(crate) fn with_hash(self, hash: u64) -> Self {
        Self { hash, ..self }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.text {
            Text::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Text::Shared(nonce) => nonce.as_bytes(),
        }
    }

    /// The nonce as text. Always valid UTF-8 (every key is made from a `&str`), so no byte is
    /// ever replaced.
    pub(crate) fn to_text(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl PartialEq for NonceKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.as_bytes() == other.as_bytes()
    }
}

impl Eq for NonceKey {}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_text(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_nonces_are_inline_long_ones_shared_and_equal_bytes_make_equal_keys() {
        let hasher = NonceHasher::default();
        let uuid = "00000000-0000-4000-8000-000000000001";
        let long = "x".repeat(INLINE_LEN + 1);
        for (nonce, inline) in [("", true), (uuid, true), (&"y".repeat(INLINE_LEN), true), (&long, false)] {
            let key = hasher.key(nonce);
            assert_eq!(matches!(key.text, Text::Inline { .. }), inline, "{nonce}");
            assert_eq!(key.as_bytes(), nonce.as_bytes());
            assert_eq!(key.to_text(), nonce);
            assert_eq!(key, hasher.key(nonce));
            assert_eq!(key.hash, hasher.key(nonce).hash);
        }
        assert_ne!(hasher.key("a"), hasher.key("b"));
        assert_ne!(hasher.key(&long[1..]), hasher.key(&long));
    }
}
