//! Telemetry out: assembles packets from a safe point's events, behind the `telemetry_flush`
//! breaker (critical and error events go through even when it is open), and records which of
//! a seed's stage events actually reached the pipeline (gate G3 reads it).

use kasmina_telemetry::{EmitOutcome, HealthInputs, names};
use leyline::{MetricPoint, SeedLifecycleStage as Stage, TelemetryEvent, TelemetryLevel};

use crate::breakers::BreakerName;
use crate::state::Inner;

impl Inner {
    /// Publishes `events` (and the metrics when `with_metrics`) as one packet.
    pub(crate) fn publish(&self, mut events: Vec<TelemetryEvent>, with_metrics: bool) {
        let deferred = std::mem::take(&mut self.core.lock().deferred);
        if !deferred.is_empty() {
            events.splice(0..0, deferred);
        }
        if events.is_empty() && !with_metrics {
            return;
        }
        let mut breaker_events = Vec::new();
        if !self.breakers.admit(BreakerName::TelemetryFlush, &mut breaker_events) {
            // Open: only what must always get through is published; the rest is counted.
            let before = events.len();
            events.retain(|e| e.level() >= TelemetryLevel::Error);
            let dropped = before - events.len();
            if events.is_empty() && breaker_events.is_empty() {
                self.core.lock().stats.events_dropped += dropped as u64;
                return;
            }
            self.core.lock().stats.events_dropped += dropped as u64;
        }
        events.extend(breaker_events);
        let metrics: Vec<MetricPoint> = if with_metrics { crate::export::metrics(self) } else { Vec::new() };
        let health = self.health_inputs();
        let stages = stage_events(&events);
        let packet = self.assembler.assemble(&metrics, &events, &health);
        let mut after = Vec::new();
        match self.telemetry.emit(packet) {
            EmitOutcome::Dropped => self.breakers.failure(BreakerName::TelemetryFlush, "packet_dropped", &mut after),
            _ => {
                self.breakers.success(BreakerName::TelemetryFlush, &mut after);
                let mut core = self.core.lock();
                for (seed, stage) in stages {
                    core.emitted.entry(seed).or_default().insert(stage);
                }
            }
        }
        if !after.is_empty() {
            self.core.lock().deferred.extend(after);
        }
    }

    /// Health inputs (decisions D9) from the counters, the breakers and the live seeds.
    pub(crate) fn health_inputs(&self) -> HealthInputs {
        let mut inputs = {
            let core = self.core.lock();
            let window = self.config.health_window_steps;
            let recent = |s: Option<u64>| s.is_some_and(|s| core.step.saturating_sub(s) <= window);
            HealthInputs {
                isolation_cull_in_window: recent(core.isolation_cull_step),
                latency_breach: recent(core.latency_breach_step),
                ..HealthInputs::default()
            }
        };
        inputs.command_flood = self.rejections.lock().flooding(self.clock.now());
        inputs.isolation_breaker_open =
            self.breakers.state(BreakerName::Isolation) == leyline::CircuitBreakerState::CircuitStateOpen;
        inputs.any_breaker_open = self.breakers.any_open();
        for cell in self.cells() {
            let seed = cell.seed.lock();
            let Some(s) = seed.as_ref().filter(|s| s.is_live()) else { continue };
            inputs.live_seeds += 1;
            if let Some(live) = s.live() {
                inputs.violations += u64::from(live.health.isolation_violations + live.health.update_violations);
                inputs.fallback_used |= live.attached.fallback_used;
            }
        }
        inputs
    }
}

/// `(seed_id, stage)` of every `seed_state` event.
fn stage_events(events: &[TelemetryEvent]) -> Vec<(String, Stage)> {
    events
        .iter()
        .filter(|e| e.description == names::SEED_STATE.name())
        .filter_map(|e| {
            let seed = e.attributes.get("seed_id")?.clone();
            let stage = Stage::from_str_name(e.attributes.get("stage")?)?;
            Some((seed, stage))
        })
        .collect()
}
