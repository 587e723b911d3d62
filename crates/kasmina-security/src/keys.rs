//! HMAC-SHA256 signing keys, the key ring used for rotation, and the signing helpers.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use leyline::{AdaptationCommand, Message, SignedCommand};
use parking_lot::RwLock;
use subtle::ConstantTimeEq;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::mac::{HmacKey, TAG_LEN};

/// Environment variable holding the secret of key id [`DEFAULT_KEY_ID`] (UTF-8 bytes are the key).
pub const SECRET_ENV: &str = "ESPER_LEYLINE_SECRET";
/// Environment variable holding several keys: `id1:secret1,id2:secret2` (split at the first `:`).
pub const KEYS_ENV: &str = "ESPER_LEYLINE_KEYS";
/// Environment variable naming a key file (`id=secret` lines, see [`KeyRing::from_file`]).
pub const KEY_FILE_ENV: &str = "ESPER_LEYLINE_KEY_FILE";
/// The key id of [`SECRET_ENV`], and the id an envelope with an empty `key_id` refers to.
pub const DEFAULT_KEY_ID: &str = "default";
/// The annotation that carries the signature in the legacy form.
pub const SIGNATURE_ANNOTATION: &str = "signature";
/// The annotation in which a legacy command may name its signing key (part of the signed bytes).
pub const KEY_ID_ANNOTATION: &str = "key_id";
/// Shortest accepted secret, in bytes (128 bits); shorter secrets are refused with
/// [`Error::WeakKey`].
pub const MIN_SECRET_LEN: usize = 16;
/// Length of a signature: standard padded base64 of a 32-byte HMAC-SHA256 tag.
pub const SIGNATURE_LEN: usize = 44;
/// Longest accepted key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 128;

/// Signs `bytes` with the secret `key`: standard padded base64 of HMAC-SHA256 (44 characters).
///
/// A raw primitive (any key length, as HMAC allows): it does not apply the [`MIN_SECRET_LEN`]
/// minimum that [`SigningKey`] and [`KeyRing`] enforce. The key state it derives is wiped before
/// it returns; `key` itself belongs to the caller.
///
/// ```
/// let sig = kasmina_security::sign(b"secret", b"payload");
/// assert_eq!(sig.len(), 44);
/// ```
pub fn sign(key: &[u8], bytes: &[u8]) -> String {
    STANDARD.encode(HmacKey::boxed(key).tag(&[bytes]))
}

fn encode_tag_array(tag: &[u8; TAG_LEN]) -> [u8; SIGNATURE_LEN] {
    let mut out = [0u8; SIGNATURE_LEN];
    let written = STANDARD.encode_slice(tag, &mut out).expect("a 32-byte tag always fits 44 base64 characters");
    debug_assert_eq!(written, SIGNATURE_LEN);
    out
}

/// One HMAC-SHA256 key.
///
/// It keeps only the HMAC state derived from the secret (the inner and outer pads already absorbed),
/// never the secret text, so each signature costs no key setup. That state can forge signatures,
/// so it lives on the heap (moving a key moves a pointer, leaving no copy behind) and is wiped
/// when the key, or any clone of it, is dropped ([`ZeroizeOnDrop`]). Its `Debug` output is
/// redacted.
pub struct SigningKey {
    key: Box<HmacKey>,
}

impl Clone for SigningKey {
    fn clone(&self) -> Self {
        Self { key: self.key.boxed_copy() }
    }
}

// `HmacKey` wipes itself on drop; `SigningKey` has no other state.
impl ZeroizeOnDrop for SigningKey {}

