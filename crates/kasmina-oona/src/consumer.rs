//! Commands in: consumer-group reads (emergency first), verification through the runtime,
//! acknowledgement after the receipt, dead letters, claiming a dead consumer's entries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kasmina_runtime::{Kasmina, Ticket};
use leyline::{BusEnvelope, BusMessageType, Message};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply};

use crate::entry::BusEntry;
use crate::{OonaConfig, OonaError};

/// Refusals that mean the entry itself is bad (not a replay or a stale command): it goes to
/// the dead-letter stream.
const DEAD_LETTER_REASONS: &[&str] =
    &["missing_signature", "invalid_signature", "unknown_key", "malformed_command", "oversized_command"];

/// What the consumer has done (read at any time, from any thread).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Commands verified and queued.
    pub accepted: AtomicU64,
    /// Commands refused (replays, stale, bad entries).
    pub rejected: AtomicU64,
    /// Entries copied to the dead-letter stream.
    pub dead_lettered: AtomicU64,
    /// Entries acknowledged.
    pub acked: AtomicU64,
    /// Entries claimed from an idle consumer.
    pub claimed: AtomicU64,
    /// Entries not for Kasmina (other message types, bootstrap entries), acknowledged.
    pub ignored: AtomicU64,
    /// Rounds that failed on Redis and were retried.
    pub errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A command waiting for its receipt before its entry is acknowledged.
struct InFlight {
    stream: String,
    id: String,
    ticket: Ticket,
}

/// Reads commands from `oona.emergency` then `oona.normal` into a runtime.
pub struct Consumer {
    config: OonaConfig,
    kasmina: Kasmina,
    conn: ConnectionManager,
    in_flight: Vec<InFlight>,
    stats: Arc<ConsumerStats>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Connects (a reconnecting connection) and creates the consumer group on both command
    /// streams if needed (from the start of each stream: nothing published before Kasmina
    /// started is missed; what is stale by now is refused as such).
    pub async fn connect(config: OonaConfig, kasmina: Kasmina) -> Result<Self, OonaError> {
        config.validate()?;
        let client = redis::Client::open(config.url.as_str())?;
        let conn = ConnectionManager::new(client).await?;
        let mut consumer = Self { config, kasmina, conn, in_flight: Vec::new(), stats: Arc::default() };
        consumer.ensure_groups().await?;
        Ok(consumer)
    }

