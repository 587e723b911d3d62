//! `kasmina demo --oona`: the grown run joins Esper's Oona bus (decisions D12, D20) — its
//! telemetry and a state packet per epoch go out, commands published by a remote Tamiyo come in
//! beside the demo's own controller.

use std::time::Duration;

use anyhow::{Context, Result};
use kasmina_oona::{Consumer, OonaConfig, OonaSink};
use kasmina_runtime::Kasmina;
use kasmina_runtime::reexports::security::KeyRing;

/// A connection to the bus with its own small async runtime.
pub(crate) struct BusLink {
    runtime: tokio::runtime::Runtime,
    config: OonaConfig,
    pub(crate) sink: OonaSink,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BusLink {
    /// Connects the telemetry writer (`url`, overridden by `OONA_*` variables).
    pub(crate) fn connect(url: &str, keys: &KeyRing) -> Result<Self> {
        let config = OonaConfig::from_lookup(Some(url), |k| std::env::var(k).ok()).context("--oona")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kasmina-oona")
            .enable_all()
            .build()
            .context("starting the bus runtime")?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (sink, task) = runtime
            .block_on(OonaSink::start(config.clone(), keys.clone(), stopped))
            .with_context(|| format!("connecting to Oona at {}", config.url))?;
        Ok(Self { runtime, config, sink, stop, tasks: vec![task] })
    }

    /// Starts reading commands into `kasmina`.
    pub(crate) fn consume(&mut self, kasmina: &Kasmina) -> Result<()> {
        let consumer = self
            .runtime
            .block_on(Consumer::connect(self.config.clone(), kasmina.clone()))
            .context("joining the Oona consumer group")?;
        self.tasks.push(self.runtime.spawn(consumer.run(self.stop.subscribe())));
        Ok(())
    }

    /// Queues the runtime's state packet for `oona.normal`.
    pub(crate) fn publish_state(&self, kasmina: &Kasmina) -> Result<()> {
        Ok(self.sink.publish_state(&kasmina.system_state_packet())?)
    }

    /// Stops reading, sends what is queued, waits (5 s at most).
    pub(crate) fn close(self) {
        let _ = self.stop.send(true);
        let tasks = self.tasks;
        self.runtime.block_on(async move {
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
            }
        });
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}