impl SigningKey {
    /// A key from secret bytes (the UTF-8 bytes of the secret string, as Esper's peers use).
    ///
    /// Only the derived state is kept. `secret` is not wiped here: pass a reference, or a
    /// [`Zeroizing`] value, to have the caller's copy wiped too.
    ///
    /// # Errors
    /// [`Error::EmptySecret`] when `secret` is empty, [`Error::WeakKey`] when it is shorter than
    /// [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(Error::EmptySecret { key_id: None });
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::WeakKey { key_id: None, min_len: MIN_SECRET_LEN, len: secret.len() });
        }
        Ok(Self { key: HmacKey::boxed(secret) })
    }

    /// The signature of `bytes`: standard padded base64 of HMAC-SHA256.
    pub fn sign(&self, bytes: &[u8]) -> String {
        STANDARD.encode(self.key.tag(&[bytes]))
    }

    /// Whether `signature` is the signature of `bytes` (constant-time comparison).
    pub fn verify(&self, bytes: &[u8], signature: &str) -> bool {
        self.verify_parts(&[bytes], signature.as_bytes())
    }

    /// Constant-time check of `signature` (its bytes as received: bytes that are not UTF-8 never
    /// match) against the signature of the concatenation of `parts`.
    pub(crate) fn verify_parts(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        // The length is public (always 44 for a real signature): a signature of another length
        // is refused without computing the tag. The content is compared in constant time, eight
        // bytes at a time, with no early exit; nothing is allocated.
        let Ok(given) = <&[u8; SIGNATURE_LEN]>::try_from(signature) else {
            return false;
        };
        let expected = encode_tag_array(&self.key.tag(parts));
        bool::from(ct_eq_44(&expected, given))
    }
}

/// Constant-time equality of two 44-byte strings: OR of the XORs of 8-byte words, then
/// `subtle`'s comparison of the single accumulated word.
fn ct_eq_44(a: &[u8; SIGNATURE_LEN], b: &[u8; SIGNATURE_LEN]) -> subtle::Choice {
    let mut wa = [0u8; 48];
    let mut wb = [0u8; 48];
    wa[..SIGNATURE_LEN].copy_from_slice(a);
    wb[..SIGNATURE_LEN].copy_from_slice(b);
    let mut diff = 0u64;
    for (x, y) in wa.chunks_exact(8).zip(wb.chunks_exact(8)) {
        let x = u64::from_ne_bytes(x.try_into().expect("chunks_exact yields 8-byte chunks"));
        let y = u64::from_ne_bytes(y.try_into().expect("chunks_exact yields 8-byte chunks"));
        diff |= x ^ y;
    }
    diff.ct_eq(&0)
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("secret", &"<redacted>").finish()
    }
}

/// The keys a verifier accepts, by key id; a cheap shared handle for rotation at run time.
///
/// Clones share the same keys: keep one clone beside the [`CommandVerifier`](crate::CommandVerifier)
/// and [`insert`](Self::insert) / [`remove`](Self::remove) keys while it runs. Rotation: insert the
/// new key, let both verify during the overlap, remove the old one (its commands then get
/// `unknown_key`). `Debug` shows key ids only.
///
/// Sources:
/// - [`from_env`](Self::from_env): `ESPER_LEYLINE_SECRET` → key id `default`;
///   `ESPER_LEYLINE_KEYS="id1:secret1,id2:secret2"` (each item split at its first `:`, so a secret
///   may hold `:` but not `,`); `ESPER_LEYLINE_KEY_FILE=/path` → [`from_file`](Self::from_file).
///   Empty variables count as unset; an id given twice is an error.
/// - [`from_file`](Self::from_file): one `id=secret` per line (split at the first `=`; spaces
///   around id and secret are trimmed), blank lines and lines starting with `#` ignored. On unix
///   the file must be private to its owner (`chmod 600`), else [`Error::KeyFilePermissions`].
///
/// Key ids are 1 to 128 printable ASCII characters without space, `:`, `,` or `=`. Secrets are at
/// least [`MIN_SECRET_LEN`] (16) bytes ([`Error::WeakKey`] otherwise); use a random one, e.g.
/// `openssl rand -base64 32`.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: Arc<RwLock<Keys>>,
}

/// The keys of a [`KeyRing`] by id. The ids are shared (`Arc<str>`), so a verified command names
/// its key without copying the id.
pub(crate) type Keys = BTreeMap<Arc<str>, SigningKey>;

impl KeyRing {
    /// An empty key ring (a verifier over it rejects everything with `verifier_unavailable`).
    pub fn new() -> Self {
        Self::default()
    }

