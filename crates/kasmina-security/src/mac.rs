//! HMAC-SHA256 (RFC 2104) whose key-derived state is wiped from memory when it is dropped.
//!
//! The `hmac` crate (0.12) keeps its precomputed state in types that cannot be wiped without
//! `unsafe`, which this workspace denies. The two states that stand for the key (SHA-256 after
//! absorbing `key ^ ipad` and `key ^ opad`) are therefore kept here as plain words in a
//! [`HmacKey`] that derives [`ZeroizeOnDrop`]; messages are hashed with `sha2`'s own SHA-256
//! compression function ([`sha2::compress256`]), so only the padding and the HMAC construction
//! are this module's. Unit tests check it against RFC 4231 and, in the integration tests, against
//! the `hmac` crate on random keys and messages.
//!
//! What is wiped: the long-lived key state (on drop), and the temporaries of key setup (the padded
//! key block, the hash of a key longer than a block). What is not: the secret bytes the caller
//! passed in (the caller owns them), and the per-signature working state, whose words hold the
//! key state only until the first compression overwrites them (best effort: copies the compiler
//! makes in registers or on the stack are out of reach of safe code).

use sha2::compress256;
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a SHA-256 block, in bytes.
const BLOCK_LEN: usize = 64;
/// Length of a SHA-256 digest (and of an HMAC-SHA256 tag), in bytes.
pub(crate) const TAG_LEN: usize = 32;
/// Offset of the 64-bit message length in the last padded block.
const LENGTH_OFFSET: usize = BLOCK_LEN - 8;
/// Length in bits of the outer hash's message: the `key ^ opad` block and the inner digest.
const OUTER_BIT_LEN: u64 = ((BLOCK_LEN + TAG_LEN) * 8) as u64;

/// The initial SHA-256 state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] =
    [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19];

/// The key-equivalent part of an HMAC-SHA256 key: the SHA-256 states after one block of
/// `key ^ ipad` and of `key ^ opad`. Wiped on drop. Deliberately without `Debug`, so it cannot be
/// printed by a derived `Debug` of a type holding it.
///
/// Not `Clone`: a derived `clone` would build the copy on the stack; [`boxed_copy`](Self::boxed_copy)
/// copies heap to heap.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct HmacKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl HmacKey {
    /// The key for `secret` (any length, as HMAC allows), on the heap so that moving its owner
    /// never leaves a copy of the state behind.
    pub(crate) fn boxed(secret: &[u8]) -> Box<Self> {
        let mut key = Self::boxed_zero();
        // RFC 2104: a key longer than a block is replaced by its hash; the key is zero-padded to
        // a block.
        let mut block = Zeroizing::new([0u8; BLOCK_LEN]);
        if secret.len() > BLOCK_LEN {
            let mut hasher = Sha256::new();
            hasher.update(secret);
            let mut digest = [0u8; TAG_LEN];
            hasher.finalize_into(&mut digest);
            block[..TAG_LEN].copy_from_slice(&digest);
            digest.zeroize();
            // The hasher's buffer holds the end of the secret.
            hasher.zeroize();
        } else {
            block[..secret.len()].copy_from_slice(secret);
        }
        let mut pad = Zeroizing::new([0u8; BLOCK_LEN]);
        for (state, byte) in [(&mut key.inner, 0x36u8), (&mut key.outer, 0x5c)] {
            for (p, k) in pad.iter_mut().zip(block.iter()) {
                *p = k ^ byte;
            }
            *state = IV;
            compress(state, &pad[..]);
        }
        key
    }

    /// A copy of this key, on the heap.
    pub(crate) fn boxed_copy(&self) -> Box<Self> {
        let mut copy = Self::boxed_zero();
        copy.inner = self.inner;
        copy.outer = self.outer;
        copy
    }

    fn boxed_zero() -> Box<Self> {
        Box::new(Self { inner: [0; 8], outer: [0; 8] })
    }

    /// HMAC-SHA256 of the concatenation of `parts`.
    ///
    /// The inner hash resumes from the `key ^ ipad` state and compresses up to four blocks per
    /// call (the last call also takes the padding: up to five blocks). The outer hash is a single
    /// block (the inner digest and its fixed padding) on the `key ^ opad` state. For the 214-byte
    /// reference command that is five compressions in two calls (the four blocks of the message
    /// and its padding, the outer block) and little else: with SHA-NI, which `sha2` detects at
    /// run time, they are almost the whole cost.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut inner = Sha256::resume(self.inner);
        for part in parts {
            inner.update(part);
        }
        let inner_hash = inner.finalize_words();
        let mut block = Block::default();
        for (chunk, word) in block[..TAG_LEN].chunks_exact_mut(4).zip(inner_hash) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        block[TAG_LEN] = 0x80;
        block[LENGTH_OFFSET..].copy_from_slice(&OUTER_BIT_LEN.to_be_bytes());
        let mut outer = self.outer;
        compress256(&mut outer, std::slice::from_ref(&block));
        digest(outer)
    }

    #[cfg(test)]
    fn is_zero(&self) -> bool {
        self.inner.iter().chain(&self.outer).all(|&word| word == 0)
    }
}

/// One SHA-256 block, as `sha2`'s compression function takes it.
type Block = GenericArray<u8, U64>;

