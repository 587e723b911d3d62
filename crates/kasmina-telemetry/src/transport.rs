//! The transport: a bounded queue for normal packets, an emergency bypass that never drops and
//! never blocks, delivery to a sink, and subscribers (decisions D9).
//!
//! Routing, by the packet's level and health:
//!
//! | packet | route | when the normal queue is full |
//! |---|---|---|
//! | level ERROR or CRITICAL, or health CRITICAL | emergency bypass (unbounded) | — |
//! | level WARNING (priority HIGH) | normal queue | spills into the bypass (counted) |
//! | level INFO (priority NORMAL) | normal queue | dropped (counted) |
//!
//! `emit` never blocks: the normal queue is a bounded channel written with `try_send`, the bypass an
//! unbounded lock-free channel. The consumer (the background worker of [`Telemetry::spawn`], or
//! whoever calls [`Telemetry::drain`]) always empties the bypass before taking each normal packet,
//! and delivers one packet at a time, so packets from one producer on one route arrive in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError, bounded, unbounded};
use leyline::{HealthStatus, TelemetryLevel, TelemetryPacket};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::packet::event_level;
use crate::sink::TelemetrySink;

/// Transport settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Capacity of the normal queue, in packets (default 10 000, the design's telemetry buffer).
    pub queue_capacity: usize,
    /// Capacity of each subscriber's normal queue, in packets (default 1 024).
    pub subscriber_capacity: usize,
    /// Whether every emitted event is also logged through `tracing` (target
    /// [`ECHO_TARGET`](crate::ECHO_TARGET); default true).
    pub echo_to_tracing: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { queue_capacity: 10_000, subscriber_capacity: 1_024, echo_to_tracing: true }
    }
}

impl TelemetryConfig {
    fn validate(&self) -> Result<()> {
        if self.queue_capacity == 0 {
            return Err(Error::InvalidConfig { field: "queue_capacity", reason: "must be at least 1" });
        }
        if self.subscriber_capacity == 0 {
            return Err(Error::InvalidConfig { field: "subscriber_capacity", reason: "must be at least 1" });
        }
        Ok(())
    }
}

/// Which path a packet takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// The bounded normal queue.
    Normal,
    /// The emergency bypass: never dropped, never blocks.
    Emergency,
}

impl Route {
    /// The route of a packet: emergency for level ERROR or CRITICAL or health CRITICAL, else normal.
    pub fn of(packet: &TelemetryPacket) -> Route {
        let level = packet_level_field(packet);
        let critical_health = packet.system_health.as_ref().is_some_and(|h| h.status() == HealthStatus::Critical);
        if level >= TelemetryLevel::Error || critical_health { Route::Emergency } else { Route::Normal }
    }
}

/// The packet's own level field, falling back to its events when unset.
fn packet_level_field(packet: &TelemetryPacket) -> TelemetryLevel {
    match TelemetryLevel::try_from(packet.level) {
        Ok(TelemetryLevel::Unspecified) | Err(_) => {
            packet.events.iter().map(event_level).max().unwrap_or(TelemetryLevel::Info)
        }
        Ok(level) => level,
    }
}

/// What happened to an emitted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmitOutcome {
    /// Queued on the normal queue.
    Queued,
    /// Sent through the emergency bypass.
    Bypassed,
    /// A WARNING packet found the normal queue full and took the bypass instead.
    Spilled,
    /// An INFO packet found the normal queue full and was dropped (counted).
    Dropped,
}

/// Counters of a [`Telemetry`] handle (cumulative since it was created) and its queue depths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetryStats {
    /// Packets passed to `emit`.
    pub emitted: u64,
    /// Packets put on the normal queue.
    pub queued: u64,
    /// Packets sent through the emergency bypass by route.
    pub bypassed: u64,
    /// WARNING packets that found the normal queue full and took the bypass.
    pub spilled: u64,
    /// INFO packets dropped because the normal queue was full.
    pub dropped: u64,
    /// Packets the sink accepted.
    pub delivered: u64,
    /// Packets the sink refused (each is lost; the error is returned by `drain`).
    pub sink_failures: u64,
    /// Packets dropped from full subscriber queues (never ERROR or CRITICAL ones).
    pub subscriber_drops: u64,
    /// Subscribers cut off because they stopped reading: their ERROR/CRITICAL queue filled up
    /// (a stalled or vanished client never grows memory without bound or blocks anyone).
    pub subscribers_evicted: u64,
    /// Packets waiting on the normal queue.
    pub normal_pending: usize,
    /// Packets waiting on the emergency bypass.
    pub emergency_pending: usize,
}