    /// A key ring holding one key.
    ///
    /// # Errors
    /// [`Error::InvalidKeyId`], [`Error::EmptySecret`] or [`Error::WeakKey`].
    pub fn with_key(key_id: impl Into<String>, secret: impl AsRef<[u8]>) -> Result<Self> {
        let ring = Self::new();
        ring.insert(key_id, secret)?;
        Ok(ring)
    }

    /// Loads keys from the process environment (see the type's docs); the ring may be empty.
    ///
    /// # Errors
    /// Syntax errors in `ESPER_LEYLINE_KEYS`, an unreadable key file, invalid or duplicate ids,
    /// secrets shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (for tests and for
    /// configuration systems other than the process environment).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut keys = BTreeMap::new();
        // The values hold secrets: wiped when dropped, whatever happens below.
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty()).map(Zeroizing::new);
        if let Some(secret) = get(SECRET_ENV) {
            add_unique(&mut keys, DEFAULT_KEY_ID, secret.as_bytes())?;
        }
        if let Some(list) = get(KEYS_ENV) {
            for (index, item) in list.split(',').enumerate() {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                let (id, secret) = item.split_once(':').ok_or_else(|| Error::KeyListSyntax {
                    source_name: KEYS_ENV.to_owned(),
                    entry: index + 1,
                    reason: "expected id:secret",
                })?;
                add_unique(&mut keys, id.trim(), secret.trim().as_bytes())?;
            }
        }
        if let Some(path) = get(KEY_FILE_ENV) {
            for (id, key) in Self::from_file(path.as_str())?.snapshot() {
                if keys.contains_key(&id) {
                    return Err(Error::DuplicateKey { key_id: id.to_string() });
                }
                keys.insert(id, key);
            }
        }
        Ok(Self { keys: Arc::new(RwLock::new(keys)) })
    }

    /// Loads a key file: `id=secret` lines (see the type's docs).
    ///
    /// On unix the file must not grant any permission to group or others (`chmod 600`): one that
    /// does is refused with [`Error::KeyFilePermissions`] before it is read. The mode checked is
    /// that of the opened file (a symbolic link's target). The text read is wiped once parsed.
    ///
    /// # Errors
    /// [`Error::KeyFileRead`], [`Error::KeyFilePermissions`], [`Error::KeyListSyntax`], invalid or
    /// duplicate ids, empty or weak secrets.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let read_error = |source| Error::KeyFileRead { path: path.to_owned(), source };
        let mut file = File::open(path).map_err(read_error)?;
        let metadata = file.metadata().map_err(read_error)?;
        check_key_file_mode(path, &metadata)?;
        // Sized up front so the buffer is not reallocated while reading (a reallocation would
        // free a copy of the secrets without wiping it); a file that grows meanwhile may still.
        let capacity = usize::try_from(metadata.len()).unwrap_or(0).saturating_add(1);
        let mut text = Zeroizing::new(String::with_capacity(capacity));
        file.read_to_string(&mut text).map_err(read_error)?;
        Self::parse_key_file(&text, &path.display().to_string())
    }

    /// Parses the text of a key file; `source_name` names it in errors.
    ///
    /// # Errors
    /// As [`from_file`](Self::from_file), without the read.
    pub fn parse_key_file(text: &str, source_name: &str) -> Result<Self> {
        let mut keys = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, secret) = line.split_once('=').ok_or_else(|| Error::KeyListSyntax {
                source_name: source_name.to_owned(),
                entry: index + 1,
                reason: "expected id=secret",
            })?;
            add_unique(&mut keys, id.trim(), secret.trim().as_bytes())?;
        }
        Ok(Self { keys: Arc::new(RwLock::new(keys)) })
    }

    /// Adds or replaces the key `key_id`; returns whether a key was replaced.
    ///
    /// # Errors
    /// [`Error::InvalidKeyId`], [`Error::EmptySecret`] or [`Error::WeakKey`]; the ring is unchanged.
    pub fn insert(&self, key_id: impl Into<String>, secret: impl AsRef<[u8]>) -> Result<bool> {
        let key_id = key_id.into();
        validate_key_id(&key_id)?;
        let key = SigningKey::new(secret).map_err(|e| for_key(e, &key_id))?;
        Ok(self.keys.write().insert(key_id.into(), key).is_some())
    }

    /// Adds or replaces `key_id` with an existing [`SigningKey`]; returns whether a key was replaced.
    ///
    /// # Errors
    /// [`Error::InvalidKeyId`]; the ring is unchanged.
    pub fn insert_key(&self, key_id: impl Into<String>, key: SigningKey) -> Result<bool> {
        let key_id = key_id.into();
        validate_key_id(&key_id)?;
        Ok(self.keys.write().insert(key_id.into(), key).is_some())
    }

    /// Removes `key_id`; returns whether it was present. Commands naming it then get `unknown_key`.
    pub fn remove(&self, key_id: &str) -> bool {
        self.keys.write().remove(key_id).is_some()
    }

    /// Replaces every key with the keys of `other` in one step (for instance after re-reading a
    /// key file), so no verification sees a half-updated ring.
    pub fn replace_with(&self, other: &KeyRing) {
        let fresh = other.keys.read().clone();
        *self.keys.write() = fresh;
    }

    /// Whether `key_id` is present.
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.read().contains_key(key_id)
    }

    /// A copy of the key `key_id`.
    pub fn get(&self, key_id: &str) -> Option<SigningKey> {
        self.keys.read().get(key_id).cloned()
    }

    /// The key ids, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.read().keys().map(|id| id.to_string()).collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    /// Whether the ring holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.read().is_empty()
    }

    fn snapshot(&self) -> Keys {
        self.keys.read().clone()
    }

    /// Runs `f` on the key `key_id` under the read lock (no copy of the HMAC state).
    pub(crate) fn using_key<R>(&self, key_id: &str, f: impl FnOnce(&SigningKey) -> R) -> Option<R> {
        self.keys.read().get(key_id).map(f)
    }

    /// Runs `f` on all the keys under one read lock: a verification sees one version of the ring
    /// from its first check to its signature check, and locks once.
    pub(crate) fn with_keys<R>(&self, f: impl FnOnce(&Keys) -> R) -> R {
        f(&self.keys.read())
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("key_ids", &self.key_ids()).finish()
    }
}