    /// Creates the consumer group on both command streams unless it exists (after a Redis
    /// restart without persistence it no longer does).
    async fn ensure_groups(&mut self) -> Result<(), OonaError> {
        for stream in [self.config.emergency_stream.clone(), self.config.normal_stream.clone()] {
            let created: Result<(), redis::RedisError> =
                self.conn.xgroup_create_mkstream(stream.as_str(), self.config.group.as_str(), "0").await;
            match created {
                Ok(()) => {}
                Err(e) if e.to_string().contains("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.stats)
    }

    /// Commands read and not yet acknowledged (waiting for their safe point).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// One round: acknowledge what has its receipt, claim idle entries of other consumers,
    /// read the emergency stream, then (when it had nothing) block on the normal stream.
    /// Returns how many entries it handled.
    pub async fn poll(&mut self) -> Result<usize, OonaError> {
        self.ack_done().await?;
        let mut handled = 0;
        for stream in [self.config.emergency_stream.clone(), self.config.normal_stream.clone()] {
            handled += self.claim(&stream).await?;
        }
        let emergency = self.config.emergency_stream.clone();
        handled += self.read(&emergency, None).await?;
        if handled == 0 {
            let normal = self.config.normal_stream.clone();
            let block = usize::try_from(self.config.block.as_millis()).unwrap_or(usize::MAX);
            handled += self.read(&normal, Some(block)).await?;
        }
        Ok(handled)
    }

    /// Polls until `stop` turns true; a failed round is counted and retried after a backoff
    /// (the connection reconnects by itself), so a Redis restart only pauses the consumer.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(50);
        while !*stop.borrow() {
            match self.poll().await {
                Ok(_) => backoff = Duration::from_millis(50),
                Err(e) => {
                    bump(&self.stats.errors);
                    if e.to_string().contains("NOGROUP") {
                        // Redis came back empty: the group is gone, and with it the entries
                        // still in flight (their commands are queued or applied already).
                        let _ = self.ensure_groups().await;
                        self.in_flight.retain(|f| f.ticket.try_receipt().is_none());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn read(&mut self, stream: &str, block_ms: Option<usize>) -> Result<usize, OonaError> {
        let mut opts = StreamReadOptions::default()
            .group(self.config.group.as_str(), self.config.consumer.as_str())
            .count(self.config.batch);
        if let Some(ms) = block_ms {
            opts = opts.block(ms);
        }
        let reply: Option<StreamReadReply> = self.conn.xread_options(&[stream], &[">"], &opts).await?;
        let entries: Vec<BusEntry> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|e| BusEntry::from_fields(e.id, &e.map))
            .collect();
        let n = entries.len();
        for entry in entries {
            self.handle(stream, entry).await?;
        }
        Ok(n)
    }

    async fn claim(&mut self, stream: &str) -> Result<usize, OonaError> {
        let idle = u64::try_from(self.config.claim_idle.as_millis()).unwrap_or(u64::MAX);
        let opts = StreamAutoClaimOptions::default().count(self.config.batch);
        let reply: StreamAutoClaimReply = self
            .conn
            .xautoclaim_options(stream, self.config.group.as_str(), self.config.consumer.as_str(), idle, "0-0", opts)
            .await?;
        let mut n = 0;
        for e in reply.claimed {
            // Our own in-flight entries are pending too; they are not claimed from anyone.
            if self.in_flight.iter().any(|f| f.id == e.id && f.stream == stream) {
                continue;
            }
            bump(&self.stats.claimed);
            self.handle(stream, BusEntry::from_fields(e.id, &e.map)).await?;
            n += 1;
        }
        Ok(n)
    }

    async fn handle(&mut self, stream: &str, entry: BusEntry) -> Result<(), OonaError> {
        if !entry.has_payload {
            bump(&self.stats.ignored);
            return self.ack(stream, &entry.id).await;
        }
        // Other message types on these streams (the system state Kasmina itself publishes,
        // field reports) are for other consumers.
        if let Ok(envelope) = BusEnvelope::decode(entry.payload.as_slice())
            && envelope.message_type() != BusMessageType::AdaptationCommand
        {
            bump(&self.stats.ignored);
            return self.ack(stream, &entry.id).await;
        }
        match self.kasmina.submit_bus_entry(&entry.payload, &entry.signature) {
            Ok(ticket) => {
                bump(&self.stats.accepted);
                self.in_flight.push(InFlight { stream: stream.to_owned(), id: entry.id, ticket });
                Ok(())
            }
            Err(receipt) => {
                bump(&self.stats.rejected);
                if DEAD_LETTER_REASONS.contains(&receipt.reason.as_str()) {
                    self.dead_letter(stream, &entry, &receipt.reason).await?;
                }
                self.ack(stream, &entry.id).await
            }
        }
    }

    async fn dead_letter(&mut self, stream: &str, entry: &BusEntry, reason: &str) -> Result<(), OonaError> {
        let fields: [(&str, &[u8]); 5] = [
            ("payload", &entry.payload),
            ("signature", entry.signature.as_bytes()),
            ("reason", reason.as_bytes()),
            ("stream", stream.as_bytes()),
            ("id", entry.id.as_bytes()),
        ];
        let maxlen = redis::streams::StreamMaxlen::Approx(self.config.max_stream_length);
        let _: Option<String> =
            self.conn.xadd_maxlen(self.config.dead_letter_stream.as_str(), maxlen, "*", &fields).await?;
        bump(&self.stats.dead_lettered);
        Ok(())
    }

    async fn ack(&mut self, stream: &str, id: &str) -> Result<(), OonaError> {
        let _: u64 = self.conn.xack(stream, self.config.group.as_str(), &[id]).await?;
        bump(&self.stats.acked);
        Ok(())
    }

    /// Acknowledges every entry whose command has its final receipt.
    async fn ack_done(&mut self) -> Result<(), OonaError> {
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].ticket.try_receipt().is_some() {
                let done = self.in_flight.swap_remove(i);
                self.ack(&done.stream, &done.id).await?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }
}
