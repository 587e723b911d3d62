//! The command verifier: envelope and legacy forms, checked in the order of decision D8.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kasmina_clock::{SystemWallClock, WallClock};
use leyline::prost::bytes::Buf;
use leyline::view::{AdaptationCommandView, View, ViewError};
use leyline::{AdaptationCommand, CommandForm, Message, SignedCommand};

use crate::error::{Error, Result};
use crate::keys::{DEFAULT_KEY_ID, KEY_ID_ANNOTATION, KeyRing, Keys, SigningKey};
use crate::ledger::{NonceLedger, Registration};
use crate::rejection::{Rejection, UnavailableCause};
use crate::wire::{SplitError, split_bus, split_envelope, split_legacy};

/// Bytes an encoded [`SignedCommand`] may add to its command (tags, lengths, a 44-character
/// signature and a key id of up to 128 bytes) before [`CommandVerifier::verify_envelope_bytes`]
/// calls it oversized.
pub const ENVELOPE_OVERHEAD_BYTES: usize = 256;

/// Limits of a [`CommandVerifier`]. Start from [`Default`] and set fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifierConfig {
    /// Largest accepted command, in bytes (`oversized_command` above it). Default 4096 (D11;
    /// the contract's 280-byte budget is a size target, reported by the benches, not a limit).
    pub max_command_bytes: usize,
    /// Oldest accepted `issued_at` relative to the wall clock (`stale_command` beyond). Default 60 s.
    pub max_age: Duration,
    /// Furthest accepted `issued_at` ahead of the wall clock (`issued_in_future` beyond). Default 60 s.
    pub max_future_skew: Duration,
    /// How long an accepted command id stays in the nonce ledger. Default 300 s; at least
    /// `max_age + max_future_skew`, the time a command stays fresh.
    pub nonce_ttl: Duration,
    /// Most nonces the ledger holds (96 bytes each, about 100 to 200 with the table's and the
    /// queue's spare room; a nonce over 46 bytes adds its own allocation). Default 1 048 576, enough for
    /// 3 495 commands/s sustained over the default TTL; beyond, new commands get
    /// `verifier_unavailable` until nonces expire.
    pub nonce_capacity: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            max_command_bytes: 4096,
            max_age: Duration::from_secs(60),
            max_future_skew: Duration::from_secs(60),
            nonce_ttl: Duration::from_secs(300),
            nonce_capacity: 1 << 20,
        }
    }
}

impl VerifierConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero size limit or capacity, or a nonce TTL shorter than
    /// the freshness window (a command could then be replayed while still fresh).
    pub fn validate(&self) -> Result<()> {
        if self.max_command_bytes == 0 {
            return Err(Error::InvalidConfig { field: "max_command_bytes", reason: "must be positive".into() });
        }
        if self.nonce_capacity == 0 {
            return Err(Error::InvalidConfig { field: "nonce_capacity", reason: "must be positive".into() });
        }
        let window = self.max_age.saturating_add(self.max_future_skew);
        if self.nonce_ttl < window {
            return Err(Error::InvalidConfig {
                field: "nonce_ttl",
                reason: format!("{:?} is shorter than the freshness window {window:?}", self.nonce_ttl),
            });
        }
        Ok(())
    }
}

/// A command that passed every check; only a [`CommandVerifier`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCommand {
    command: AdaptationCommand,
    /// The key ring's own copy of the id (shared, not copied per command).
    key_id: Arc<str>,
    form: CommandForm,
}

impl VerifiedCommand {
    /// The decoded command. For the legacy form it holds exactly what the peer signed: the
    /// `signature` annotation is not part of it.
    pub fn command(&self) -> &AdaptationCommand {
        &self.command
    }

    /// The decoded command, by value.
    pub fn into_command(self) -> AdaptationCommand {
        self.command
    }

    /// The command's id (its nonce).
    pub fn command_id(&self) -> &str {
        &self.command.command_id
    }

    /// The id of the key whose signature matched.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The form it arrived in: [`CommandForm::Envelope`] or [`CommandForm::Legacy`] (D8's two
    /// forms; a verifier never produces the other values of the wire enum).
    pub fn form(&self) -> CommandForm {
        self.form
    }

    /// The command, the id of the key whose signature matched, and the form it arrived in, by
    /// value (what a receipt's provenance is built from).
    pub fn into_parts(self) -> (AdaptationCommand, String, CommandForm) {
        (self.command, self.key_id.to_string(), self.form)
    }
}