#[derive(Debug, Default)]
struct Counters {
    emitted: AtomicU64,
    queued: AtomicU64,
    bypassed: AtomicU64,
    spilled: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    sink_failures: AtomicU64,
    subscriber_drops: AtomicU64,
    subscribers_evicted: AtomicU64,
}

#[derive(Debug)]
struct SubscriberTx {
    min_level: TelemetryLevel,
    emergency: Sender<TelemetryPacket>,
    normal: Sender<TelemetryPacket>,
    dropped: Arc<AtomicU64>,
    evicted: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Core {
    config: TelemetryConfig,
    normal_tx: Sender<TelemetryPacket>,
    normal_rx: Receiver<TelemetryPacket>,
    emergency_tx: Sender<TelemetryPacket>,
    emergency_rx: Receiver<TelemetryPacket>,
    sink: Box<dyn TelemetrySink>,
    /// Held by whoever consumes, so one consumer at a time takes and delivers packets.
    consumer: Mutex<()>,
    subscribers: Mutex<Vec<SubscriberTx>>,
    counters: Counters,
}

impl Core {
    /// Delivers everything available, emergency first before every normal packet.
    fn drain(&self) -> Result<usize> {
        let _consumer = self.consumer.lock();
        let mut delivered = 0;
        let mut first_error = None;
        loop {
            let packet = match self.emergency_rx.try_recv() {
                Ok(p) => p,
                Err(_) => match self.normal_rx.try_recv() {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            match self.deliver(&packet) {
                Ok(()) => delivered += 1,
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(delivered),
        }
    }

    fn deliver(&self, packet: &TelemetryPacket) -> Result<()> {
        self.publish(packet);
        match self.sink.send(packet) {
            Ok(()) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.counters.sink_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn publish(&self, packet: &TelemetryPacket) {
        let mut subscribers = self.subscribers.lock();
        if subscribers.is_empty() {
            return;
        }
        let level = packet_level_field(packet);
        let route = Route::of(packet);
        subscribers.retain(|sub| {
            if level < sub.min_level {
                return true;
            }
            match route {
                // ERROR and CRITICAL packets are never dropped for a reading subscriber; one whose
                // queue of them is full has stopped reading and is cut off (counted) instead.
                Route::Emergency => match sub.emergency.try_send(packet.clone()) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        sub.evicted.store(true, Ordering::SeqCst);
                        self.counters.subscribers_evicted.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                },
                Route::Normal => match sub.normal.try_send(packet.clone()) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        sub.dropped.fetch_add(1, Ordering::Relaxed);
                        self.counters.subscriber_drops.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                },
            }
        });
    }
}

#[derive(Debug)]
struct Worker {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    core: Arc<Core>,
    worker: Mutex<Option<Worker>>,
}

impl Shared {
    fn stop_worker(&self) -> Result<()> {
        let worker = self.worker.lock().take();
        if let Some(worker) = worker {
            // The worker may already be gone; either way it is joined below.
            let _ = worker.stop.send(());
            worker.handle.join().map_err(|_| Error::Worker { reason: "delivery thread panicked".to_owned() })?;
        }
        Ok(())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Best effort on the last handle: stop the worker, deliver what is pending, flush.
        let _ = self.stop_worker();
        let _ = self.core.drain();
        let _ = self.core.sink.flush();
    }
}

/// The telemetry transport handle: cheap to clone, `Send + Sync`, shared by every producer.
///
/// Built with [`Telemetry::new`] (delivery happens when someone calls [`drain`](Telemetry::drain)
/// or [`flush`](Telemetry::flush), e.g. the runtime at its safe points) or [`Telemetry::spawn`]
/// (a background thread delivers as packets arrive). Dropping the last handle stops the worker,
/// delivers what is pending and flushes the sink.
#[derive(Debug, Clone)]
pub struct Telemetry {
    shared: Arc<Shared>,
}

impl Telemetry {
    /// A transport delivering to `sink` when [`drain`](Self::drain) or [`flush`](Self::flush) is called.
    pub fn new(sink: impl TelemetrySink + 'static, config: TelemetryConfig) -> Result<Self> {
        config.validate()?;
        let (normal_tx, normal_rx) = bounded(config.queue_capacity);
        let (emergency_tx, emergency_rx) = unbounded();
        let core = Core {
            config,
            normal_tx,
            normal_rx,
            emergency_tx,
            emergency_rx,
            sink: Box::new(sink),
            consumer: Mutex::new(()),
            subscribers: Mutex::new(Vec::new()),
            counters: Counters::default(),
        };
        Ok(Self { shared: Arc::new(Shared { core: Arc::new(core), worker: Mutex::new(None) }) })
    }

    /// A transport with a background thread (`kasmina-telemetry`) delivering to `sink` as packets
    /// arrive. Sink errors are counted in [`TelemetryStats::sink_failures`] and logged at WARN.
    pub fn spawn(sink: impl TelemetrySink + 'static, config: TelemetryConfig) -> Result<Self> {
        let telemetry = Self::new(sink, config)?;
        let core = Arc::clone(&telemetry.shared.core);
        let (stop, stop_rx) = bounded::<()>(1);
        let handle = std::thread::Builder::new()
            .name("kasmina-telemetry".to_owned())
            .spawn(move || worker_loop(&core, &stop_rx))
            .map_err(|e| Error::Worker { reason: e.to_string() })?;
        *telemetry.shared.worker.lock() = Some(Worker { stop, handle });
        Ok(telemetry)
    }

    /// The configuration this transport runs with.
    pub fn config(&self) -> TelemetryConfig {
        self.shared.core.config
    }

    /// Emits a packet without blocking (see the module docs for routing and back-pressure).
    pub fn emit(&self, packet: TelemetryPacket) -> EmitOutcome {
        let core = &self.shared.core;
        core.counters.emitted.fetch_add(1, Ordering::Relaxed);
        if core.config.echo_to_tracing {
            crate::bridge::echo(&packet);
        }
        if Route::of(&packet) == Route::Emergency {
            return self.bypass(packet, &core.counters.bypassed, EmitOutcome::Bypassed);
        }
        let warning = packet_level_field(&packet) >= TelemetryLevel::Warning;
        match core.normal_tx.try_send(packet) {
            Ok(()) => {
                core.counters.queued.fetch_add(1, Ordering::Relaxed);
                EmitOutcome::Queued
            }
            Err(TrySendError::Full(packet) | TrySendError::Disconnected(packet)) => {
                if warning {
                    self.bypass(packet, &core.counters.spilled, EmitOutcome::Spilled)
                } else {
                    core.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    EmitOutcome::Dropped
                }
            }
        }
    }

    fn bypass(&self, packet: TelemetryPacket, counter: &AtomicU64, outcome: EmitOutcome) -> EmitOutcome {
        // The core owns the receiver for as long as this handle lives, so the channel is never
        // disconnected here and an unbounded send neither blocks nor fails.
        let _ = self.shared.core.emergency_tx.send(packet);
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    /// Delivers every pending packet now (emergency first), returning how many the sink accepted;
    /// the first sink error, if any, after trying every packet.
    pub fn drain(&self) -> Result<usize> {
        self.shared.core.drain()
    }

    /// [`drain`](Self::drain), then flushes the sink.
    pub fn flush(&self) -> Result<usize> {
        let delivered = self.drain();
        let flushed = self.shared.core.sink.flush();
        let delivered = delivered?;
        flushed.map(|()| delivered)
    }

    /// Stops the background worker (if any), delivers what is pending and flushes the sink. Later
    /// packets are still accepted and delivered by [`drain`](Self::drain).
    pub fn shutdown(&self) -> Result<usize> {
        self.shared.stop_worker()?;
        self.flush()
    }

    /// Counters and queue depths.
    pub fn stats(&self) -> TelemetryStats {
        let core = &self.shared.core;
        let c = &core.counters;
        TelemetryStats {
            emitted: c.emitted.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            bypassed: c.bypassed.load(Ordering::Relaxed),
            spilled: c.spilled.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            sink_failures: c.sink_failures.load(Ordering::Relaxed),
            subscriber_drops: c.subscriber_drops.load(Ordering::Relaxed),
            subscribers_evicted: c.subscribers_evicted.load(Ordering::Relaxed),
            normal_pending: core.normal_rx.len(),
            emergency_pending: core.emergency_rx.len(),
        }
    }

    /// Subscribes to every delivered packet whose level is at least `min_level` (the gRPC
    /// `StreamTelemetry` feed). Both of a subscriber's queues hold
    /// [`subscriber_capacity`](TelemetryConfig::subscriber_capacity) packets: normal packets are
    /// dropped (and counted) when its normal queue is full; ERROR and CRITICAL packets are never
    /// dropped for a subscriber that reads, and one that lets them pile up to the capacity has
    /// stopped reading and is cut off ([`Subscription::evicted`]; counted in
    /// [`TelemetryStats::subscribers_evicted`]). The sink still gets everything. Dropping the
    /// subscription unsubscribes.
    pub fn subscribe(&self, min_level: TelemetryLevel) -> Subscription {
        let capacity = self.shared.core.config.subscriber_capacity;
        let (emergency_tx, emergency) = bounded(capacity);
        let (normal_tx, normal) = bounded(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let evicted = Arc::new(AtomicBool::new(false));
        self.shared.core.subscribers.lock().push(SubscriberTx {
            min_level,
            emergency: emergency_tx,
            normal: normal_tx,
            dropped: Arc::clone(&dropped),
            evicted: Arc::clone(&evicted),
        });
        Subscription { emergency, normal, dropped, evicted, min_level }
    }

    /// Subscribers currently attached.
    pub fn subscribers(&self) -> usize {
        self.shared.core.subscribers.lock().len()
    }
}

fn worker_loop(core: &Core, stop: &Receiver<()>) {
    loop {
        let mut select = Select::new();
        let stop_index = select.recv(stop);
        select.recv(&core.emergency_rx);
        select.recv(&core.normal_rx);
        let ready = select.ready();
        if let Err(e) = core.drain() {
            tracing::warn!(target: "kasmina_telemetry::transport", error = %e, "telemetry sink failed");
        }
        if ready == stop_index {
            return;
        }
    }
}

/// A subscriber's feed of delivered packets (see [`Telemetry::subscribe`]). ERROR and CRITICAL
/// packets are received before normal ones that are waiting.
#[derive(Debug)]
pub struct Subscription {
    emergency: Receiver<TelemetryPacket>,
    normal: Receiver<TelemetryPacket>,
    dropped: Arc<AtomicU64>,
    evicted: Arc<AtomicBool>,
    min_level: TelemetryLevel,
}

impl Subscription {
    /// The lowest level this subscription receives.
    pub fn min_level(&self) -> TelemetryLevel {
        self.min_level
    }

    /// Normal packets dropped because this subscription's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether this subscription was cut off because it stopped reading (its ERROR/CRITICAL
    /// queue filled up); it receives what was queued, then nothing.
    pub fn evicted(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }

    /// Packets waiting to be received.
    pub fn pending(&self) -> usize {
        self.emergency.len() + self.normal.len()
    }

    /// The next packet if one is waiting.
    pub fn try_recv(&self) -> Option<TelemetryPacket> {
        self.emergency.try_recv().ok().or_else(|| self.normal.try_recv().ok())
    }

    /// Waits for the next packet; `None` once the transport is gone and nothing is left.
    pub fn recv(&self) -> Option<TelemetryPacket> {
        self.recv_inner(None)
    }

    /// Waits up to `timeout` for the next packet.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<TelemetryPacket> {
        self.recv_inner(Some(timeout))
    }

    fn recv_inner(&self, timeout: Option<Duration>) -> Option<TelemetryPacket> {
        if let Some(p) = self.try_recv() {
            return Some(p);
        }
        let mut select = Select::new();
        let emergency = select.recv(&self.emergency);
        select.recv(&self.normal);
        let index = match timeout {
            Some(t) => select.ready_timeout(t).ok()?,
            None => select.ready(),
        };
        let first = if index == emergency { &self.emergency } else { &self.normal };
        match first.try_recv() {
            Ok(p) => Some(p),
            // Ready because disconnected (the transport is gone): take whatever is left.
            Err(TryRecvError::Disconnected | TryRecvError::Empty) => self.try_recv(),
        }
    }
}

impl Iterator for Subscription {
    type Item = TelemetryPacket;

    fn next(&mut self) -> Option<TelemetryPacket> {
        self.recv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;
    use kasmina_clock::FixedWallClock;

    use crate::packet::{HealthInputs, TelemetryAssembler};
    use crate::sink::MemorySink;

    fn packet(level: TelemetryLevel) -> TelemetryPacket {
        let a = TelemetryAssembler::new(FixedWallClock::at(std::time::UNIX_EPOCH));
        a.assemble(&[], &[names::SEED_STATE.event_at(level, [("seed_id", "s")])], &HealthInputs::default())
    }

    #[test]
    fn routes_by_level_and_health() {
        assert_eq!(Route::of(&packet(TelemetryLevel::Info)), Route::Normal);
        assert_eq!(Route::of(&packet(TelemetryLevel::Warning)), Route::Normal);
        assert_eq!(Route::of(&packet(TelemetryLevel::Error)), Route::Emergency);
        assert_eq!(Route::of(&packet(TelemetryLevel::Critical)), Route::Emergency);
        let a = TelemetryAssembler::default();
        let critical_health =
            a.assemble(&[], &[], &HealthInputs { isolation_breaker_open: true, ..Default::default() });
        assert_eq!(Route::of(&critical_health), Route::Emergency);
    }

    #[test]
    fn full_queue_drops_info_spills_warning() {
        let sink = MemorySink::new();
        let t = Telemetry::new(sink.clone(), TelemetryConfig { queue_capacity: 2, ..Default::default() }).unwrap();
        assert_eq!(t.emit(packet(TelemetryLevel::Info)), EmitOutcome::Queued);
        assert_eq!(t.emit(packet(TelemetryLevel::Info)), EmitOutcome::Queued);
        assert_eq!(t.emit(packet(TelemetryLevel::Info)), EmitOutcome::Dropped);
        assert_eq!(t.emit(packet(TelemetryLevel::Warning)), EmitOutcome::Spilled);
        assert_eq!(t.emit(packet(TelemetryLevel::Error)), EmitOutcome::Bypassed);
        let s = t.stats();
        assert_eq!((s.emitted, s.queued, s.dropped, s.spilled, s.bypassed), (5, 2, 1, 1, 1));
        assert_eq!((s.normal_pending, s.emergency_pending), (2, 2));
        assert_eq!(t.drain().unwrap(), 4);
        let levels: Vec<_> = sink.packets().iter().map(|p| p.level()).collect();
        // Bypass first (spilled WARNING, then ERROR), then the normal queue.
        assert_eq!(
            levels,
            [TelemetryLevel::Warning, TelemetryLevel::Error, TelemetryLevel::Info, TelemetryLevel::Info]
        );
        assert_eq!(t.stats().delivered, 4);
    }

    #[test]
    fn zero_capacity_is_rejected() {
        let err = Telemetry::new(MemorySink::new(), TelemetryConfig { queue_capacity: 0, ..Default::default() });
        assert!(matches!(err, Err(Error::InvalidConfig { field: "queue_capacity", .. })));
        let err = Telemetry::new(MemorySink::new(), TelemetryConfig { subscriber_capacity: 0, ..Default::default() });
        assert!(matches!(err, Err(Error::InvalidConfig { field: "subscriber_capacity", .. })));
    }

    #[test]
    fn subscribers_filter_by_level_and_never_drop_critical() {
        let t = Telemetry::new(MemorySink::new(), TelemetryConfig { subscriber_capacity: 3, ..Default::default() })
            .unwrap();
        let all = t.subscribe(TelemetryLevel::Info);
        let errors = t.subscribe(TelemetryLevel::Error);
        for _ in 0..4 {
            t.emit(packet(TelemetryLevel::Info));
        }
        for _ in 0..3 {
            t.emit(packet(TelemetryLevel::Critical));
        }
        t.drain().unwrap();
        assert_eq!(all.dropped(), 1);
        assert_eq!(errors.dropped(), 0);
        assert_eq!(t.stats().subscriber_drops, 1);
        assert!(!all.evicted() && !errors.evicted());
        let levels: Vec<_> = std::iter::from_fn(|| all.try_recv()).map(|p| p.level()).collect();
        assert_eq!(
            levels,
            [
                TelemetryLevel::Critical,
                TelemetryLevel::Critical,
                TelemetryLevel::Critical,
                TelemetryLevel::Info,
                TelemetryLevel::Info,
                TelemetryLevel::Info
            ]
        );
        assert_eq!(errors.pending(), 3);
        drop(all);
        t.emit(packet(TelemetryLevel::Info));
        t.drain().unwrap();
        assert_eq!(t.shared.core.subscribers.lock().len(), 1);
    }

    #[test]
    fn subscription_ends_when_transport_is_gone() {
        let t = Telemetry::new(MemorySink::new(), TelemetryConfig::default()).unwrap();
        let sub = t.subscribe(TelemetryLevel::Info);
        t.emit(packet(TelemetryLevel::Info));
        drop(t);
        assert_eq!(sub.recv().map(|p| p.level()), Some(TelemetryLevel::Info));
        assert_eq!(sub.recv(), None);
    }

    #[test]
    fn worker_delivers_and_shutdown_flushes() {
        let sink = MemorySink::new();
        let t = Telemetry::spawn(sink.clone(), TelemetryConfig::default()).unwrap();
        let sub = t.subscribe(TelemetryLevel::Info);
        for _ in 0..10 {
            t.emit(packet(TelemetryLevel::Info));
        }
        t.emit(packet(TelemetryLevel::Critical));
        // Blocking receives: the worker delivers without anyone calling drain.
        for _ in 0..11 {
            assert!(sub.recv().is_some());
        }
        t.shutdown().unwrap();
        assert_eq!(sink.len(), 11);
        assert_eq!(t.stats().delivered, 11);
    }

    #[derive(Debug)]
    struct FailingSink;

    impl TelemetrySink for FailingSink {
        fn send(&self, _packet: &TelemetryPacket) -> Result<()> {
            Err(Error::Sink { sink: "failing", reason: "collector down".to_owned() })
        }
    }

    #[test]
    fn sink_failures_are_counted_and_returned() {
        let t = Telemetry::new(FailingSink, TelemetryConfig::default()).unwrap();
        t.emit(packet(TelemetryLevel::Info));
        t.emit(packet(TelemetryLevel::Critical));
        let err = t.drain().unwrap_err();
        assert!(matches!(err, Error::Sink { sink: "failing", .. }));
        let s = t.stats();
        assert_eq!((s.sink_failures, s.delivered, s.normal_pending, s.emergency_pending), (2, 0, 0, 0));
    }

    /// A subscriber that stops reading while ERROR/CRITICAL packets keep coming is cut off at
    /// its capacity: memory stays bounded, it is counted, and readers and the sink miss nothing.
    #[test]
    fn a_stalled_subscriber_is_cut_off_and_never_grows_without_bound() {
        let sink = MemorySink::new();
        let t = Telemetry::new(sink.clone(), TelemetryConfig { subscriber_capacity: 8, ..Default::default() }).unwrap();
        let stalled = t.subscribe(TelemetryLevel::Info);
        let reader = t.subscribe(TelemetryLevel::Info);
        let mut read = 0;
        for _ in 0..1_000 {
            t.emit(packet(TelemetryLevel::Error));
            t.drain().unwrap();
            read += std::iter::from_fn(|| reader.try_recv()).count();
        }
        assert!(stalled.evicted());
        assert!(stalled.pending() <= 8, "bounded: {}", stalled.pending());
        assert!(!reader.evicted());
        assert_eq!(read, 1_000, "a reading subscriber gets every ERROR packet");
        assert_eq!(sink.packets().len(), 1_000, "the sink gets everything");
        assert_eq!(t.stats().subscribers_evicted, 1);
        assert_eq!(t.subscribers(), 1);
    }
}
