//! What the runtime reports outward: `SeedState`s and the metrics of telemetry packets.

use std::collections::BTreeMap;

use kasmina_telemetry::names;
use leyline::{MetricPoint, SeedLifecycleStage as Stage, SeedState};

use crate::breakers::BreakerName;
use crate::seed::{Phase, Seed};
use crate::slot::SlotCell;
use crate::state::Inner;

/// The `SeedState` of a slot: every field the runtime knows.
pub(crate) fn seed_state(cell: &SlotCell) -> SeedState {
    let guard = cell.seed.lock();
    let Some(seed) = guard.as_ref() else {
        return SeedState {
            seed_id: String::new(),
            stage: Stage::SeedStageDormant as i32,
            layer_depth: cell.depth,
            metrics: BTreeMap::from([("width".to_owned(), cell.width as f32)]),
            ..SeedState::default()
        };
    };
    let (violations, fallback, grad_norm) = match seed.live() {
        Some(l) => (
            l.health.isolation_violations + l.health.update_violations,
            l.attached.fallback_used,
            l.health.last_grad_norm,
        ),
        None => (0, seed.history.fallback_used, 0.0),
    };
    SeedState {
        seed_id: seed.id.clone(),
        stage: seed.stage() as i32,
        gradient_norm: grad_norm,
        learning_rate: seed.learning_rate() as f32,
        layer_depth: cell.depth,
        metrics: seed_metrics(seed),
        age_epochs: seed.epochs,
        risk_score: (seed.risk + 0.25 * violations as f32 + if fallback { 0.1 } else { 0.0 }).min(1.0),
    }
}

fn seed_metrics(seed: &Seed) -> BTreeMap<String, f32> {
    let mut m = BTreeMap::new();
    m.insert("alpha".to_owned(), seed.alpha() as f32);
    m.insert("isolation_checks".to_owned(), seed.history.isolation_checks as f32);
    if let Some(k) = seed.kernel() {
        m.insert("param_count".to_owned(), k.param_count() as f32);
    }
    let Some(live) = seed.live() else {
        m.insert("isolation_violations".to_owned(), 0.0);
        m.insert("fallback_used".to_owned(), f32::from(u8::from(seed.history.fallback_used)));
        return m;
    };
    m.insert("isolation_violations".to_owned(), live.health.isolation_violations as f32);
    m.insert("hook_latency_ms".to_owned(), live.health.last_hook_ms as f32);
    m.insert("steps_in_stage".to_owned(), live.phase.steps() as f32);
    m.insert("fallback_used".to_owned(), f32::from(u8::from(live.attached.fallback_used)));
    match &live.phase {
        Phase::Training { seed_losses, last_vs_host, .. } => {
            if let Some(l) = seed_losses.last() {
                m.insert("seed_loss".to_owned(), *l);
            }
            if let Some(d) = last_vs_host {
                m.insert("seed_loss_vs_host".to_owned(), *d);
            }
        }
        Phase::Blending { losses, .. } => {
            if let Some(l) = losses.last() {
                m.insert("blend_loss".to_owned(), *l);
            }
        }
        _ => {}
    }
    if let Some(cf) = live.phase.contribution().and_then(|c| c.counterfactual) {
        m.insert("counterfactual_mean".to_owned(), cf.mean as f32);
        m.insert("counterfactual_std_error".to_owned(), cf.std_error as f32);
        m.insert("counterfactual_batches".to_owned(), cf.batches as f32);
    }
    if let Phase::Blending { alpha, .. } = &live.phase {
        m.insert("alpha_target".to_owned(), alpha.target() as f32);
        m.insert("alpha_held".to_owned(), f32::from(u8::from(alpha.is_held())));
    }
    if let Some((rel_l2, cosine)) = live.phase.shadow().and_then(|s| s.means()) {
        m.insert("shadow_rel_l2".to_owned(), rel_l2 as f32);
        m.insert("shadow_cosine".to_owned(), cosine as f32);
    }
    m
}

/// The metrics of a telemetry packet (prototype names first, then the plan's).
pub(crate) fn metrics(inner: &Inner) -> Vec<MetricPoint> {
    let (live, violations) = inner.cells().iter().fold((0u32, 0u64), |(l, v), cell| {
        let guard = cell.seed.lock();
        match guard.as_ref().filter(|s| s.is_live()) {
            Some(s) => (l + 1, v + u64::from(s.live().map(|l| l.health.isolation_violations).unwrap_or(0))),
            None => (l, v),
        }
    });
    let (fetch_ms, hook_ms, dot, total_violations) = {
        let core = inner.core.lock();
        (core.last_fetch_ms, core.last_hook_ms, core.last_dot_product, core.stats.isolation_violations)
    };
    let fetch = inner.breakers.get(BreakerName::KernelFetch).snapshot();
    let cache = inner.memory.stats().kernel;
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
pub(crate) fn hardware(device: &candle_core::Device) -> leyline::HardwareContext {
    let device_type = match device {
        candle_core::Device::Cpu => "cpu",
        candle_core::Device::Cuda(_) => "cuda",
        _ => "other",
    };
    leyline::HardwareContext { device_type: device_type.to_owned(), device_id: "0".to_owned(), ..Default::default() }
}