/// A command that passed every check, as [`CommandVerifier::verify_envelope_view`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verified<'a> {
    /// The envelope form: the command's borrowed view of the received bytes (nothing was
    /// decoded into owned strings or maps, nothing allocated, no shared count touched).
    View {
        /// The command, checked.
        command: AdaptationCommandView<'a>,
        /// The id of the key whose signature matched, as the envelope named it
        /// ([`DEFAULT_KEY_ID`] for an envelope that named none).
        key_id: &'a str,
    },
    /// The legacy form (its signature sits inside the command, which is decoded without it) or
    /// a command only prost's merging decodes: owned.
    Owned(VerifiedCommand),
}

impl Verified<'_> {
    /// The command's id (its nonce).
    pub fn command_id(&self) -> &str {
        match self {
            Self::View { command, .. } => command.command_id,
            Self::Owned(v) => v.command_id(),
        }
    }

    /// The id of the key whose signature matched.
    pub fn key_id(&self) -> &str {
        match self {
            Self::View { key_id, .. } => key_id,
            Self::Owned(v) => v.key_id(),
        }
    }

    /// The form the command came in.
    pub fn form(&self) -> CommandForm {
        match self {
            Self::View { .. } => CommandForm::Envelope,
            Self::Owned(v) => v.form(),
        }
    }

    /// The owned [`VerifiedCommand`] (decodes the view's strings and maps).
    pub fn into_owned(self) -> VerifiedCommand {
        match self {
            Self::View { command, key_id } => VerifiedCommand {
                command: command.to_message(),
                key_id: Arc::from(key_id),
                form: CommandForm::Envelope,
            },
            Self::Owned(v) => v,
        }
    }
}

/// Verifies signed commands: size, signature, decoding, required fields, freshness and replay.
///
/// Checks run in the order of decision D8 and stop at the first failure:
/// no key configured (`verifier_unavailable`) → size (`oversized_command`) → signature
/// (`missing_signature`, `unknown_key`, `invalid_signature`; constant-time) → decoding
/// (`malformed_command`) → `command_id` (`missing_command_id`) → `issued_at`
/// (`missing_timestamp`; `malformed_command` when it is not a valid Timestamp: `nanos` outside
/// `0..=999_999_999` or `seconds` outside years 0001–9999) → freshness on the wall clock
/// (`issued_in_future`, `stale_command`) → nonce (`nonce_replayed`). The nonce is spent only by
/// a command that passed every other check; a rejected command changes no state.
///
/// `Send + Sync`: share one verifier (e.g. in an `Arc`) between all ingress threads; replay
/// protection holds across them.
pub struct CommandVerifier {
    keys: KeyRing,
    config: VerifierConfig,
    wall_clock: Arc<dyn WallClock>,
    ledger: NonceLedger,
}

impl CommandVerifier {
    /// A verifier over `keys` with the default limits, the system wall clock and a real
    /// monotonic clock.
    pub fn new(keys: KeyRing) -> Self {
        let config = VerifierConfig::default();
        let ledger = NonceLedger::new(config.nonce_ttl, config.nonce_capacity, quanta::Clock::new());
        Self { keys, config, wall_clock: Arc::new(SystemWallClock), ledger }
    }

    /// A verifier with the given limits.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (see [`VerifierConfig::validate`]).
    pub fn with_config(keys: KeyRing, config: VerifierConfig) -> Result<Self> {
        config.validate()?;
        let ledger = NonceLedger::new(config.nonce_ttl, config.nonce_capacity, quanta::Clock::new());
        Ok(Self { keys, config, wall_clock: Arc::new(SystemWallClock), ledger })
    }

    /// Uses `clock` for the freshness check (pass an `Arc<FixedWallClock>` to move it from a test).
    pub fn with_wall_clock(mut self, clock: impl WallClock + 'static) -> Self {
        self.wall_clock = Arc::new(clock);
        self
    }

    /// Uses `clock` for the nonce ledger (e.g. `quanta::Clock::mock()` in tests). Starts a new,
    /// empty ledger.
    pub fn with_monotonic_clock(mut self, clock: quanta::Clock) -> Self {
        self.ledger = NonceLedger::new(self.config.nonce_ttl, self.config.nonce_capacity, clock);
        self
    }

    /// The key ring (a shared handle: inserting or removing keys affects this verifier).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The limits in force.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// The nonce ledger.
    pub fn ledger(&self) -> &NonceLedger {
        &self.ledger
    }