/// Refuses a key file that grants any permission to group or others (unix only).
#[cfg(unix)]
fn check_key_file_mode(path: &Path, metadata: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode() & 0o7777;
    // A directory is left to the read, which fails with a clearer error.
    if mode & 0o077 != 0 && !metadata.is_dir() {
        return Err(Error::KeyFilePermissions { path: path.to_owned(), mode });
    }
    Ok(())
}

/// Permissions are not checked outside unix.
#[cfg(not(unix))]
fn check_key_file_mode(_path: &Path, _metadata: &std::fs::Metadata) -> Result<()> {
    Ok(())
}

fn add_unique(keys: &mut Keys, key_id: &str, secret: &[u8]) -> Result<()> {
    validate_key_id(key_id)?;
    if keys.contains_key(key_id) {
        return Err(Error::DuplicateKey { key_id: key_id.to_owned() });
    }
    let key = SigningKey::new(secret).map_err(|e| for_key(e, key_id))?;
    keys.insert(key_id.into(), key);
    Ok(())
}

/// A secret's error from [`SigningKey::new`], naming the key it was meant for.
fn for_key(error: Error, key_id: &str) -> Error {
    let key_id = Some(key_id.to_owned());
    match error {
        Error::EmptySecret { .. } => Error::EmptySecret { key_id },
        Error::WeakKey { min_len, len, .. } => Error::WeakKey { key_id, min_len, len },
        other => other,
    }
}

fn validate_key_id(key_id: &str) -> Result<()> {
    let reason = if key_id.is_empty() {
        "empty"
    } else if key_id.len() > MAX_KEY_ID_LEN {
        "longer than 128 bytes"
    } else if !key_id.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b':' | b',' | b'=')) {
        "only printable ASCII without space, ':', ',' or '=' is allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKeyId { key_id: key_id.to_owned(), reason })
}

