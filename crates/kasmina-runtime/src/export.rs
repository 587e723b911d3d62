//! What the runtime reports outward: `SeedState`s, metrics, the hardware context.

use std::collections::BTreeMap;

use candle_core::Device;
use kasmina_telemetry::names;
use leyline::{HardwareContext, MetricPoint, SeedLifecycleStage as Stage, SeedState};

use crate::manager::Kasmina;
use crate::slot::SlotCell;

/// The `SeedState` of a slot: every field the runtime knows.
pub(crate) fn seed_state(cell: &SlotCell, _epoch: u32) -> SeedState {
    let st = cell.state.lock();
    let Some(seed) = st.seed.as_ref() else {
        return SeedState {
            seed_id: String::new(),
            stage: Stage::SeedStageDormant as i32,
            layer_depth: cell.depth,
            metrics: BTreeMap::from([("width".to_owned(), cell.width as f32)]),
            ..SeedState::default()
        };
    };
    let mut metrics = BTreeMap::new();
    metrics.insert("alpha".to_owned(), seed.current_alpha() as f32);
    if let Some(l) = seed.seed_losses.last() {
        metrics.insert("seed_loss".to_owned(), *l);
    }
    if let Some(d) = seed.last_seed_loss_vs_host {
        metrics.insert("seed_loss_vs_host".to_owned(), d);
    }
    if let Some(l) = seed.blend_losses.last() {
        metrics.insert("blend_loss".to_owned(), *l);
    }
    metrics.insert("isolation_violations".to_owned(), seed.isolation_violations as f32);
    metrics.insert("isolation_checks".to_owned(), seed.isolation_checks as f32);
    metrics.insert("hook_latency_ms".to_owned(), seed.last_hook_ms as f32);
    metrics.insert("steps_in_stage".to_owned(), seed.steps_in_stage as f32);
    metrics.insert("fallback_used".to_owned(), if seed.fallback_used { 1.0 } else { 0.0 });
    if let Some(k) = seed.kernel.as_ref() {
        metrics.insert("param_count".to_owned(), k.param_count() as f32);
    }
    let violations = seed.isolation_violations + seed.update_violations;
    SeedState {
        seed_id: seed.id.clone(),
        stage: seed.stage() as i32,
        gradient_norm: seed.last_grad_norm,
        learning_rate: seed.learning_rate() as f32,
        layer_depth: cell.depth,
        metrics,
        age_epochs: seed.epochs,
        risk_score: (seed.risk + 0.25 * violations as f32 + if seed.fallback_used { 0.1 } else { 0.0 }).min(1.0),
    }
}

/// The metrics of a telemetry packet (prototype names first, then the plan's).
pub(crate) fn metrics(kasmina: &Kasmina) -> Vec<MetricPoint> {
    let inner = &kasmina.inner;
    let (live, violations) = inner.slots.read().iter().fold((0u32, 0u64), |(l, v), cell| {
        let st = cell.state.lock();
        match st.seed.as_ref().filter(|s| s.is_live()) {
            Some(s) => (l + 1, v + u64::from(s.isolation_violations)),
            None => (l, v),
        }
    });
    let (fetch_ms, hook_ms, dot, total_violations) = {
        let core = inner.core.lock();
        (core.last_fetch_ms, core.last_hook_ms, core.last_dot_product, core.stats.isolation_violations)
    };
    let fetch = inner.breakers.fetch.snapshot();
    let cache = inner.kernels.stats().kernel;
    let tstats = inner.telemetry.stats();
    let mut out = vec![
        names::SEEDS_ACTIVE.point(f64::from(live)),
        names::ISOLATION_VIOLATIONS.point(total_violations.max(violations) as f64),
    ];
    if fetch_ms > 0.0 {
        out.push(names::KERNEL_FETCH_LATENCY_MS.point(fetch_ms));
    }
    out.extend([
        names::BREAKER_STATE.point(f64::from(fetch.state as i32)),
        names::BREAKER_FAILURES.point(f64::from(fetch.failures)),
        names::CACHE_KERNEL_SIZE.point(cache.size as f64),
        names::CACHE_KERNEL_HIT_RATE.point(cache.hit_rate),
        names::CACHE_HIT_RATE.point(cache.hit_rate),
        names::CACHE_EVICTIONS.point(cache.evictions.total() as f64),
        names::ISOLATION_DOT_PRODUCT.point(dot),
        names::ISOLATION_HOOK_LATENCY_MS.point(hook_ms),
        names::TELEMETRY_DROPPED.point(tstats.dropped as f64),
    ]);
    out
}

/// The hardware context of the device.
pub(crate) fn hardware(device: &Device) -> HardwareContext {
    let (device_type, device_id) = match device {
        Device::Cpu => ("cpu", "0".to_owned()),
        Device::Cuda(_) => ("cuda", "0".to_owned()),
        _ => ("other", "0".to_owned()),
    };
    HardwareContext { device_type: device_type.to_owned(), device_id, ..HardwareContext::default() }
}