    /// Verifies a decoded envelope. An envelope with an empty `signature` carries the legacy form
    /// in `command` and is verified as [`verify_legacy_bytes`](Self::verify_legacy_bytes) does,
    /// the envelope's `key_id` (when not empty) naming the key as `annotations["key_id"]` would.
    /// Otherwise an empty `key_id` means [`DEFAULT_KEY_ID`].
    ///
    /// # Errors
    /// The [`Rejection`] of the first failed check.
    pub fn verify_signed(&self, signed: &SignedCommand) -> Result<VerifiedCommand, Rejection> {
        let authenticated = self.keys.with_keys(|keys| {
            check_available(keys)?;
            self.authenticate_envelope(
                keys,
                &signed.command,
                signed.signature.as_bytes(),
                &signed.key_id,
                KeyUse::Share,
            )
        })?;
        self.decode_and_admit(authenticated)
    }

    /// Verifies an encoded [`SignedCommand`] as received from the wire. Its fields are read in
    /// place (the command's bytes are neither copied nor re-encoded): the signature is checked
    /// over the received command bytes, which are then decoded.
    ///
    /// # Errors
    /// As [`verify_signed`](Self::verify_signed); `oversized_command` above
    /// `max_command_bytes +` [`ENVELOPE_OVERHEAD_BYTES`], `malformed_command` when the envelope
    /// itself does not decode.
    pub fn verify_envelope_bytes(&self, bytes: &[u8]) -> Result<VerifiedCommand, Rejection> {
        // `None`: not a well-formed envelope; prost decodes it below and names the error.
        match self.authenticate_wire(bytes, KeyUse::Share)? {
            Some(authenticated) => self.decode_and_admit(authenticated),
            None => {
                let signed = SignedCommand::decode(bytes)
                    .map_err(|e| Rejection::MalformedCommand { detail: format!("envelope: {e}") })?;
                self.verify_signed(&signed)
            }
        }
    }

