//! Where packets go: the [`TelemetrySink`] trait and the in-memory, JSON-lines and fan-out sinks.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use leyline::TelemetryPacket;
use parking_lot::Mutex;

use crate::error::{Error, Result};

/// A destination for telemetry packets. Implementations are shared between threads; `send` may
/// buffer and `flush` makes everything sent so far durable or visible.
pub trait TelemetrySink: Send + Sync + fmt::Debug {
    /// Delivers one packet.
    fn send(&self, packet: &TelemetryPacket) -> Result<()>;

    /// Flushes anything buffered.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

impl<T: TelemetrySink + ?Sized> TelemetrySink for Arc<T> {
    fn send(&self, packet: &TelemetryPacket) -> Result<()> {
        (**self).send(packet)
    }

    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
}

impl<T: TelemetrySink + ?Sized> TelemetrySink for Box<T> {
    fn send(&self, packet: &TelemetryPacket) -> Result<()> {
        (**self).send(packet)
    }

    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
}

/// A sink that discards every packet.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl TelemetrySink for NullSink {
    fn send(&self, _packet: &TelemetryPacket) -> Result<()> {
        Ok(())
    }
}

/// A sink that keeps every packet in memory; clones share the same store (tests, the CLI's replay).
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    packets: Arc<Mutex<Vec<TelemetryPacket>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every packet received so far, in delivery order.
    pub fn packets(&self) -> Vec<TelemetryPacket> {
        self.packets.lock().clone()
    }

    /// Removes and returns every packet received so far.
    pub fn take(&self) -> Vec<TelemetryPacket> {
        std::mem::take(&mut *self.packets.lock())
    }

    /// How many packets are stored.
    pub fn len(&self) -> usize {
        self.packets.lock().len()
    }

    /// Whether no packet is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TelemetrySink for MemorySink {
    fn send(&self, packet: &TelemetryPacket) -> Result<()> {
        self.packets.lock().push(packet.clone());
        Ok(())
    }
}

/// Writes one packet per line in protobuf's canonical JSON mapping (enum values by name, RFC 3339
/// timestamps), to a file, stdout or any writer. The embedded default sink.
pub struct JsonLinesSink {
    writer: Mutex<BufWriter<Box<dyn Write + Send>>>,
    target: String,
}

impl fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink").field("target", &self.target).finish_non_exhaustive()
    }
}

impl JsonLinesSink {
    /// Appends to `path`, creating it when missing.
    pub fn append_to(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Open { path: path.to_owned(), source })?;
        Ok(Self::with_target(Box::new(file), path.display().to_string()))
    }

    /// Truncates or creates `path` and writes to it.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| Error::Open { path: path.to_owned(), source })?;
        Ok(Self::with_target(Box::new(file), path.display().to_string()))
    }

    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self::with_target(Box::new(std::io::stdout()), "stdout".to_owned())
    }

    /// Writes to any writer (a socket, a pipe, a buffer in tests).
    pub fn to_writer(writer: impl Write + Send + 'static) -> Self {
        Self::with_target(Box::new(writer), "writer".to_owned())
    }

    fn with_target(writer: Box<dyn Write + Send>, target: String) -> Self {
        Self { writer: Mutex::new(BufWriter::new(writer)), target }
    }

    /// One packet as one line of canonical JSON, without the newline.
    pub fn encode(packet: &TelemetryPacket) -> Result<String> {
        serde_json::to_string(packet).map_err(|source| Error::Serialize { packet_id: packet.packet_id.clone(), source })
    }
}

impl TelemetrySink for JsonLinesSink {
    fn send(&self, packet: &TelemetryPacket) -> Result<()> {
        let mut line = Self::encode(packet)?;
        line.push('\n');
        self.writer.lock().write_all(line.as_bytes()).map_err(|source| Error::Io { sink: "jsonl", source })
    }

    fn flush(&self) -> Result<()> {
        self.writer.lock().flush().map_err(|source| Error::Io { sink: "jsonl", source })
    }
}

impl Drop for JsonLinesSink {
    fn drop(&mut self) {
        // Best effort: a failure here has nowhere to be reported.
        let _ = self.writer.get_mut().flush();
    }
}

/// Sends every packet to several sinks (e.g. a JSON-lines file and an OTLP collector). Every sink
/// is tried; the first error is returned.
#[derive(Debug, Clone, Default)]
pub struct FanoutSink {
    sinks: Vec<Arc<dyn TelemetrySink>>,
}

impl FanoutSink {
    /// A fan-out with no sinks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink.
    pub fn with(mut self, sink: impl TelemetrySink + 'static) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Adds a shared sink.
    pub fn push(&mut self, sink: Arc<dyn TelemetrySink>) {
        self.sinks.push(sink);
    }

    /// How many sinks packets go to.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Whether there are no sinks.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

impl TelemetrySink for FanoutSink {
    fn send(&self, packet: &TelemetryPacket) -> Result<()> {
        let mut first = None;
        for sink in &self.sinks {
            if let Err(e) = sink.send(packet) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn flush(&self) -> Result<()> {
        let mut first = None;
        for sink in &self.sinks {
            if let Err(e) = sink.flush() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
