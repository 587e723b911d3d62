//! Kasmina on Oona, Esper's message bus on Redis Streams (decisions D12): commands in, telemetry
//! and system state out, compatible with Esper's Python `OonaClient`.
//!
//! - An entry has two fields: `payload`, an encoded Leyline `BusEnvelope`, and `signature`,
//!   standard padded base64 of HMAC-SHA256 over the exact envelope bytes (key `default`).
//! - [`Consumer`] reads `oona.emergency` first, then `oona.normal`, in a consumer group (the
//!   consumer is the Kasmina instance's id). Each `ADAPTATION_COMMAND` goes through
//!   `Kasmina::submit_bus_entry` — the same verification and the same safe points as a gRPC
//!   command — and its entry is acknowledged once the command has its receipt (at-least-once:
//!   a redelivery is `nonce_replayed`). Unsigned, badly signed or undecodable entries are
//!   acknowledged and copied to `oona.deadletter` with the reason. Entries a dead consumer left
//!   pending are claimed after [`OonaConfig::claim_idle`]. A lost connection is retried with
//!   backoff.
//! - [`OonaSink`] is a telemetry sink: packets go to `oona.telemetry`, CRITICAL ones to
//!   `oona.emergency` too, from a background task behind the `bus_publish` breaker. Training
//!   never waits on Redis: NORMAL packets are dropped and counted when the buffer is full or
//!   Redis is away; CRITICAL ones are kept (bounded) and delivered when Redis is back.
//!   [`OonaSink::publish_state`] puts a `SystemStatePacket` on `oona.normal`.
//!
//! Layer L3: depends on `kasmina-runtime`, `kasmina-safety`, `leyline` and the `redis` crate.
//! Main types: [`OonaConfig`], [`Consumer`], [`OonaSink`], [`OonaError`].

mod consumer;
mod entry;
mod publisher;

use std::time::Duration;

pub use consumer::{Consumer, ConsumerStats};
pub use entry::{BusEntry, encode_entry};
pub use publisher::{OonaSink, PublisherStats};

/// What can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OonaError {
    /// Redis refused a command or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A setting is not valid.
    #[error("invalid Oona setting `{field}`: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// Streams, group and limits (D12's names by default; each also from an `OONA_*` variable).
#[derive(Debug, Clone, PartialEq)]
pub struct OonaConfig {
    /// `redis://host:port` (`OONA_URL`).
    pub url: String,
    /// Commands and system state (`OONA_NORMAL_STREAM`, default `oona.normal`).
    pub normal_stream: String,
    /// Commands read first, and CRITICAL telemetry (`OONA_EMERGENCY_STREAM`, `oona.emergency`).
    pub emergency_stream: String,
    /// Telemetry packets (`OONA_TELEMETRY_STREAM`, `oona.telemetry`).
    pub telemetry_stream: String,
    /// Policy updates (`OONA_POLICY_STREAM`, `oona.policy`; not consumed by Kasmina).
    pub policy_stream: String,
    /// Entries refused with their reason (`OONA_DEADLETTER_STREAM`, `oona.deadletter`).
    pub dead_letter_stream: String,
    /// Consumer group (`OONA_GROUP`, `kasmina`).
    pub group: String,
    /// This instance's consumer name (`OONA_CONSUMER`, `kasmina-<pid>`).
    pub consumer: String,
    /// Approximate MAXLEN of the streams Kasmina publishes to (`OONA_MAX_STREAM_LENGTH`, 100 000).
    pub max_stream_length: usize,
    /// How long a read blocks (`OONA_BLOCK_MS`, 200 ms).
    pub block: Duration,
    /// Entries per read (`OONA_BATCH`, 64).
    pub batch: usize,
    /// Pending entries idle this long are claimed from their consumer (`OONA_CLAIM_IDLE_MS`, 30 s).
    pub claim_idle: Duration,
    /// NORMAL packets buffered for publishing (`OONA_PUBLISH_BUFFER`, 1024).
    pub publish_buffer: usize,
    /// CRITICAL packets kept while Redis is away (`OONA_CRITICAL_BUFFER`, 4096).
    pub critical_buffer: usize,
}