    /// [`verify_envelope_bytes`](Self::verify_envelope_bytes) without decoding into owned types:
    /// the envelope's fields are read in place, the signature checked over the received command
    /// bytes, and the command checked and read as a borrowed view
    /// ([`leyline::view::AdaptationCommandView`]) for the freshness and nonce checks. On the
    /// accept path of the envelope form nothing is allocated and nothing re-encoded
    /// ([`Verified::View`]; [`Verified::into_owned`] decodes when the owned command is needed).
    /// The legacy form, and a command whose bytes only protobuf's merging decodes (a singular
    /// message field twice), take the owned path ([`Verified::Owned`]). Same checks, same order,
    /// same rejections as `verify_envelope_bytes`.
    ///
    /// # Errors
    /// As [`verify_envelope_bytes`](Self::verify_envelope_bytes).
    pub fn verify_envelope_view<'a>(&self, bytes: &'a [u8]) -> Result<Verified<'a>, Rejection> {
        let Some(authenticated) = self.authenticate_wire(bytes, KeyUse::Borrow)? else {
            // Not a well-formed envelope: the owned path names the error.
            return self.verify_envelope_bytes(bytes).map(Verified::Owned);
        };
        // Only the envelope form borrows its key id; the legacy form takes the owned path.
        let KeyId::Borrowed(key_id) = authenticated.key_id else {
            return self.decode_and_admit(authenticated).map(Verified::Owned);
        };
        let command = match AdaptationCommandView::parse(authenticated.before) {
            Ok(view) => view,
            Err(ViewError::RepeatedSingular { .. } | ViewError::InvalidKey { .. }) => {
                return self.decode_and_admit(authenticated).map(Verified::Owned);
            }
            // prost refuses these bytes too; its message names the error as the owned path does.
            Err(e) => {
                return Err(decode(authenticated.before)
                    .err()
                    .unwrap_or(Rejection::MalformedCommand { detail: e.to_string() }));
            }
        };
        let issued_at = command.issued_at.map(leyline::wkt::Timestamp::from);
        self.admit_fields(command.command_id, issued_at.as_ref())?;
        Ok(Verified::View { command, key_id })
    }

    /// Verifies a legacy command as received: the signature is `annotations["signature"]`, checked
    /// over the received bytes with that map entry removed at the wire level (so map order and
    /// unknown fields do not matter), before decoding.
    ///
    /// A command whose `annotations["key_id"]` ([`KEY_ID_ANNOTATION`]) is not empty is checked
    /// against that key only: `unknown_key` when the ring does not hold it, `invalid_signature`
    /// when it does not match, whichever other key would. A command that names no key (Esper's
    /// Python peers) is checked against every key of the ring.
    ///
    /// # Errors
    /// The [`Rejection`] of the first failed check.
    pub fn verify_legacy_bytes(&self, bytes: &[u8]) -> Result<VerifiedCommand, Rejection> {
        let authenticated = self.keys.with_keys(|keys| {
            check_available(keys)?;
            self.authenticate_legacy(keys, bytes, "")
        })?;
        self.decode_and_admit(authenticated)
    }

    /// Verifies the command of an Oona bus entry (decisions D12): `signature` (standard padded
    /// base64 HMAC-SHA256, the entry's `signature` field) must cover the exact `envelope` bytes
    /// (its `payload` field) under the key [`DEFAULT_KEY_ID`]; the envelope must be a
    /// `BusEnvelope` of type `BUS_MESSAGE_TYPE_ADAPTATION_COMMAND`; its payload, the encoded
    /// command, then goes through the rest of D8's order (decode, command id, `issued_at`,
    /// freshness, nonce), so a redelivered entry is `nonce_replayed`.
    ///
    /// # Errors
    /// `missing_signature` for an empty signature, `invalid_signature` or `unknown_key`,
    /// `malformed_command` for an envelope that does not decode or carries another message
    /// type, `oversized_command`, then the checks of [`verify_signed`](Self::verify_signed).
    pub fn verify_bus_entry(&self, envelope: &[u8], signature: &str) -> Result<VerifiedCommand, Rejection> {
        let key_id = self.keys.with_keys(|keys| {
            check_available(keys)?;
            self.check_size(envelope.len(), self.config.max_command_bytes.saturating_add(ENVELOPE_OVERHEAD_BYTES))?;
            if signature.is_empty() {
                return Err(Rejection::MissingSignature);
            }
            check_signature(keys, DEFAULT_KEY_ID, |key| key.verify(envelope, signature)).map(Arc::clone)
        })?;
        let adaptation_command = leyline::BusMessageType::AdaptationCommand as i32;
        let payload = match split_bus(envelope) {
            // Read in place: an envelope without attributes, of the right type.
            Some(fields) if fields.message_type == adaptation_command => fields.payload,
            // Anything else: prost decodes it and names what is wrong.
            _ => return self.verify_bus_decoded(envelope, key_id),
        };
        let command = decode(payload)?;
        self.admit(command, key_id, CommandForm::Bus)
    }

    /// The bus envelope decoded by prost, after its signature was checked.
    fn verify_bus_decoded(&self, envelope: &[u8], key_id: Arc<str>) -> Result<VerifiedCommand, Rejection> {
        let bus = leyline::BusEnvelope::decode(envelope)
            .map_err(|e| Rejection::MalformedCommand { detail: format!("bus envelope: {e}") })?;
        if bus.message_type() != leyline::BusMessageType::AdaptationCommand {
            return Err(Rejection::MalformedCommand {
                detail: format!("bus message type {} is not an adaptation command", bus.message_type().as_str_name()),
            });
        }
        let command = decode(bus.payload.as_slice())?;
        self.admit(command, key_id, CommandForm::Bus)
    }

    /// D8's checks up to the signature on an encoded envelope read in place (one read lock on
    /// the key ring); `None` when `bytes` is not a well-formed envelope.
    fn authenticate_wire<'a>(&self, bytes: &'a [u8], key_use: KeyUse) -> Result<Option<Authenticated<'a>>, Rejection> {
        self.keys.with_keys(|keys| {
            check_available(keys)?;
            self.check_size(bytes.len(), self.config.max_command_bytes.saturating_add(ENVELOPE_OVERHEAD_BYTES))?;
            let Some(fields) = split_envelope(bytes) else { return Ok(None) };
            let authenticated =
                self.authenticate_envelope(keys, fields.command, fields.signature, fields.key_id, key_use);
            // A signature that is not UTF-8 never matches, and prost refuses the envelope: it is
            // checked here, off the accept path, so that prost names the error.
            if authenticated.is_err() && std::str::from_utf8(fields.signature).is_err() {
                return Ok(None);
            }
            authenticated.map(Some)
        })
    }

    /// D8's checks from the size to the signature of an envelope's fields (the ring is known not
    /// to be empty). An empty `signature` means the legacy form inside the envelope.
    fn authenticate_envelope<'a>(
        &self,
        keys: &Keys,
        command: &'a [u8],
        signature: &[u8],
        key_id: &'a str,
        key_use: KeyUse,
    ) -> Result<Authenticated<'a>, Rejection> {
        if signature.is_empty() {
            return self.authenticate_legacy(keys, command, key_id);
        }
        self.check_size(command.len(), self.config.max_command_bytes)?;
        let key_id = if key_id.is_empty() { DEFAULT_KEY_ID } else { key_id };
        let shared = check_signature(keys, key_id, |key| key.verify_parts(&[command], signature))?;
        let key_id = match key_use {
            KeyUse::Share => KeyId::Shared(Arc::clone(shared)),
            KeyUse::Borrow => KeyId::Borrowed(key_id),
        };
        Ok(Authenticated { before: command, after: &[], key_id, form: CommandForm::Envelope })
    }

    /// D8's checks from the size to the signature of the legacy form; `envelope_key_id` is the
    /// `key_id` of the envelope it came in (empty: none).
    fn authenticate_legacy<'a>(
        &self,
        keys: &Keys,
        bytes: &'a [u8],
        envelope_key_id: &str,
    ) -> Result<Authenticated<'a>, Rejection> {
        self.check_size(bytes.len(), self.config.max_command_bytes)?;
        let split = split_legacy(bytes).map_err(|e| match e {
            SplitError::Missing => Rejection::MissingSignature,
            SplitError::Malformed(detail) => Rejection::MalformedCommand { detail },
        })?;
        let named = match (envelope_key_id, split.key_id.unwrap_or_default()) {
            ("", "") => None,
            (id, "") | ("", id) => Some(id),
            (outer, inner) if outer == inner => Some(inner),
            _ => {
                return Err(Rejection::MalformedCommand {
                    detail: format!(
                        "the envelope's key_id and annotations[\"{KEY_ID_ANNOTATION}\"] name different keys"
                    ),
                });
            }
        };
        let parts = [split.before, split.after];
        let key_id = match named {
            // One constant-time check against the named key; no other key is tried.
            Some(id) => {
                Arc::clone(check_signature(keys, id, |key| key.verify_parts(&parts, split.signature.as_bytes()))?)
            }
            None => keys
                .iter()
                .find(|(_, key)| key.verify_parts(&parts, split.signature.as_bytes()))
                .map(|(id, _)| Arc::clone(id))
                .ok_or(Rejection::InvalidSignature { key_id: None })?,
        };
        // Decode exactly the authenticated bytes.
        Ok(Authenticated {
            before: split.before,
            after: split.after,
            key_id: KeyId::Shared(key_id),
            form: CommandForm::Legacy,
        })
    }

    /// Decodes what passed the signature check, then the checks after it.
    fn decode_and_admit(&self, authenticated: Authenticated<'_>) -> Result<VerifiedCommand, Rejection> {
        let Authenticated { before, after, key_id, form } = authenticated;
        let command = if after.is_empty() { decode(before)? } else { decode(before.chain(after))? };
        self.admit(command, key_id.into_shared(), form)
    }

    fn check_size(&self, size: usize, limit: usize) -> Result<(), Rejection> {
        if size > limit {
            return Err(Rejection::OversizedCommand { size, limit });
        }
        Ok(())
    }

    /// The checks after the signature and the decoding: required fields, freshness, then the
    /// nonce.
    fn admit(
        &self,
        command: AdaptationCommand,
        key_id: Arc<str>,
        form: CommandForm,
    ) -> Result<VerifiedCommand, Rejection> {
        self.admit_fields(&command.command_id, command.issued_at.as_ref())?;
        Ok(VerifiedCommand { command, key_id, form })
    }

    /// [`admit`](Self::admit) on the two fields it reads (so a decoder that borrows the received
    /// bytes can run it before building the owned command). Allocates only the rejection.
    fn admit_fields(&self, command_id: &str, issued_at: Option<&leyline::wkt::Timestamp>) -> Result<(), Rejection> {
        if command_id.is_empty() {
            return Err(Rejection::MissingCommandId);
        }
        let command_id_owned = || command_id.to_owned();
        let Some(issued_at) = issued_at else {
            return Err(Rejection::MissingTimestamp { command_id: command_id_owned() });
        };
        if !timestamp_valid(issued_at) {
            let (seconds, nanos) = (issued_at.seconds, issued_at.nanos);
            return Err(Rejection::InvalidTimestamp { command_id: command_id_owned(), seconds, nanos });
        }
        let issued = i128::from(issued_at.seconds) * 1_000_000_000 + i128::from(issued_at.nanos);
        let now = self.wall_clock.now_unix_nanos();
        if issued - now > nanos(self.config.max_future_skew) {
            return Err(Rejection::IssuedInFuture { command_id: command_id_owned(), ahead: duration(issued - now) });
        }
        if now - issued > nanos(self.config.max_age) {
            return Err(Rejection::StaleCommand { command_id: command_id_owned(), age: duration(now - issued) });
        }
        match self.ledger.try_register(command_id) {
            Registration::Registered => Ok(()),
            Registration::Replayed => Err(Rejection::NonceReplayed { command_id: command_id_owned() }),
            Registration::Full { capacity } => {
                Err(Rejection::VerifierUnavailable { cause: UnavailableCause::NonceLedgerFull { capacity } })
            }
        }
    }
}