/// Whole blocks a [`Sha256`] holds before it compresses them, in one call to the compression
/// function (each call reloads and stores the state: about 4 ns, an eighth of a block's cost with
/// SHA-NI). Four blocks hold the 214-byte reference command, so its inner hash is one call.
const BATCH_BLOCKS: usize = 4;

/// A running SHA-256 over [`compress256`]. Wiped with [`Zeroize`] (not on drop: only key setup
/// needs it).
struct Sha256 {
    state: [u32; 8],
    /// Bytes not yet compressed: the first `buffered` of the first [`BATCH_BLOCKS`] blocks
    /// (compressed when those are full and more data comes). The last block is room for the
    /// padding, so that finishing is one call to the compression function.
    buffer: [Block; BATCH_BLOCKS + 1],
    buffered: usize,
    /// Bytes absorbed so far, including those of the state being resumed.
    len: u64,
}

impl Zeroize for Sha256 {
    fn zeroize(&mut self) {
        self.state.zeroize();
        for block in &mut self.buffer {
            block.as_mut_slice().zeroize();
        }
        self.buffered.zeroize();
        self.len.zeroize();
    }
}

impl Sha256 {
    fn new() -> Self {
        Self::starting_at(IV, 0)
    }

    /// Continues from `state`, the state after exactly one block.
    fn resume(state: [u32; 8]) -> Self {
        Self::starting_at(state, BLOCK_LEN as u64)
    }

    fn starting_at(state: [u32; 8], len: u64) -> Self {
        Self { state, buffer: [Block::default(); BATCH_BLOCKS + 1], buffered: 0, len }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        while !data.is_empty() {
            if self.buffered == BATCH_BLOCKS * BLOCK_LEN {
                compress256(&mut self.state, &self.buffer[..BATCH_BLOCKS]);
                self.buffered = 0;
            }
            let (block, offset) = (self.buffered / BLOCK_LEN, self.buffered % BLOCK_LEN);
            let take = (BLOCK_LEN - offset).min(data.len());
            self.buffer[block][offset..offset + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
        }
    }

    /// Pads and compresses what is buffered in one call; returns the final state (the digest as
    /// big-endian words). The hasher is spent.
    fn finalize_words(&mut self) -> [u32; 8] {
        let bit_len = self.len.wrapping_mul(8);
        let (block, offset) = (self.buffered / BLOCK_LEN, self.buffered % BLOCK_LEN);
        // The padding: 0x80, zeros, the 64-bit length; one more block when the length does not
        // fit after the data.
        self.buffer[block][offset] = 0x80;
        self.buffer[block][offset + 1..].fill(0);
        let last = if offset < LENGTH_OFFSET {
            block
        } else {
            self.buffer[block + 1] = Block::default();
            block + 1
        };
        self.buffer[last][LENGTH_OFFSET..].copy_from_slice(&bit_len.to_be_bytes());
        compress256(&mut self.state, &self.buffer[..=last]);
        self.state
    }

    /// Pads, compresses the last block(s) and writes the digest to `out`; the hasher is spent.
    fn finalize_into(&mut self, out: &mut [u8; TAG_LEN]) {
        *out = digest(self.finalize_words());
    }
}

/// The digest of a final SHA-256 state.
fn digest(state: [u32; 8]) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Compresses one 64-byte block into `state` (key setup).
fn compress(state: &mut [u32; 8], block: &[u8]) {
    compress256(state, std::slice::from_ref(Block::from_slice(block)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    fn tag_hex(key: &[u8], data: &[u8]) -> String {
        HmacKey::boxed(key).tag(&[data]).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_matches_fips_180_vectors_across_block_boundaries() {
        let digest = |data: &[u8]| {
            let mut hasher = Sha256::new();
            // Byte by byte, to exercise the buffering.
            for byte in data {
                hasher.update(std::slice::from_ref(byte));
            }
            let mut out = [0u8; TAG_LEN];
            hasher.finalize_into(&mut out);
            out.to_vec()
        };
        assert_eq!(digest(b""), unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert_eq!(digest(b"abc"), unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        assert_eq!(
            digest(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            unhex("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        );
        assert_eq!(digest(&[b'a'; 1000]), unhex("41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"));
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (vec![0x0b; 20], b"Hi There".to_vec(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (vec![0xaa; 20], vec![0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            ((1..=25).collect(), vec![0xcd; 50], "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
            // Keys longer than a block (131 bytes) are hashed first.
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. \
                  The key needs to be hashed before being used by the HMAC algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in cases {
            assert_eq!(tag_hex(&key, &data), expected);
        }
    }

    #[test]
    fn the_tag_of_parts_is_the_tag_of_their_concatenation() {
        let key = HmacKey::boxed(b"k-0123456789abcdef");
        let data: Vec<u8> = (0..=255).cycle().take(300).collect();
        let whole = key.tag(&[&data]);
        for split in [0, 1, 55, 56, 63, 64, 65, 128, 299, 300] {
            assert_eq!(key.tag(&[&data[..split], &data[split..]]), whole, "split at {split}");
        }
    }

    #[test]
    fn zeroize_clears_every_word_of_the_key_state() {
        let mut key = HmacKey::boxed(b"k-0123456789abcdef");
        assert!(!key.is_zero());
        // What `Drop` runs (the type derives `ZeroizeOnDrop`, asserted in `keys`' tests).
        key.zeroize();
        assert!(key.is_zero());
    }
}