impl OonaConfig {
    /// D12's defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            normal_stream: "oona.normal".into(),
            emergency_stream: "oona.emergency".into(),
            telemetry_stream: "oona.telemetry".into(),
            policy_stream: "oona.policy".into(),
            dead_letter_stream: "oona.deadletter".into(),
            group: "kasmina".into(),
            consumer: format!("kasmina-{}", std::process::id()),
            max_stream_length: 100_000,
            block: Duration::from_millis(200),
            batch: 64,
            claim_idle: Duration::from_secs(30),
            publish_buffer: 1024,
            critical_buffer: 4096,
        }
    }

    /// The defaults overridden by `OONA_*` variables read through `lookup` (the process
    /// environment: `|k| std::env::var(k).ok()`); `url` when `OONA_URL` is unset.
    pub fn from_lookup(url: Option<&str>, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, OonaError> {
        let url = lookup("OONA_URL").or_else(|| url.map(str::to_owned)).ok_or(OonaError::Config {
            field: "url",
            reason: "no Redis URL (pass --oona redis://HOST:PORT or set OONA_URL)".into(),
        })?;
        let mut c = Self::new(url);
        for (var, field) in [
            ("OONA_NORMAL_STREAM", &mut c.normal_stream),
            ("OONA_EMERGENCY_STREAM", &mut c.emergency_stream),
            ("OONA_TELEMETRY_STREAM", &mut c.telemetry_stream),
            ("OONA_POLICY_STREAM", &mut c.policy_stream),
            ("OONA_DEADLETTER_STREAM", &mut c.dead_letter_stream),
            ("OONA_GROUP", &mut c.group),
            ("OONA_CONSUMER", &mut c.consumer),
        ] {
            if let Some(v) = lookup(var) {
                *field = v;
            }
        }
        let number = |var: &'static str| -> Result<Option<u64>, OonaError> {
            lookup(var)
                .map(|v| v.trim().parse::<u64>().map_err(|e| OonaError::Config { field: var, reason: e.to_string() }))
                .transpose()
        };
        if let Some(n) = number("OONA_MAX_STREAM_LENGTH")? {
            c.max_stream_length = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = number("OONA_BLOCK_MS")? {
            c.block = Duration::from_millis(n);
        }
        if let Some(n) = number("OONA_BATCH")? {
            c.batch = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = number("OONA_CLAIM_IDLE_MS")? {
            c.claim_idle = Duration::from_millis(n);
        }
        if let Some(n) = number("OONA_PUBLISH_BUFFER")? {
            c.publish_buffer = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = number("OONA_CRITICAL_BUFFER")? {
            c.critical_buffer = usize::try_from(n).unwrap_or(usize::MAX);
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), OonaError> {
        let bad = |field, reason: &str| Err(OonaError::Config { field, reason: reason.into() });
        if !self.url.starts_with("redis://") && !self.url.starts_with("rediss://") {
            return bad("url", "must start with redis:// or rediss://");
        }
        let streams = [&self.normal_stream, &self.emergency_stream, &self.telemetry_stream, &self.dead_letter_stream];
        if streams.iter().any(|s| s.is_empty()) || self.group.is_empty() || self.consumer.is_empty() {
            return bad("streams", "stream, group and consumer names must not be empty");
        }
        if self.batch == 0 || self.publish_buffer == 0 || self.critical_buffer == 0 || self.max_stream_length == 0 {
            return bad("limits", "batch, buffers and the stream length must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_overrides_the_defaults_and_bad_values_are_typed_errors() {
        let env = |k: &str| match k {
            "OONA_URL" => Some("redis://10.0.0.1:6380".to_owned()),
            "OONA_NORMAL_STREAM" => Some("esper.normal".to_owned()),
            "OONA_BATCH" => Some("8".to_owned()),
            _ => None,
        };
        let c = OonaConfig::from_lookup(Some("redis://127.0.0.1:6379"), env).expect("config");
        assert_eq!((c.url.as_str(), c.normal_stream.as_str(), c.batch), ("redis://10.0.0.1:6380", "esper.normal", 8));
        assert_eq!(c.emergency_stream, "oona.emergency");
        let err = OonaConfig::from_lookup(None, |_| None).unwrap_err();
        assert!(err.to_string().contains("OONA_URL"), "{err}");
        let err =
            OonaConfig::from_lookup(Some("redis://x"), |k| (k == "OONA_BATCH").then(|| "many".into())).unwrap_err();
        assert!(matches!(err, OonaError::Config { field: "OONA_BATCH", .. }), "{err}");
        assert!(OonaConfig::new("http://x").validate().is_err());
    }
}