impl fmt::Debug for CommandVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandVerifier")
            .field("keys", &self.keys)
            .field("config", &self.config)
            .field("wall_clock", &self.wall_clock)
            .field("ledger", &self.ledger)
            .finish()
    }
}

/// Bytes that passed the signature check (`before` then `after`: the legacy form's command
/// around its signature entry; `after` is empty otherwise), the id of the key that matched, and
/// the form they came in.
struct Authenticated<'a> {
    before: &'a [u8],
    after: &'a [u8],
    key_id: KeyId<'a>,
    form: CommandForm,
}

/// How the envelope form names the key that matched: by the ring's shared copy of its id (what
/// a [`VerifiedCommand`] keeps), or by the envelope's own text (what [`Verified::View`] borrows).
#[derive(Clone, Copy)]
enum KeyUse {
    Share,
    Borrow,
}

/// The id of the key whose signature matched.
enum KeyId<'a> {
    /// The ring's copy.
    Shared(Arc<str>),
    /// The key id the envelope named ([`DEFAULT_KEY_ID`] when it named none): the same text as
    /// the ring's id, not shared.
    Borrowed(&'a str),
}

impl KeyId<'_> {
    /// The id as a [`VerifiedCommand`] keeps it (a borrowed one is copied: only the view path's
    /// rare fallbacks to the owned path do that).
    fn into_shared(self) -> Arc<str> {
        match self {
            Self::Shared(id) => id,
            Self::Borrowed(id) => Arc::from(id),
        }
    }
}