/// Signs `command` with the key `key_id` of `keys` into the primary form: a [`SignedCommand`]
/// whose signature covers exactly its `command` bytes.
///
/// # Errors
/// [`Error::UnknownKey`] when the ring has no such key.
pub fn sign_command(command: &AdaptationCommand, key_id: &str, keys: &KeyRing) -> Result<SignedCommand> {
    let bytes = command.encode_to_vec();
    let signature = keys
        .using_key(key_id, |key| key.sign(&bytes))
        .ok_or_else(|| Error::UnknownKey { key_id: key_id.to_owned() })?;
    Ok(SignedCommand { command: bytes, signature, key_id: key_id.to_owned() })
}

/// Signs `command` in Esper's legacy form: drops any `annotations["signature"]`, signs the
/// encoding of the rest, then inserts the signature as `annotations["signature"]`. To name the
/// key, set `annotations["key_id"]` ([`KEY_ID_ANNOTATION`]) before signing: it is signed too.
pub fn sign_legacy(command: &mut AdaptationCommand, key: &SigningKey) {
    command.annotations.remove(SIGNATURE_ANNOTATION);
    let signature = key.sign(&command.encode_to_vec());
    command.annotations.insert(SIGNATURE_ANNOTATION.to_owned(), signature);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_known_hmac_sha256_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let tag = hex_tag("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), STANDARD.encode(&tag));
        // RFC 4231 test case 1: key 0x0b × 20, data "Hi There" (a key long enough for SigningKey).
        let tag = hex_tag("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        let key = SigningKey::new([0x0b; 20]).unwrap();
        assert_eq!(key.sign(b"Hi There"), STANDARD.encode(&tag));
        assert!(key.verify(b"Hi There", &STANDARD.encode(&tag)));
        assert!(!key.verify(b"Hi there", &STANDARD.encode(&tag)));
    }

    fn hex_tag(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn verify_parts_equals_verify_of_concatenation() {
        let key = SigningKey::new("k-0123456789abcdef").unwrap();
        let sig = key.sign(b"abcdef");
        assert!(key.verify_parts(&[b"ab", b"cdef"], sig.as_bytes()));
        assert!(!key.verify_parts(&[b"ab", b"cde"], sig.as_bytes()));
        assert!(!key.verify(b"abcdef", &sig[..43]));
    }

    #[test]
    fn ct_eq_44_detects_every_single_byte_difference() {
        let a = [b'A'; SIGNATURE_LEN];
        assert!(bool::from(ct_eq_44(&a, &a)));
        for i in 0..SIGNATURE_LEN {
            let mut b = a;
            b[i] ^= 0x01;
            assert!(!bool::from(ct_eq_44(&a, &b)), "byte {i}");
        }
    }

    /// Compiles only for types that wipe their secret state on drop.
    fn wiped_on_drop<T: ZeroizeOnDrop>() {}

    #[test]
    fn signing_keys_wipe_their_state_on_drop_and_clones_are_independent() {
        wiped_on_drop::<SigningKey>();
        wiped_on_drop::<HmacKey>();
        let key = SigningKey::new("k-0123456789abcdef").unwrap();
        let expected = key.sign(b"payload");
        let copy = key.clone();
        // The copy has its own boxed state: dropping (wiping) the original leaves it working.
        drop(key);
        assert_eq!(copy.sign(b"payload"), expected);
        assert_eq!(copy.sign(b"payload"), sign(b"k-0123456789abcdef", b"payload"));
    }

    #[test]
    fn debug_of_a_signing_key_is_only_the_redaction() {
        let key = SigningKey::new("k-0123456789abcdef").unwrap();
        assert_eq!(format!("{key:?}"), r#"SigningKey { secret: "<redacted>" }"#);
        assert_eq!(format!("{key:#?}"), "SigningKey {\n    secret: \"<redacted>\",\n}");
    }

    #[test]
    fn key_ids_are_validated() {
        for bad in ["", "a b", "a:b", "a,b", "a=b", "é", &"x".repeat(129)] {
            assert!(matches!(validate_key_id(bad), Err(Error::InvalidKeyId { .. })), "{bad:?}");
        }
        validate_key_id("key-2026.09_a").unwrap();
    }
}
