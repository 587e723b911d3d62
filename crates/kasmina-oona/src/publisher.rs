//! Telemetry and system state out: a sink that never blocks the trainer, and a background task
//! that writes to Redis behind the `bus_publish` breaker.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kasmina_runtime::reexports::security::KeyRing;
use kasmina_runtime::reexports::telemetry::{self, TelemetrySink};
use kasmina_safety::{BreakerConfig, CircuitBreaker};
use leyline::{BusMessageType, Message, SystemStatePacket, TelemetryLevel, TelemetryPacket};
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use crate::entry::encode_entry;
use crate::{OonaConfig, OonaError};

/// What the publisher has done.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Entries written.
    pub published: AtomicU64,
    /// NORMAL packets dropped (buffer full, or Redis away).
    pub dropped: AtomicU64,
    /// CRITICAL packets that did not fit their bounded buffer.
    pub critical_overflow: AtomicU64,
    /// Writes that failed (and were retried, for CRITICAL packets).
    pub failures: AtomicU64,
}

/// One entry to write.
#[derive(Debug, Clone)]
struct Outgoing {
    stream: String,
    fields: [(&'static str, Vec<u8>); 2],
}

#[derive(Debug)]
struct Shared {
    config: OonaConfig,
    keys: KeyRing,
    normal: Mutex<VecDeque<Outgoing>>,
    critical: Mutex<VecDeque<Outgoing>>,
    notify: Notify,
    stats: PublisherStats,
}

/// A telemetry sink that publishes to Oona: every packet to the telemetry stream, a CRITICAL
/// one to the emergency stream as well. `send` only enqueues; a task started by
/// [`OonaSink::start`] writes.
#[derive(Debug, Clone)]
pub struct OonaSink {
    shared: Arc<Shared>,
}

impl OonaSink {
    /// The sink and its writer task, spawned on the current tokio runtime; the task ends when
    /// `stop` turns true (after one last attempt at what is queued).
    pub async fn start(
        config: OonaConfig,
        keys: KeyRing,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), OonaError> {
        config.validate()?;
        let client = redis::Client::open(config.url.as_str())?;
        let conn = ConnectionManager::new(client).await?;
        let shared = Arc::new(Shared {
            config,
            keys,
            normal: Mutex::new(VecDeque::new()),
            critical: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            stats: PublisherStats::default(),
        });
        let task = tokio::spawn(writer(Arc::clone(&shared), conn, stop));
        Ok((Self { shared }, task))
    }

    /// The counters.
    pub fn stats(&self) -> &PublisherStats {
        &self.shared.stats
    }

    /// Entries waiting to be written (NORMAL, CRITICAL).
    pub fn queued(&self) -> (usize, usize) {
        (self.shared.normal.lock().len(), self.shared.critical.lock().len())
    }

    /// Queues a `SystemStatePacket` for the normal stream (the trainer calls it each epoch).
    pub fn publish_state(&self, packet: &SystemStatePacket) -> Result<(), OonaError> {
        let fields = encode_entry(BusMessageType::SystemState, packet.encode_to_vec(), &self.shared.keys)?;
        self.push_normal(Outgoing { stream: self.shared.config.normal_stream.clone(), fields });
        Ok(())
    }

    fn push_normal(&self, out: Outgoing) {
        let mut q = self.shared.normal.lock();
        if q.len() >= self.shared.config.publish_buffer {
            self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(out);
        drop(q);
        self.shared.notify.notify_one();
    }

    fn push_critical(&self, out: Outgoing) {
        let mut q = self.shared.critical.lock();
        if q.len() >= self.shared.config.critical_buffer {
            self.shared.stats.critical_overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(out);
        drop(q);
        self.shared.notify.notify_one();
    }
}

impl TelemetrySink for OonaSink {
    fn send(&self, packet: &TelemetryPacket) -> telemetry::Result<()> {
        let fields = encode_entry(BusMessageType::Telemetry, packet.encode_to_vec(), &self.shared.keys)
            .map_err(|e| telemetry::Error::Sink { sink: "oona", reason: e.to_string() })?;
        let to = |stream: &str| Outgoing { stream: stream.to_owned(), fields: fields.clone() };
        if packet.level() == TelemetryLevel::Critical {
            self.push_critical(to(&self.shared.config.emergency_stream));
            self.push_critical(to(&self.shared.config.telemetry_stream));
        } else {
            self.push_normal(to(&self.shared.config.telemetry_stream));
        }
        Ok(())
    }
}

/// Writes queued entries, CRITICAL first. A failed CRITICAL write stays at the front of its
/// queue (retried with backoff once Redis is back); a failed NORMAL one is dropped and counted.
async fn writer(shared: Arc<Shared>, mut conn: ConnectionManager, mut stop: tokio::sync::watch::Receiver<bool>) {
    let breaker = CircuitBreaker::new("bus_publish", BreakerConfig::DEFAULT, quanta::Clock::new()).ok();
    let mut backoff = Duration::from_millis(20);
    loop {
        let stopping = *stop.borrow();
        let (critical, next) = {
            let c = shared.critical.lock().front().cloned();
            match c {
                Some(c) => (true, Some(c)),
                None => (false, shared.normal.lock().pop_front()),
            }
        };
        let Some(out) = next else {
            if stopping {
                return;
            }
            tokio::select! {
                _ = shared.notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        let admitted = breaker.as_ref().is_none_or(|b| b.allow().is_ok());
        // A connection that is re-establishing must not hold the queue: one second at most.
        let written = admitted
            && matches!(
                tokio::time::timeout(Duration::from_secs(1), write(&mut conn, &shared.config, &out)).await,
                Ok(Ok(()))
            );
        if written {
            backoff = Duration::from_millis(20);
            shared.stats.published.fetch_add(1, Ordering::Relaxed);
            if let Some(b) = &breaker {
                let _ = b.record_success();
            }
            if critical {
                shared.critical.lock().pop_front();
            }
            continue;
        }
        shared.stats.failures.fetch_add(1, Ordering::Relaxed);
        if admitted && let Some(b) = &breaker {
            let _ = b.record_failure("redis_unavailable");
        }
        if !critical {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn write(conn: &mut ConnectionManager, config: &OonaConfig, out: &Outgoing) -> Result<(), redis::RedisError> {
    use redis::AsyncCommands;
    let maxlen = redis::streams::StreamMaxlen::Approx(config.max_stream_length);
    let _: Option<String> = conn.xadd_maxlen(out.stream.as_str(), maxlen, "*", &out.fields).await?;
    Ok(())
}
