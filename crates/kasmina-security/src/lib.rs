//! The authenticated command envelope: HMAC-SHA256 signatures, nonce ledger, freshness and key
//! rotation for the commands Kasmina receives (decisions D8, D11).
//!
//! Layer L1 (domain crate): it depends only on the L0 crates `leyline` and `kasmina-clock` and on
//! small external crates (`sha2`, `zeroize`, `base64`, `subtle`, `parking_lot`, `quanta`,
//! `foldhash`, `hashbrown`), never on another Kasmina domain crate.
//! It returns typed values; the runtime turns a [`Rejection`] into a `command_rejected` event.
//!
//! Main types:
//! - [`CommandVerifier`]: checks a [`SignedCommand`](leyline::SignedCommand) envelope (signature
//!   over the exact bytes, before decoding) or a legacy command (signature in
//!   `annotations["signature"]`, checked on the received bytes with that entry removed at the wire
//!   level; against the key named by `annotations["key_id"]` or the envelope's `key_id` when one
//!   is named, else against every key), then required fields (`issued_at` must be a valid
//!   Timestamp), freshness on an injected [`WallClock`] and replay in a
//!   [`NonceLedger`] on an injected [`quanta::Clock`]. Returns a [`VerifiedCommand`] or a
//!   [`Rejection`] whose [`reason`](Rejection::reason) is one of the D8 strings. A
//!   [`VerifiedCommand`] names the key that matched and its form as the wire enum
//!   [`leyline::CommandForm`] (`ENVELOPE` or `LEGACY`).
//!   [`CommandVerifier::verify_envelope_view`] runs the same checks on the command's borrowed
//!   view and returns a [`Verified`] without allocating (the envelope form's accept path).
//! - [`KeyRing`] / [`SigningKey`]: keys by id, loaded from `ESPER_LEYLINE_SECRET` (id `default`),
//!   `ESPER_LEYLINE_KEYS="id1:secret1,id2:secret2"` or a key file of `id=secret` lines; keys can be
//!   added and removed at run time for rotation. Secrets are at least [`MIN_SECRET_LEN`] (16)
//!   bytes ([`Error::WeakKey`]) and never appear in `Debug` output; the key state derived from
//!   them is wiped from memory when a key is dropped, and a key file that group or others may
//!   access is refused on unix ([`Error::KeyFilePermissions`]).
//! - [`sign`], [`sign_command`], [`sign_legacy`]: the signer's side (CLI, tests, peers).
//! - [`printable`]: a wire value (seed id, command id, reason) made safe to print, control and
//!   bidirectional formatting characters escaped as `\u{…}`.
//!
//! ```
//! use kasmina_security::{CommandVerifier, FixedWallClock, KeyRing, sign_command};
//! use leyline::{AdaptationCommand, wkt::Timestamp};
//!
//! let keys = KeyRing::with_key("default", "a-secret-of-16-bytes-or-more")?;
//! let verifier = CommandVerifier::new(keys.clone()).with_wall_clock(FixedWallClock::at_unix(1_790_000_000));
//! let command = AdaptationCommand {
//!     command_id: "c-1".into(),
//!     issued_at: Some(Timestamp { seconds: 1_790_000_000, nanos: 0 }),
//!     ..Default::default()
//! };
//! let signed = sign_command(&command, "default", &keys)?;
//! let verified = verifier.verify_signed(&signed)?;
//! assert_eq!(verified.command(), &command);
//! // The same command again is a replay.
//! assert_eq!(verifier.verify_signed(&signed).unwrap_err().reason(), "nonce_replayed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Fuzzing
//! `fuzz/` at the repository root (outside the workspace) holds cargo-fuzz targets for this
//! crate: `verify_envelope` feeds arbitrary bytes to [`CommandVerifier::verify_envelope_bytes`]
//! and a correctly signed envelope around them, `verify_legacy` to
//! [`CommandVerifier::verify_legacy_bytes`] and a legacy signature around them (its verdict
//! compared with a reference model). `cargo xtask fuzz [--seconds N]` runs every target of the
//! repository (see `fuzz/README.md`).
//!
//! The nonce ledger and its atomics are model-checked with loom (`tests/loom.rs`):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p kasmina-security --test loom --release
//! ```

mod error;
mod keys;
mod ledger;
mod mac;
mod nonce;
mod printable;
mod rejection;
mod sync;
mod verifier;
mod wire;

pub use error::{Error, Result};
// The workspace's one wall clock, from `kasmina-clock`, re-exported so these paths keep working.
pub use kasmina_clock::{FixedWallClock, FnWallClock, SystemWallClock, WallClock};
pub use keys::{
    DEFAULT_KEY_ID, KEY_FILE_ENV, KEY_ID_ANNOTATION, KEYS_ENV, KeyRing, MAX_KEY_ID_LEN, MIN_SECRET_LEN, SECRET_ENV,
    SIGNATURE_ANNOTATION, SIGNATURE_LEN, SigningKey, sign, sign_command, sign_legacy,
};
pub use ledger::{LiveNonce, NonceLedger, Registration, Restored};
pub use printable::{is_bidi_control, printable};
pub use rejection::{Rejection, UnavailableCause};
pub use verifier::{CommandVerifier, ENVELOPE_OVERHEAD_BYTES, Verified, VerifiedCommand, VerifierConfig};