/// `verifier_unavailable` for an empty key ring.
fn check_available(keys: &Keys) -> Result<(), Rejection> {
    if keys.is_empty() {
        return Err(Rejection::VerifierUnavailable { cause: UnavailableCause::NoKeyConfigured });
    }
    Ok(())
}

/// Checks a signature with the key `key_id` (`verify` runs the constant-time check); the ring's
/// shared copy of the id when it matches.
fn check_signature<'k>(
    keys: &'k Keys,
    key_id: &str,
    verify: impl FnOnce(&SigningKey) -> bool,
) -> Result<&'k Arc<str>, Rejection> {
    match keys.get_key_value(key_id) {
        None => Err(Rejection::UnknownKey { key_id: key_id.to_owned() }),
        Some((id, key)) if verify(key) => Ok(id),
        Some(_) => Err(Rejection::InvalidSignature { key_id: Some(key_id.to_owned()) }),
    }
}

/// Earliest valid `google.protobuf.Timestamp`: 0001-01-01T00:00:00Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// Latest valid `google.protobuf.Timestamp` second: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// Whether `ts` is a valid `google.protobuf.Timestamp`: `nanos` in `0..=999_999_999` and
/// `seconds` within years 0001 to 9999 (what RFC 3339 can write).
fn timestamp_valid(ts: &leyline::wkt::Timestamp) -> bool {
    (0..=999_999_999).contains(&ts.nanos) && (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&ts.seconds)
}

fn decode(buf: impl Buf) -> Result<AdaptationCommand, Rejection> {
    AdaptationCommand::decode(buf).map_err(|e| Rejection::MalformedCommand { detail: e.to_string() })
}

fn nanos(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
}

fn duration(nanos: i128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bad_ones_are_refused() {
        VerifierConfig::default().validate().unwrap();
        let short_ttl = VerifierConfig { nonce_ttl: Duration::from_secs(119), ..Default::default() };
        assert!(matches!(short_ttl.validate(), Err(Error::InvalidConfig { field: "nonce_ttl", .. })));
        let zero = VerifierConfig { max_command_bytes: 0, ..Default::default() };
        assert!(matches!(CommandVerifier::with_config(KeyRing::new(), zero), Err(Error::InvalidConfig { .. })));
    }

    #[test]
    fn verifier_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CommandVerifier>();
        assert_send_sync::<KeyRing>();
    }
}
