//! Memory governance and parameter registry hot paths (issue 5): kernel-cache hit and miss+insert, the epoch GC
//! over 10 k expired entries, and `validate_update` before an optimizer step.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device, Var};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kasmina_memory::{MemoryConfig, MemoryGovernor, TtlCacheConfig};
use kasmina_registry::{DEFAULT_LR_GROUP, ParameterRegistry, RegistryConfig};

/// A kernel artefact stand-in: 4096 f32 weights (16 KiB), weighed by its byte size.
type Kernel = Arc<[f32]>;
type Gov = MemoryGovernor<Kernel, String, Vec<u8>>;

fn kernel() -> Kernel {
    Arc::from(vec![0.0f32; 4096])
}

fn warm_governor(clock: quanta::Clock, entries: usize) -> Gov {
    let cfg = MemoryConfig {
        kernel_cache: TtlCacheConfig::new(Duration::from_secs(3600), 1 << 30).with_max_entries(100_000),
        ..Default::default()
    };
    let g = Gov::with_clock(cfg, clock).expect("valid config");
    for i in 0..entries {
        g.kernels().insert(format!("blueprint-{i}"), kernel()).expect("fits");
    }
    g.kernels().run_pending_tasks();
    g
}

/// Per-call latency percentiles of a kernel-cache hit (criterion reports means; the target also names a p95).
fn hit_percentiles(g: &Gov) {
    let clock = quanta::Clock::new();
    let mut samples: Vec<u64> = (0..200_000)
        .map(|i| {
            let key = if i % 2 == 0 { "blueprint-7" } else { "blueprint-512" };
            let t0 = clock.raw();
            black_box(g.kernels().get(black_box(key)));
            clock.delta_as_nanos(t0, clock.raw())
        })
        .collect();
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    eprintln!(
        "cpu/memory/kernel_cache_hit per-call (incl. ~timer overhead): p50 {} ns, p95 {} ns, p99 {} ns",
        pct(0.50),
        pct(0.95),
        pct(0.99)
    );
}

fn memory(c: &mut Criterion) {
    let g = warm_governor(quanta::Clock::new(), 1000);
    c.bench_function("cpu/memory/kernel_cache_hit", |b| b.iter(|| g.kernels().get(black_box("blueprint-512"))));
    hit_percentiles(&g);

    // Misses on keys never cached, each followed by an insert; 1000 rotating keys keep the cache at a steady size.
    let keys: Vec<String> = (0..1000).map(|i| format!("fresh-{i}")).collect();
    let value = kernel();
    let mut i = 0usize;
    c.bench_function("cpu/memory/kernel_cache_miss_insert", |b| {
        b.iter(|| {
            let key = &keys[i % keys.len()];
            i += 1;
            g.kernels().invalidate(key.as_str());
            if g.kernels().get(key.as_str()).is_none() {
                g.kernels().insert(key.clone(), Arc::clone(&value)).ok();
            }
        })
    });

    c.bench_function("cpu/memory/epoch_gc_10k", |b| {
        b.iter_batched(
            || {
                let (clock, mock) = quanta::Clock::mock();
                let g = warm_governor(clock, 10_000);
                mock.increment(Duration::from_secs(3600));
                g
            },
            |g| {
                let report = g.on_epoch(10);
                (g, report)
            },
            BatchSize::PerIteration,
        )
    });
}

fn registry(c: &mut Criterion) {
    let dev = Device::Cpu;
    let var = || Var::zeros(16, DType::F32, &dev).expect("cpu alloc");
    let reg = ParameterRegistry::new(RegistryConfig::default()).expect("valid config");
    reg.register_host(&(0..64).map(|_| var()).collect::<Vec<_>>()).expect("host");
    reg.register_teacher(&(0..64).map(|_| var()).collect::<Vec<_>>()).expect("teacher");
    let mut seeds = Vec::new();
    for s in 0..10 {
        let params: Vec<Var> = (0..8).map(|_| var()).collect();
        reg.register_seed(&format!("seed-{s}"), &params, DEFAULT_LR_GROUP).expect("seed");
        seeds.push(params);
    }
    let params = &seeds[3];
    c.bench_function("cpu/registry/validate_update", |b| {
        b.iter(|| reg.validate_update(black_box("seed-3"), black_box(params)).is_ok())
    });
}

criterion_group!(benches, memory, registry);
criterion_main!(benches);
